"""Alarm hygiene on top of the base state machine: hold-off reopening, flapping suppression,
minimum persistence, and what survives replays and restarts (``diagnostics.alerting``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics import alerting
from diagnostics.base import DEFAULT_ALARM_POLICY, AlarmPolicy, Assessment
from diagnostics.dtc import DiagnosticTroubleCodes
from diagnostics.offline import OfflineDiagnostics
from diagnostics.pipeline import VehiclePipeline

H = 3_600_000
KW: dict[str, Any] = {"asset_kind": "vehicle", "asset_id": "V1", "alert_type": "dtc",
                      "detector": "dtc", "detector_version": "1.0.0"}
POLICY = AlarmPolicy(hold_off_ms=6 * H, flap_opens=3, flap_window_ms=24 * H,
                     flap_recovery_ms=12 * H, min_persistence_ms=0)


def active(severity: str = "warning", **evidence: Any) -> Assessment:
    return Assessment(active=True, severity=severity, title="t", evidence=dict(evidence),
                      recommended_action="call")


CLEAR = Assessment(active=False, title="ok", evidence={"active_codes": []})


def apply(state: dict[str, Any], assessment: Assessment, ts: int,
          policy: AlarmPolicy = POLICY) -> dict[str, Any] | None:
    return alerting.apply(state, assessment=assessment, ts_ms=ts, policy=policy, **KW)


def due(state: dict[str, Any], ts: int, policy: AlarmPolicy = POLICY) -> dict[str, Any] | None:
    return alerting.due(state, ts_ms=ts, policy=policy, **KW)


def test_a_condition_back_within_the_hold_off_reopens_the_same_alert() -> None:
    state = alerting.new_alert_state()
    first = apply(state, active(code=1), 0)
    assert first is not None
    assert first["status"] == "open"
    resolved = apply(state, CLEAR, 1 * H)
    assert resolved is not None
    assert resolved["status"] == "resolved"
    again = apply(state, active(code=1), 1 * H + 6 * H)  # exactly at the end of the hold-off
    assert again is not None
    assert again["status"] == "open"
    assert again["id"] == first["id"]
    assert again["first_seen"] == 0
    assert "flapping" not in again["evidence"]  # two opens in a day is not flapping
    assert apply(state, CLEAR, 8 * H) is not None
    later = apply(state, active(code=1), 8 * H + 6 * H + 1)  # just past the hold-off
    assert later is not None
    assert later["id"] != first["id"]
    assert later["first_seen"] == 14 * H + 1
    assert later["id"] == alerting.alert_id("vehicle", "V1", "dtc", 14 * H + 1)


def test_without_hold_off_a_return_is_a_new_alert() -> None:
    policy = AlarmPolicy(hold_off_ms=0, flap_opens=0)
    state = alerting.new_alert_state()
    first = apply(state, active(), 0, policy)
    apply(state, CLEAR, 10, policy)
    again = apply(state, active(), 20, policy)
    assert first is not None
    assert again is not None
    assert again["id"] != first["id"]


def test_a_return_in_the_millisecond_of_the_resolution_reopens_on_the_next_message() -> None:
    state = alerting.new_alert_state()
    first = apply(state, active(), 100)
    assert apply(state, CLEAR, 200) is not None
    # The store takes an "open" at the resolution's own last_seen for a replay: wait.
    assert apply(state, active(), 200) is None
    assert due(state, 200) is None
    reopened = due(state, 201)
    assert first is not None
    assert reopened is not None
    assert reopened["id"] == first["id"]
    assert reopened["status"] == "open"
    assert reopened["last_seen"] == 201


def test_flapping_is_marked_and_resolves_only_after_the_recovery_period() -> None:
    state = alerting.new_alert_state()
    ids = set()
    for ts in (0, 2 * H):  # open, clear, reopen, clear: two opens, not flapping yet
        alert = apply(state, active(code="U0100"), ts)
        assert alert is not None
        assert "flapping" not in alert["evidence"]
        ids.add(alert["id"])
        resolved = apply(state, CLEAR, ts + H)
        assert resolved is not None
        assert resolved["status"] == "resolved"
    third = apply(state, active(code="U0100"), 4 * H)
    assert third is not None
    assert third["status"] == "open"
    assert third["evidence"]["flapping"] == {"opens": 3, "window_ms": 24 * H,
                                             "recovery_ms": 12 * H}
    ids.add(third["id"])
    assert len(ids) == 1, "a flapping condition stays one alert"
    # Clear, back, clear: the alert stays open and nothing is emitted.
    assert apply(state, CLEAR, 5 * H) is None
    assert apply(state, active(code="U0100"), 6 * H) is None  # unchanged: nothing new
    assert apply(state, CLEAR, 7 * H) is None
    assert state["open"] == third["id"]
    before = copy.deepcopy(state)
    assert due(state, 7 * H + 12 * H - 1) is None  # clear for not quite the recovery period
    assert state == before, "a message before the due time changes nothing"
    resolved = due(state, 7 * H + 12 * H)
    assert resolved is not None
    assert resolved["status"] == "resolved"
    assert resolved["id"] == third["id"]
    assert resolved["last_seen"] == 19 * H
    assert resolved["evidence"]["active_codes"] == []
    assert resolved["evidence"]["flapping"]["clear_since"] == 7 * H
    # Recovered: the next clear of a later alert resolves at once again.
    assert not state["flapping"]
    fresh = apply(state, active(code="U0100"), 40 * H)
    assert fresh is not None
    assert fresh["id"] != third["id"]
    assert "flapping" not in fresh["evidence"]
    assert apply(state, CLEAR, 41 * H) is not None


def test_a_severity_change_during_the_clearance_is_emitted_and_cancels_it() -> None:
    state = alerting.new_alert_state()
    for ts in (0, 2 * H):
        apply(state, active(), ts)
        apply(state, CLEAR, ts + H)
    apply(state, active(), 4 * H)
    assert apply(state, CLEAR, 5 * H) is None
    escalated = apply(state, active("critical"), 6 * H)
    assert escalated is not None
    assert escalated["severity"] == "critical"
    assert escalated["status"] == "open"
    assert state["pending"] is None
    assert due(state, 30 * H) is None  # nothing pending: it never cleared for long


def test_opens_spread_wider_than_the_window_are_not_flapping() -> None:
    # A healthy look-alike: a code that comes back once a day (e.g. at every morning start).
    state = alerting.new_alert_state()
    for day in range(6):
        opened = apply(state, active(), day * 25 * H)
        assert opened is not None
        assert "flapping" not in opened["evidence"]
        assert apply(state, CLEAR, day * 25 * H + H) is not None


def test_minimum_persistence() -> None:
    policy = AlarmPolicy(min_persistence_ms=2 * H)
    state = alerting.new_alert_state()
    assert apply(state, active(), 0, policy) is None
    assert apply(state, active(), 1 * H, policy) is None
    assert apply(state, CLEAR, 90 * 60_000, policy) is None  # a blip: never raised
    assert state["pending"] is None
    assert apply(state, active(), 3 * H, policy) is None
    before = copy.deepcopy(state)
    assert due(state, 5 * H - 1, policy) is None
    assert state == before
    opened = due(state, 5 * H, policy)
    assert opened is not None
    assert opened["status"] == "open"
    assert opened["first_seen"] == 3 * H
    assert opened["last_seen"] == 5 * H
    assert opened["id"] == alerting.alert_id("vehicle", "V1", "dtc", 3 * H)
    assert due(state, 6 * H, policy) is None


def test_the_latest_assessment_of_a_pending_opening_is_the_one_raised() -> None:
    policy = AlarmPolicy(min_persistence_ms=2 * H)
    state = alerting.new_alert_state()
    apply(state, active("warning", v=1), 0, policy)
    opened = apply(state, active("critical", v=2), 2 * H, policy)
    assert opened is not None
    assert opened["severity"] == "critical"
    assert opened["evidence"] == {"v": 2}
    assert opened["first_seen"] == 0


def test_states_from_before_the_hygiene_rules_still_work() -> None:
    old = {"open": "x", "first_seen": 100, "severity": "warning", "last_seen": 100,
           "digest": "d", "last_first_seen": 100}
    resolved = apply(old, CLEAR, 200)
    assert resolved is not None
    assert resolved["id"] == "x"
    assert resolved["status"] == "resolved"
    assert resolved["root_cause_id"] is None
    assert apply(old, CLEAR, 150) is None  # still a replay guard from last_seen


@pytest.mark.parametrize("bad", [{"hold_off_ms": -1}, {"flap_opens": 1},
                                 {"min_persistence_ms": 1.5}, {"flap_window_ms": True}])
def test_policy_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        AlarmPolicy(**bad)


def test_the_default_policy_raises_at_once() -> None:
    assert DEFAULT_ALARM_POLICY.min_persistence_ms == 0
    state = alerting.new_alert_state()
    assert alerting.apply(state, assessment=active(), ts_ms=5, **KW) is not None


# ------------------------------------------------------------------------- properties

# Short periods so that random walks hit every rule.
policies = st.builds(AlarmPolicy, hold_off_ms=st.sampled_from([0, 1_000, 5_000]),
                     flap_opens=st.sampled_from([0, 2, 3]),
                     flap_window_ms=st.sampled_from([4_000, 20_000]),
                     flap_recovery_ms=st.sampled_from([0, 3_000]),
                     min_persistence_ms=st.sampled_from([0, 0, 1_500]))
KINDS = ["info", "warning", "critical", "clear", "clear", "abstain", "tick"]
steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 2_500)),
                 max_size=60)
ABSTAIN = Assessment(active=True, severity="critical", abstain_reason="stale")
Step = tuple[str, int, int]


def step(state: dict[str, Any], kind: str, value: int, ts: int,
         policy: AlarmPolicy) -> dict[str, Any] | None:
    if kind == "tick":  # a message of the asset without news from this detector
        return due(state, ts, policy)
    if kind == "clear":
        return apply(state, CLEAR, ts, policy)
    if kind == "abstain":
        return apply(state, ABSTAIN, ts, policy)
    return apply(state, active(kind, v=value), ts, policy)


def timeline(sequence: list[Step]) -> list[int]:
    ts, out = 1_000_000, []
    for _kind, _value, dt in sequence:
        ts += dt
        out.append(ts)
    return out


def play(sequence: list[Step], policy: AlarmPolicy, state: dict[str, Any] | None = None,
         restart_at: int | None = None) -> list[dict[str, Any] | None]:
    state = alerting.new_alert_state() if state is None else state
    out = []
    for i, ((kind, value, _dt), ts) in enumerate(zip(sequence, timeline(sequence), strict=True)):
        if i == restart_at:
            state = json.loads(json.dumps(state))  # what a restarted worker recovers
        out.append(step(state, kind, value, ts, policy))
    return out


@given(steps, policies)
def test_one_open_alert_severity_follows_and_hold_off_is_kept(sequence: list[Step],
                                                              policy: AlarmPolicy) -> None:
    state = alerting.new_alert_state()
    open_id: str | None = None
    last: dict[str, dict[str, Any]] = {}
    last_resolution: int | None = None
    for (kind, value, _dt), ts in zip(sequence, timeline(sequence), strict=True):
        alert = step(state, kind, value, ts, policy)
        if alert is not None:
            assert tuple(alert) == alerting.ALERT_KEYS
            assert alert["id"] == alerting.alert_id("vehicle", "V1", "dtc", alert["first_seen"])
            if alert["status"] == "open":
                assert open_id in (None, alert["id"]), "two alerts open at once"
                if alert["id"] not in last and last_resolution is not None:
                    # A new alert (not a reopening) only after the hold-off has passed.
                    assert policy.hold_off_ms == 0 or ts - last_resolution > policy.hold_off_ms
                open_id = alert["id"]
            else:
                assert alert["id"] == open_id, "resolved an alert that was not open"
                assert alert["severity"] == last[open_id]["severity"]
                open_id, last_resolution = None, ts
            last[alert["id"]] = alert
        assert state["open"] == open_id
        if kind in ("info", "warning", "critical") and open_id is not None:
            shown = last[open_id]
            assert shown["severity"] == kind, "an open alert must show the latest assessment"
            assert shown["evidence"].get("v") == value, \
                "an open alert must show the latest assessment"


@given(steps, policies, st.data())
def test_replaying_a_prefix_emits_nothing_and_restarts_change_nothing(
        sequence: list[Step], policy: AlarmPolicy, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(sequence)))
    uninterrupted = play(sequence, policy)
    assert play(sequence, policy, restart_at=k) == uninterrupted
    state = alerting.new_alert_state()
    play(sequence[:k], policy, state)
    # Redelivery of everything up to k that is strictly older than the newest assessment
    # applied (two different assessments in one millisecond cannot be told from a replay).
    times = timeline(sequence[:k])
    newest = max((ts for (kind, _v, _dt), ts in zip(sequence[:k], times, strict=True)
                  if kind not in ("abstain", "tick")), default=None)
    for (kind, value, _dt), ts in zip(sequence[:k], times, strict=True):
        if newest is not None and ts < newest:
            before = copy.deepcopy(state)
            assert step(state, kind, value, ts, policy) is None
            assert state == before, "a replay changed the state"


@given(steps)
def test_outputs_are_deterministic(sequence: list[Step]) -> None:
    assert play(sequence, POLICY) == play(sequence, POLICY)


# ------------------------------------------------------------------------- in the pipeline


class PersistentCodes(DiagnosticTroubleCodes):
    """Trouble codes that must stay active for an hour before they raise an alert."""

    alarm_policy = AlarmPolicy(min_persistence_ms=H)


def record(seq: int, ts: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "id": "VIN1", "ts": ts, "seq": seq, "data": data}


def code(seq: int, ts: int, state: str) -> dict[str, Any]:
    return record(seq, ts, "vehicle_event", {"type": "dtc", "code": "U0100", "state": state})


def telemetry(seq: int, ts: int) -> dict[str, Any]:
    return record(seq, ts, "vehicle_telemetry", {"signals": {"Vehicle.Speed": 0.0}})


def test_a_pending_opening_falls_due_on_a_later_message_or_at_the_end_of_a_recording() -> None:
    offline = OfflineDiagnostics(VehiclePipeline({"dtc": PersistentCodes()}))
    assert offline.process([code(1, 0, "active"), telemetry(2, H - 1)]) == []
    (opened,) = offline.process([telemetry(3, H)])  # the detector says nothing new here
    assert opened["status"] == "open"
    assert opened["first_seen"] == 0
    assert opened["last_seen"] == H
    # A code that clears within the hour never becomes an alert (a look-alike blip).
    blip = OfflineDiagnostics(VehiclePipeline({"dtc": PersistentCodes()}))
    assert blip.process([code(1, 0, "active"), code(2, H // 2, "cleared"),
                         telemetry(3, 2 * H)]) == []
    assert blip.finish(3 * H) == []
    # No later message: the end of the recording settles it.
    quiet = OfflineDiagnostics(VehiclePipeline({"dtc": PersistentCodes()}))
    assert quiet.process([code(1, 0, "active")]) == []
    assert quiet.finish(H - 1) == []
    (at_end,) = quiet.finish(2 * H)
    assert at_end["id"] == opened["id"]
    assert at_end["last_seen"] == 2 * H
