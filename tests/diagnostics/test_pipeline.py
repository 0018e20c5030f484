"""The worker's pure pipeline: duplicates dropped, detectors run, alerts and dirty state out."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.pipeline import LatestValues, VehiclePipeline, latest_signal_rows
from diagnostics.registry import DETECTORS
from tests.diagnostics.battery_series import DAY_MS, START_MS, failure_day, series, weakening

VIN = "WCRAAAAAAAAAAAAA1"


def records(samples: Any, vin: str = VIN) -> list[dict[str, Any]]:
    return [{"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": i, "data": {"signals": s}}
            for i, (ts, s) in enumerate(samples, start=1)]


def test_weak_battery_alert_comes_out_of_the_pipeline_once() -> None:
    recs = records(series(int(failure_day(12.65, 0.05)), weakening(12.65, 0.05), seed=1))
    healthy = records(series(int(failure_day(12.65, 0.05)), lambda _d: 12.7, seed=2),
                      vin="WCRAAAAAAAAAAAAA2")
    pipeline = VehiclePipeline()
    states: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    # Micro-batches of 50 records, as the bridge packs them.
    merged = sorted(recs + healthy, key=lambda r: r["ts"])
    for i in range(0, len(merged), 50):
        out, changed = pipeline.process(merged[i:i + 50], states)
        alerts += out
        assert changed <= {VIN, "WCRAAAAAAAAAAAAA2"}
    assert {a["asset_id"] for a in alerts} == {VIN}
    assert len({a["id"] for a in alerts}) == 1
    assert alerts[0]["first_seen"] < START_MS + int(failure_day(12.65, 0.05) * DAY_MS)


def test_redelivered_records_are_dropped_and_do_not_dirty_state() -> None:
    recs = records(series(3, lambda _d: 12.7, seed=1))
    pipeline = VehiclePipeline()
    states: dict[str, Any] = {}
    pipeline.process(recs, states)
    snapshot = repr(states)
    out, changed = pipeline.process(recs[-20:], states)  # at-least-once redelivery
    assert out == []
    assert changed == set()
    assert pipeline.duplicates == 20
    assert repr(states) == snapshot


def test_device_counter_reset_is_not_mistaken_for_duplicates() -> None:
    pipeline = VehiclePipeline()
    states: dict[str, Any] = {}
    pipeline.process([{"kind": "vehicle_telemetry", "id": VIN, "ts": 1000, "seq": 500,
                       "data": {"signals": {"Vehicle.Speed": 1.0}}}], states)
    pipeline.process([{"kind": "vehicle_telemetry", "id": VIN, "ts": 2000, "seq": 1,
                       "data": {"signals": {"Vehicle.Speed": 2.0}}}], states)
    assert pipeline.duplicates == 0
    assert states[VIN]["seq"] == 1


def test_latest_rows_are_coalesced_per_batch() -> None:
    rows = latest_signal_rows([
        {"kind": "vehicle_telemetry", "id": VIN, "ts": 2, "seq": 2,
         "data": {"signals": {"Vehicle.Speed": 20.0}}},
        {"kind": "vehicle_telemetry", "id": VIN, "ts": 1, "seq": 1,
         "data": {"signals": {"Vehicle.Speed": 10.0, "Vehicle.IsMoving": True}}},
        {"kind": "charger_status", "id": "CP-1", "ts": 5, "seq": 5,
         "data": {"connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure"}},
    ])
    assert sorted(rows) == sorted([
        ("vehicle", VIN, "Vehicle.Speed", 20.0, 2),
        ("vehicle", VIN, "Vehicle.IsMoving", True, 1),
        ("charger", "CP-1", "OCPP.Connector1.Status", "Faulted", 5),
        ("charger", "CP-1", "OCPP.Connector1.ErrorCode", "GroundFailure", 5),
    ])


def test_latest_values_merge_by_event_time_per_signal() -> None:
    latest = LatestValues()
    latest.add([{"kind": "vehicle_telemetry", "id": VIN, "ts": 3, "seq": 3,
                 "data": {"signals": {"Vehicle.Speed": 30.0}}}])
    latest.add([
        {"kind": "vehicle_telemetry", "id": VIN, "ts": 1, "seq": 1,  # late: older than ts 3
         "data": {"signals": {"Vehicle.Speed": 10.0, "Vehicle.IsMoving": True}}},
        {"kind": "vehicle_telemetry", "id": VIN, "ts": 3, "seq": 4,  # same ts: later arrival
         "data": {"signals": {"Vehicle.Exterior.AirTemperature": 5.0, "Vehicle.Speed": 31.0}}},
        {"kind": "vehicle_event", "id": VIN, "ts": 9, "seq": 5, "data": {"type": "crank"}},
        {"kind": "charger_meter", "id": "CP-1", "ts": 4, "seq": 1,
         "data": {"connectorId": 2, "measurands": {"Power.Active.Import": 7000.0}}},
    ])
    assert len(latest) == 2
    assert sorted(latest.drain()) == sorted([
        ("vehicle", VIN, "Vehicle.Speed", 31.0, 3),
        ("vehicle", VIN, "Vehicle.IsMoving", True, 1),
        ("vehicle", VIN, "Vehicle.Exterior.AirTemperature", 5.0, 3),
        ("charger", "CP-1", "OCPP.Connector2.Power.Active.Import", 7000.0, 4),
    ])
    assert latest.drain() == []
    assert len(latest) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["V1", "V2"]), st.integers(0, 5),
                          st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                          st.integers(0, 9), min_size=1)),
                max_size=30),
       st.integers(0, 30))
def test_latest_values_keep_per_signal_the_newest_value_whatever_the_flush_split(
        messages: list[tuple[str, int, dict[str, int]]], split: int) -> None:
    recs = [{"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": i, "data": {"signals": s}}
            for i, (vin, ts, s) in enumerate(messages)]
    # The definition: per (asset, signal) the newest event time; a tie goes to the later arrival.
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for vin, ts, signals in messages:
        for path, value in signals.items():
            if (vin, path) not in expected or ts >= expected[(vin, path)][0]:
                expected[(vin, path)] = (ts, value)
    latest = LatestValues()
    latest.add(recs[:split])
    latest.add(recs[split:])
    rows = latest.drain()
    assert {(a, p): (ts, v) for _k, a, p, v, ts in rows} == expected
    assert len(rows) == len(expected)
    assert latest.drain() == []


def test_the_vehicle_pipeline_runs_the_registered_vehicle_detectors() -> None:
    pipeline = VehiclePipeline()
    assert list(pipeline.detectors) == list(DETECTORS["vehicle"])  # the order alerts come in
    assert set(pipeline.sweepers) == {t for t, cls in DETECTORS["vehicle"].items() if cls.sweeps}
    assert set(pipeline.sweepers) == {"vehicle_silent"}
