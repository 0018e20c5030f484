"""Root-cause links: the table's rules, and alerts that carry ``root_cause_id`` through the
alarm-hygiene state machine and the vehicle pipeline."""

from __future__ import annotations

from typing import Any

from diagnostics import alerting, rootcause
from diagnostics.base import Assessment
from diagnostics.dtc import DiagnosticTroubleCodes
from diagnostics.pipeline import VehiclePipeline

H = 3_600_000


def codes(*names: str) -> dict[str, Any]:
    return {"active_codes": [{"code": c, "severity": "warning", "first_seen": 0}
                             for c in names]}


def test_lost_communication_codes_are_consequences_of_a_weak_battery() -> None:
    battery = {"weak_12v_battery": ("B1", None)}
    assert rootcause.root_cause_id("dtc", codes("U0100"), battery) == "B1"
    assert rootcause.root_cause_id("dtc", codes("P0420", "P0562"), battery) == "B1"
    assert rootcause.root_cause_id("vehicle_silent", {}, battery) == "B1"


def test_unrelated_codes_and_absent_causes_are_not_linked() -> None:
    battery = {"weak_12v_battery": ("B1", None)}
    assert rootcause.root_cause_id("dtc", codes("P0420"), battery) is None  # catalyst
    assert rootcause.root_cause_id("dtc", codes("U0100"), {}) is None
    assert rootcause.root_cause_id("dtc", {"active_codes": "U0100"}, battery) is None
    assert rootcause.root_cause_id("slow_tyre_leak", {}, battery) is None
    # A cell-block code is the imbalance's consequence, not the battery's.
    assert rootcause.root_cause_id("dtc", codes("P0A80"), battery) is None
    assert rootcause.root_cause_id("dtc", codes("P0A80"),
                                   {"cell_imbalance": ("C1", None)}) == "C1"


def test_links_point_at_the_root_of_a_chain() -> None:
    links = (rootcause.Link("b", "a", "a causes b"), rootcause.Link("c", "b", "b causes c"))
    open_alerts = {"a": ("A1", None), "b": ("B1", "A1")}
    assert rootcause.root_cause_id("c", {}, open_alerts, links) == "A1"


def test_every_link_is_explained_and_not_circular() -> None:
    for link in rootcause.LINKS:
        assert link.effect != link.cause
        assert len(link.why) > 20
    pairs = {(link.effect, link.cause) for link in rootcause.LINKS}
    assert not {(cause, effect) for effect, cause in pairs} & pairs


def kw(alert_type: str) -> dict[str, Any]:
    return {"asset_kind": "vehicle", "asset_id": "V1", "alert_type": alert_type,
            "detector": alert_type, "detector_version": "1"}


ACTIVE = Assessment(active=True, severity="warning", title="t", evidence={})
CLEAR = Assessment(active=False, title="ok")


def test_a_consequence_opened_while_its_cause_is_open_carries_the_link() -> None:
    states = {"weak_12v_battery": alerting.new_alert_state(), "dtc": alerting.new_alert_state()}
    cause = alerting.apply(states["weak_12v_battery"], assessment=ACTIVE, ts_ms=0,
                           related=states, **kw("weak_12v_battery"))
    assert cause is not None
    assert cause["root_cause_id"] is None
    lost = Assessment(active=True, severity="warning", title="U0100", evidence=codes("U0100"))
    effect = alerting.apply(states["dtc"], assessment=lost, ts_ms=H, related=states,
                            **kw("dtc"))
    assert effect is not None
    assert effect["root_cause_id"] == cause["id"]
    # The battery resolves; the code's alert keeps its history (it arose from the battery).
    alerting.apply(states["weak_12v_battery"], assessment=CLEAR, ts_ms=2 * H, related=states,
                   **kw("weak_12v_battery"))
    more = Assessment(active=True, severity="warning", title="2", evidence=codes("U0100", "B1"))
    update = alerting.apply(states["dtc"], assessment=more, ts_ms=3 * H, related=states,
                            **kw("dtc"))
    assert update is not None
    assert update["root_cause_id"] == cause["id"]
    # Resolved and back within the hold-off: the same alert, the same link.
    alerting.apply(states["dtc"], assessment=CLEAR, ts_ms=4 * H, related=states, **kw("dtc"))
    reopened = alerting.apply(states["dtc"], assessment=lost, ts_ms=5 * H, related=states,
                              **kw("dtc"))
    assert reopened is not None
    assert reopened["id"] == effect["id"]
    assert reopened["root_cause_id"] == cause["id"]
    # Later than the hold-off, with the battery resolved: a problem of its own.
    alerting.apply(states["dtc"], assessment=CLEAR, ts_ms=6 * H, related=states, **kw("dtc"))
    new = alerting.apply(states["dtc"], assessment=lost, ts_ms=20 * H, related=states,
                         **kw("dtc"))
    assert new is not None
    assert new["id"] != effect["id"]
    assert new["root_cause_id"] is None


def test_a_cause_that_opens_later_does_not_link_retroactively() -> None:
    states = {"weak_12v_battery": alerting.new_alert_state(), "dtc": alerting.new_alert_state()}
    lost = Assessment(active=True, severity="warning", title="U0100", evidence=codes("U0100"))
    effect = alerting.apply(states["dtc"], assessment=lost, ts_ms=0, related=states,
                            **kw("dtc"))
    alerting.apply(states["weak_12v_battery"], assessment=ACTIVE, ts_ms=H, related=states,
                   **kw("weak_12v_battery"))
    more = Assessment(active=True, severity="warning", title="2", evidence=codes("U0100", "B1"))
    update = alerting.apply(states["dtc"], assessment=more, ts_ms=2 * H, related=states,
                            **kw("dtc"))
    assert effect is not None
    assert update is not None
    assert update["root_cause_id"] is None


class AlwaysWeak(DiagnosticTroubleCodes):
    """A stand-in battery detector: active from the first telemetry message on."""

    name = "always_weak"

    def update(self, state: dict[str, Any], ts_ms: int, signals: Any) -> Any:
        if state.get("said"):
            return False, None
        state["said"] = True
        return True, ACTIVE


def record(seq: int, ts: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "id": "VIN1", "ts": ts, "seq": seq, "data": data}


def test_the_pipeline_links_across_its_detectors() -> None:
    pipeline = VehiclePipeline({"weak_12v_battery": AlwaysWeak(),
                                "dtc": DiagnosticTroubleCodes()})
    states: dict[str, Any] = {}
    alerts, _ = pipeline.process([
        record(1, 1_000, "vehicle_telemetry", {"signals": {}}),
        record(2, 2_000, "vehicle_event", {"type": "dtc", "code": "U0100", "state": "active"}),
    ], states)
    by_type = {a["type"]: a for a in alerts}
    assert by_type["dtc"]["root_cause_id"] == by_type["weak_12v_battery"]["id"]
