"""Alarm hygiene: one open alert per (asset, type), deterministic ids, no duplicates on replay.

The first half checks the base state machine with ``NO_HYGIENE`` (no hold-off, flapping or
persistence); the second half the hold-off, flapping and persistence rules on top of it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from diagnostics import alerting
from diagnostics.base import AlarmPolicy, Assessment

KW: dict[str, Any] = {"asset_kind": "vehicle", "asset_id": "V1", "alert_type": "weak_12v_battery",
                      "detector": "battery12v", "detector_version": "2.0.0"}


def active(severity: str = "info", **evidence: float) -> Assessment:
    return Assessment(active=True, severity=severity, title="t", evidence=dict(evidence),
                      predicted_failure_ts=None, recommended_action="call")


CLEAR = Assessment(active=False, title="ok", evidence={"latest_v25": 12.7})
ABSTAIN = Assessment(active=False, abstain_reason="stale")
ABSTAIN_ACTIVE = Assessment(active=True, severity="critical", abstain_reason="stale")


def apply(state: dict[str, Any], assessment: Assessment, ts: int,
          policy: AlarmPolicy = alerting.NO_HYGIENE) -> dict[str, Any] | None:
    return alerting.apply(state, assessment=assessment, ts_ms=ts, policy=policy, **KW)


def test_open_update_resolve_reopen() -> None:
    state = alerting.new_alert_state()
    a1 = apply(state, active(v=1), 100)
    assert a1 is not None
    assert a1["status"] == "open"
    assert a1["first_seen"] == 100
    assert tuple(a1) == alerting.ALERT_KEYS
    a2 = apply(state, active("critical", v=2), 200)  # escalates
    assert a2 is not None
    assert a2["id"] == a1["id"]
    assert a2["severity"] == "critical"
    assert a2["first_seen"] == 100
    assert a2["last_seen"] == 200
    a3 = apply(state, active("warning", v=3), 300)  # de-escalates
    assert a3 is not None
    assert a3["id"] == a1["id"]
    assert a3["severity"] == "warning"
    assert apply(state, ABSTAIN, 350) is None
    assert apply(state, ABSTAIN_ACTIVE, 360) is None
    r = apply(state, CLEAR, 400)
    assert r is not None
    assert r["status"] == "resolved"
    assert r["id"] == a1["id"]
    assert r["severity"] == "warning"  # the severity it reached, not the clearing "info"
    assert r["first_seen"] == 100
    assert r["last_seen"] == 400
    assert r["evidence"] == {"latest_v25": 12.7}
    assert apply(state, CLEAR, 500) is None
    again = apply(state, active(v=4), 600)
    assert again is not None
    assert again["id"] != a1["id"]
    assert again["first_seen"] == 600
    assert again["id"] == alerting.alert_id("vehicle", "V1", "weak_12v_battery", 600)


def test_update_only_when_severity_or_evidence_changed() -> None:
    state = alerting.new_alert_state()
    assert apply(state, active(v=1), 100) is not None
    assert apply(state, active(v=1), 200) is None
    assert apply(state, active("warning", v=1), 300) is not None
    assert apply(state, active("warning", v=2), 400) is not None
    assert apply(state, active("warning", v=2), 500) is None


def test_ids_are_deterministic_and_replays_are_ignored() -> None:
    s1, s2 = alerting.new_alert_state(), alerting.new_alert_state()
    a = apply(s1, active(), 100)
    b = apply(s2, active(), 100)
    assert a == b
    assert a is not None
    assert a["id"] == alerting.alert_id("vehicle", "V1", "weak_12v_battery", 100)
    assert apply(s1, active("critical", v=9), 50) is None  # older than what was reported
    assert apply(s1, CLEAR, 99) is None
    # Another asset or type never shares an id.
    assert alerting.alert_id("vehicle", "V2", "weak_12v_battery", 100) != a["id"]
    assert alerting.alert_id("vehicle", "V1", "dtc", 100) != a["id"]


def test_no_reopen_in_the_millisecond_the_previous_alert_was_opened() -> None:
    state = alerting.new_alert_state()
    first = apply(state, active(), 100)
    assert apply(state, CLEAR, 100) is not None
    assert apply(state, active(v=1), 100) is None  # would reuse the resolved alert's id
    later = apply(state, active(v=1), 101)
    assert first is not None
    assert later is not None
    assert later["id"] != first["id"]


def test_state_is_json() -> None:
    state = alerting.new_alert_state()
    apply(state, active("critical", v=1.5), 100)
    assert json.loads(json.dumps(state)) == state


# ------------------------------------------------------------------------- properties

KINDS = ["info", "warning", "critical", "clear", "abstain", "abstain_active"]
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 3),
              st.one_of(st.integers(0, 5_000), st.integers(-2_000, -1))),
    max_size=60,
)


def assessment_for(kind: str, value: int) -> Assessment:
    if kind == "clear":
        return CLEAR
    if kind == "abstain":
        return ABSTAIN
    if kind == "abstain_active":
        return ABSTAIN_ACTIVE
    return active(kind, v=value)


def play(sequence: list[tuple[str, int, int]], roundtrip: bool = False
         ) -> list[tuple[int, str, int, dict[str, Any] | None]]:
    """Feed (kind, evidence value, time step) steps; return (ts, kind, value, upsert) rows."""
    state = alerting.new_alert_state()
    out = []
    ts = 1_000_000
    for kind, value, dt in sequence:
        ts += dt
        if roundtrip:
            state = json.loads(json.dumps(state))
        out.append((ts, kind, value, apply(state, assessment_for(kind, value), ts)))
    return out


@given(steps)
def test_state_machine_invariants(sequence: list[tuple[str, int, int]]) -> None:
    open_id: str | None = None
    closed: set[str] = set()
    last_emitted: dict[str, dict[str, Any]] = {}
    seen: int | None = None
    last_first_seen: int | None = None
    for ts, kind, value, alert in play(sequence):
        replay = seen is not None and ts < seen
        if kind.startswith("abstain") or replay:
            assert alert is None, "abstentions and replays change nothing"
            continue
        seen = ts
        if alert is None:
            # Liveness: the only reasons to stay silent.
            if kind == "clear":
                assert open_id is None, "an open alert must resolve"
            elif open_id is not None:
                shown = last_emitted[open_id]
                assert (shown["severity"], shown["evidence"]) == (kind, {"v": value}), \
                    "a changed assessment was not emitted"
            else:
                assert ts == last_first_seen, "an active assessment did not open an alert"
            continue
        assert tuple(alert) == alerting.ALERT_KEYS
        assert alert["last_seen"] == ts
        assert alert["first_seen"] <= ts
        assert alert["id"] == alerting.alert_id("vehicle", "V1", "weak_12v_battery",
                                                alert["first_seen"])
        assert alert["id"] not in closed, "a resolved alert was reopened or updated"
        if alert["status"] == "open":
            # Never two different open alerts: an open one is updated, not duplicated.
            assert open_id in (None, alert["id"])
            previous = last_emitted.get(alert["id"])
            if previous is not None:
                assert (previous["severity"], previous["evidence"]) != (
                    alert["severity"], alert["evidence"]), "an unchanged alert was re-emitted"
            else:
                last_first_seen = ts
            open_id = alert["id"]
        else:
            assert kind == "clear"
            assert open_id is not None, "resolved an alert that was not open"
            assert alert["id"] == open_id, "resolved an alert that was not open"
            assert alert["severity"] == last_emitted[open_id]["severity"]
            closed.add(alert["id"])
            open_id = None
        last_emitted[alert["id"]] = alert


@given(steps)
def test_outputs_are_deterministic_and_survive_a_json_roundtrip(
        sequence: list[tuple[str, int, int]]) -> None:
    assert play(sequence) == play(sequence) == play(sequence, roundtrip=True)


@given(steps, steps)
def test_replaying_old_assessments_emits_nothing(first: list[tuple[str, int, int]],
                                                 replayed: list[tuple[str, int, int]]) -> None:
    state = alerting.new_alert_state()
    ts = 1_000_000
    for kind, value, dt in first:
        ts += abs(dt)
        apply(state, assessment_for(kind, value), ts)
    if state["last_seen"] is None:
        return
    for kind, value, dt in replayed:
        old_ts = state["last_seen"] - 1 - abs(dt)
        assert apply(state, assessment_for(kind, value), old_ts) is None
