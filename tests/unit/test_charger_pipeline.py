"""The charger pipeline: detectors, session outcomes, positions, redelivery (no brokers)."""

from __future__ import annotations

from typing import Any

from diagnostics.charger_pipeline import ChargerPipeline
from diagnostics.offline import OfflineDiagnostics
from diagnostics.pipeline import position_key
from tests.unit.charger_series import DAY_MS, T0, Charger, folding, steady


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
    assert list(writes) == ["CP-0001", position_key(3)] and writes[position_key(3)] == 41
    assert len(outcomes) == 1 and alerts == []
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
    alerts = offline.process(records)
    assert {(a["asset_kind"], a["asset_id"], a["type"]) for a in alerts} == {
        ("vehicle", "BAD", "charging_inlet_fault")}
    assert len(offline.session_outcomes) == 3 * 2 * 3 + 2
