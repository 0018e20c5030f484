"""Alarm hygiene: one open alert per (asset, type), deterministic ids, no duplicates on replay."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from diagnostics import alerting
from diagnostics.base import Assessment

KW: dict[str, Any] = {"asset_kind": "vehicle", "asset_id": "V1", "alert_type": "weak_12v_battery",
                      "detector": "battery12v", "detector_version": "1.0.0"}


def active(severity: str = "info", **evidence: float) -> Assessment:
    return Assessment(active=True, severity=severity, title="t", evidence=dict(evidence),
                      recommended_action="call")


CLEAR = Assessment(active=False, title="ok")
ABSTAIN = Assessment(active=False, abstain_reason="stale")


def test_open_update_resolve_reopen() -> None:
    state = alerting.new_alert_state()
    a1 = alerting.apply(state, assessment=active(), ts_ms=100, **KW)
    assert a1 is not None and a1["status"] == "open" and a1["first_seen"] == 100
    a2 = alerting.apply(state, assessment=active("critical"), ts_ms=200, **KW)
    assert a2 is not None and a2["id"] == a1["id"] and a2["severity"] == "critical"
    a3 = alerting.apply(state, assessment=active("warning"), ts_ms=300, **KW)  # de-escalates
    assert a3 is not None and a3["id"] == a1["id"] and a3["severity"] == "warning"
    assert alerting.apply(state, assessment=ABSTAIN, ts_ms=350, **KW) is None
    r = alerting.apply(state, assessment=CLEAR, ts_ms=400, **KW)
    assert r is not None and r["status"] == "resolved" and r["id"] == a1["id"]
    assert alerting.apply(state, assessment=CLEAR, ts_ms=500, **KW) is None
    again = alerting.apply(state, assessment=active(), ts_ms=600, **KW)
    assert again is not None and again["id"] != a1["id"] and again["first_seen"] == 600


def test_ids_are_deterministic_and_replays_are_ignored() -> None:
    s1, s2 = alerting.new_alert_state(), alerting.new_alert_state()
    a = alerting.apply(s1, assessment=active(), ts_ms=100, **KW)
    b = alerting.apply(s2, assessment=active(), ts_ms=100, **KW)
    assert a == b
    assert a is not None and a["id"] == alerting.alert_id("vehicle", "V1", "weak_12v_battery", 100)
    assert alerting.apply(s1, assessment=active("critical"), ts_ms=50, **KW) is None


steps = st.lists(st.tuples(st.sampled_from(["info", "warning", "critical", "clear", "abstain"]),
                           st.integers(0, 10_000)), max_size=40)


@given(steps)
def test_state_machine_invariants(sequence: list[tuple[str, int]]) -> None:
    state = alerting.new_alert_state()
    open_id: str | None = None
    resolved_at: int | None = None
    ids_seen: dict[str, int] = {}
    ts = 0
    for what, dt in sequence:
        ts += dt
        assessment = {"clear": CLEAR, "abstain": ABSTAIN}.get(what) or active(what)
        alert = alerting.apply(state, assessment=assessment, ts_ms=ts, **KW)
        if alert is None:
            # An active assessment is only swallowed in the very instant of a resolution
            # (reopening then would reuse the resolved alert's id).
            assert what in ("clear", "abstain") or (open_id is None and ts == resolved_at)
            continue
        assert alert["last_seen"] == ts and alert["first_seen"] <= ts
        if alert["status"] == "open":
            # Never two different open alerts: an open one is updated, not duplicated.
            assert open_id in (None, alert["id"])
            if open_id is None:
                assert alert["id"] not in ids_seen, "a resolved alert id was reopened"
            open_id = alert["id"]
        else:
            assert alert["id"] == open_id, "resolved an alert that was not open"
            open_id = None
            resolved_at = ts
        ids_seen[alert["id"]] = alert["first_seen"]
        assert alert["id"] == alerting.alert_id("vehicle", "V1", "weak_12v_battery",
                                                alert["first_seen"])
