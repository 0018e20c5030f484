"""Trouble codes: immediate alerts, one per car, worst severity, resolved when all clear."""

from __future__ import annotations

from typing import Any

import pytest

from diagnostics.dtc import DiagnosticTroubleCodes
from diagnostics.pipeline import VehiclePipeline

VIN = "WCRAAAAAAAAAAAAA1"


def event(seq: int, code: str, state: str = "active") -> dict[str, Any]:
    return {"kind": "vehicle_event", "id": VIN, "ts": 1_000 * seq, "seq": seq,
            "data": {"type": "dtc", "code": code, "state": state}}


@pytest.mark.parametrize(("code", "severity"), [
    ("P0AA6", "critical"),  # hybrid/EV battery voltage system isolation fault
    ("C0035", "critical"),  # wheel speed sensor (ABS)
    ("P0420", "warning"),
    ("U0100", "warning"),
    ("B1000", "info"),
])
def test_severity_follows_the_code_system(code: str, severity: str) -> None:
    assert DiagnosticTroubleCodes().severity(code) == severity


def test_codes_join_one_alert_that_escalates_and_resolves() -> None:
    pipeline = VehiclePipeline({"dtc": DiagnosticTroubleCodes()})
    states: dict[str, Any] = {}
    first, _ = pipeline.process([event(1, "B1000")], states)
    assert [(a["status"], a["severity"]) for a in first] == [("open", "info")]
    more, _ = pipeline.process([event(2, "P0AA6"), event(3, "P0AA6")], states)
    assert [(a["status"], a["severity"]) for a in more] == [("open", "critical")]
    assert more[0]["id"] == first[0]["id"]
    codes = [c["code"] for c in more[0]["evidence"]["active_codes"]]
    assert codes == ["P0AA6", "B1000"]
    assert "today" in more[0]["recommended_action"]
    less, _ = pipeline.process([event(4, "P0AA6", "cleared")], states)
    assert [(a["status"], a["severity"]) for a in less] == [("open", "info")]  # de-escalates
    done, _ = pipeline.process([event(5, "B1000", "cleared")], states)
    assert [a["status"] for a in done] == ["resolved"]
    # A code set again within the detector's hold-off reopens the same alert (alarm hygiene:
    # one problem, not a new one per flicker); one set after it is a new alert.
    soon, _ = pipeline.process([event(6, "U0100")], states)
    assert soon[0]["id"] == first[0]["id"]
    assert soon[0]["severity"] == "warning"
    pipeline.process([event(7, "U0100", "cleared")], states)
    hold_off_s = DiagnosticTroubleCodes.alarm_policy.hold_off_ms // 1000
    again, _ = pipeline.process([event(8 + hold_off_s, "U0100")], states)
    assert again[0]["id"] != first[0]["id"]
    assert again[0]["severity"] == "warning"


def test_unknown_clear_and_telemetry_change_nothing() -> None:
    detector = DiagnosticTroubleCodes()
    state = detector.new_state()
    assert detector.on_event(state, 1, {"type": "dtc", "code": "P0420", "state": "cleared"}) \
        == (False, None)
    assert detector.update(state, 1, {"Vehicle.Speed": 3.0}) == (False, None)
    assert detector.on_event(state, 1, {"type": "ignition", "state": "ON"}) == (False, None)


def test_custom_severity_table_is_validated() -> None:
    assert DiagnosticTroubleCodes({"P": "critical"}).severity("P0420") == "critical"
    with pytest.raises(ValueError, match="unknown severities"):
        DiagnosticTroubleCodes({"P": "apocalyptic"})
