"""The charger pipeline: detectors, session outcomes, positions, redelivery (no brokers)."""

from __future__ import annotations

from typing import Any

from diagnostics.charger_pipeline import ChargerPipeline
from diagnostics.charger_silence import ChargerSilencePipeline
from diagnostics.offline import OfflineDiagnostics
from diagnostics.pipeline import position_key
from diagnostics.registry import DETECTORS
from tests.diagnostics.charger_series import DAY_MS, T0, Charger, folding, steady


def test_every_registered_charger_detector_runs_in_exactly_one_charger_pipeline() -> None:
    """The charger pipeline runs those that do not sweep, the silence pipeline the one that
    does (with its own states and sweep clocks)."""
    charger_pipeline, silence = ChargerPipeline(), ChargerSilencePipeline()
    assert not any(d.sweeps for d in charger_pipeline.detectors.values())
    assert silence.detector.sweeps
    assert sorted([*charger_pipeline.detectors, silence.alert_type]) == sorted(
        DETECTORS["charger"])


def test_finished_sessions_become_outcomes_with_vin_or_none() -> None:
    c = Charger()
    records = c.session(T0, 30, steady(50_000), vin="VIN-A")
    records += c.session(T0 + DAY_MS, 30, steady(50_000), end_status="Faulted",
                         error="GroundFailure")
    _, changed, outcomes = ChargerPipeline().process(records, {})
    assert changed == {"CP-0001"}
    assert [(o["vin"], o["abnormal"], o["end_status"], o["error_code"]) for o in outcomes] == [
        ("VIN-A", False, "Finishing", None), (None, True, "Faulted", "GroundFailure")]
    assert all(o["charger_id"] == "CP-0001" and o["ts"] > o["start_ts"] for o in outcomes)


def test_process_source_writes_states_then_the_position_and_leaves_the_table_alone() -> None:
    c = Charger()
    table: dict[str, Any] = {}
    pipeline = ChargerPipeline()
    records = list(c.session(T0, 30, folding(100_000, 0.5)))
    alerts, writes, outcomes = pipeline.process_source(table, 3, 41, records)
    assert table == {}  # the caller writes
    assert list(writes) == ["CP-0001", position_key(3)]
    assert writes[position_key(3)] == 41
    assert len(outcomes) == 1
    assert alerts == []
    table.update(writes)
    more = list(c.session(T0 + DAY_MS, 30, folding(100_000, 0.5)))
    alerts, writes, _ = pipeline.process_source(table, 3, 42, more)
    assert [a["type"] for a in alerts] == ["charger_derating"]
    table.update(writes)
    _, writes, _ = pipeline.process_source(table, 3, 40, more)  # a redelivery
    assert writes == {position_key(3): 42}


def test_offline_diagnostics_dispatch_charger_records_through_attribution() -> None:
    chargers = [Charger(f"CP-{i}") for i in range(3)]
    records: list[dict[str, Any]] = []
    t = T0
    for _day in range(3):
        for c in chargers:  # other cars charge fine everywhere
            records += c.session(t, 30, steady(50_000), vin=None)
            t += 3_600_000
            records += c.session(t, 30, steady(50_000), vin="GOOD")
            t += 3_600_000
    for c in chargers[:2]:  # one car fails wherever it goes
        records += c.session(t, 20, steady(50_000), vin="BAD", end_status="Finishing",
                             error="EVCommunicationError")
        t += 3_600_000
    offline = OfflineDiagnostics()
    # The attribution holds the last sessions until the stream has passed them by its hold;
    # the end of the stream releases them.
    alerts = offline.process(records) + offline.finish(t)
    # These chargers send nothing between sessions (no heartbeats), hours apart: the silence
    # detector rightly finds them silent. What is asserted here is the attribution.
    assert {(a["asset_kind"], a["asset_id"], a["type"]) for a in alerts
            if a["type"] != "charger_silent"} == {("vehicle", "BAD", "charging_inlet_fault")}
    assert len(offline.session_outcomes) == 3 * 2 * 3 + 2


def _flapping_then_recovered(pipeline: ChargerPipeline, states: dict[str, Any]) -> tuple[
        Charger, int, list[dict[str, Any]]]:
    """Derating that opens three times in a day, then good sessions: a flapping alert that
    may resolve only after ``flap_recovery_ms`` of clear, which no later session reports."""
    c, t, alerts = Charger(), T0, []
    for kind in "ffggggffggggffgggg":
        profile = folding(100_000, 0.5) if kind == "f" else steady(100_000)
        alerts += pipeline.process(c.session(t, 40, profile), states)[0]
        t += 1_800_000
    assert alerts[-1]["status"] == "open"
    assert alerts[-1]["evidence"]["flapping"]
    assert states["CP-0001"]["alerts"]["charger_derating"]["pending"] is not None
    return c, t, alerts


def test_a_pending_clearance_falls_due_on_a_later_heartbeat() -> None:
    pipeline, states = ChargerPipeline(), {}
    c, t, alerts = _flapping_then_recovered(pipeline, states)
    recovery_ms = alerts[-1]["evidence"]["flapping"]["recovery_ms"]
    early, _, _ = pipeline.process([c.status(t + recovery_ms // 2, "Available")], states)
    assert early == []  # clear, but not for long enough yet
    late, _, _ = pipeline.process([c.status(t + recovery_ms, "Available")], states)
    assert [(a["id"], a["status"]) for a in late] == [(alerts[-1]["id"], "resolved")]


def test_the_end_of_a_recorded_stream_settles_pending_charger_alerts() -> None:
    offline = OfflineDiagnostics()
    c, t, alerts = _flapping_then_recovered(offline.chargers, offline.charger_states)
    recovery_ms = alerts[-1]["evidence"]["flapping"]["recovery_ms"]
    settled = [a for a in offline.finish(t + recovery_ms) if a["asset_kind"] == "charger"]
    assert [(a["id"], a["status"]) for a in settled] == [(alerts[-1]["id"], "resolved")]
