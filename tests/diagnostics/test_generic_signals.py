"""The generic detector on every numeric signal of a car (diagnostics.generic_signals)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.generic_signals import (
    ALERT_TYPE,
    GenericSignals,
    scored_signals,
    signal_key,
)
from diagnostics.pipeline import position_key
from vocab.eventtime import DAY_MS, MINUTE_MS

T0 = 1_767_225_600_000
VIN = "WCRAE1B54PA241856"
AIR = "Vehicle.Exterior.AirTemperature"
TYRE = "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"
ODO = "Vehicle.TraveledDistance"


def car(days: int, *, leak_from: float | None = None, cold_from: float | None = None,
        seed: int = 1, every_ms: int = 5 * MINUTE_MS) -> Iterator[dict[str, Any]]:
    """Telemetry records of one car: air temperature with a daily cycle, a tyre pressure
    following it, an odometer; from ``leak_from`` (days) the tyre loses 3 kPa a day, from
    ``cold_from`` the weather cools by 2 degrees a day (air and tyre together)."""
    rng = random.Random(seed)
    odo = 0.0
    for i in range(int(days * DAY_MS // every_ms)):
        ts = T0 + i * every_ms
        day = (ts - T0) / DAY_MS
        air = 10 + 5 * math.sin(2 * math.pi * day) + rng.gauss(0, 0.3)
        if cold_from is not None and day > cold_from:
            air -= 2 * (day - cold_from)
        tyre = 240 + 0.8 * (air - 10) + rng.gauss(0, 0.5)
        if leak_from is not None and day > leak_from:
            tyre -= 3 * (day - leak_from)
        odo += rng.uniform(0, 500)
        yield {"kind": "vehicle_telemetry", "id": VIN, "ts": ts, "seq": i,
               "data": {"signals": {AIR: round(air, 2), TYRE: round(tyre, 1), ODO: round(odo),
                                    "Vehicle.IsMoving": False,
                                    "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMin": 7,
                                    "Vehicle.CurrentLocation.Latitude": 48.1 + day / 100,
                                    "Vehicle.LowVoltageSystemState": "OFF"}}}


def run(records: list[dict[str, Any]], detector: GenericSignals | None = None
        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    detector = detector or GenericSignals()
    states: dict[str, Any] = {}
    alerts = []
    for record in records:
        alerts += detector.process([record], states)[0]
    return alerts, states


def test_only_numeric_health_signals_are_scored() -> None:
    signals = {"Vehicle.Speed": 3, "Vehicle.IsMoving": True, "Vehicle.Exterior.AirTemperature":
               float("nan"), "Vehicle.LowVoltageSystemState": "ON",
               "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMax": 12,
               "Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages": [3.9, 3.8],
               "Vehicle.CurrentLocation.Longitude": 11.5, ODO: 1200.5}
    assert list(scored_signals(signals)) == [("Vehicle.Speed", 3.0), (ODO, 1200.5)]


def test_a_tyre_losing_air_alone_is_alerted_with_its_evidence() -> None:
    alerts, states = run(list(car(20, leak_from=8)))
    assert [a["status"] for a in alerts] == ["open"]
    alert = alerts[0]
    assert alert["type"] == ALERT_TYPE
    assert alert["severity"] == "info"
    evidence = alert["evidence"]
    assert evidence["signal"] == TYRE
    assert evidence["direction"] == "low"
    assert evidence["days"] >= 3
    assert evidence["value"] < (evidence["previous_low"] + evidence["previous_high"]) / 2
    assert alert["first_seen"] > T0 + 8 * DAY_MS
    assert alert["recommended_action"]
    # An identifier, a position and a counter never become evidence.
    assert all(ODO not in a["evidence"]["signals"] for a in alerts)
    assert signal_key(VIN, "Vehicle.CurrentLocation.Latitude") not in states


def test_a_healthy_car_and_a_cold_spell_raise_nothing() -> None:
    assert run(list(car(20)))[0] == []
    # The weather cools for days: air and tyre set new lows together, which explains both.
    assert run(list(car(20, cold_from=8)))[0] == []


def test_one_sample_per_interval_and_late_or_repeated_records_are_not_sampled() -> None:
    detector = GenericSignals(sample_s=900)
    records = list(car(1, every_ms=MINUTE_MS))
    states: dict[str, Any] = {}
    detector.process(records, states)
    per_signal = detector.scores // 3  # three scored signals per sampled record
    assert per_signal == math.ceil(len(records) / 15)
    before = json.dumps(states, sort_keys=True)
    detector.process(records[-30:], states)  # redelivered
    assert json.dumps(states, sort_keys=True) == before


def test_each_signal_state_stays_small() -> None:
    _, states = run(list(car(30, leak_from=10)))
    sizes = {key: len(json.dumps(value)) for key, value in states.items()}
    assert max(sizes.values()) <= 4096
    assert len(json.dumps(states[VIN])) <= 4096


def test_process_source_writes_changed_keys_then_the_position() -> None:
    detector = GenericSignals()
    table: dict[str, Any] = {}
    records = list(car(1, every_ms=MINUTE_MS))
    alerts, writes = detector.process_source(table, 3, 41, records[:1])
    assert table == {}  # the caller writes
    assert list(writes)[-1] == position_key(3)
    assert writes[position_key(3)] == 41
    assert writes[VIN]["part"] == 3
    # The car, its three scored signals, the partition's counts of cars reporting each.
    assert set(writes) == {VIN, signal_key(VIN, AIR), signal_key(VIN, TYRE),
                           signal_key(VIN, ODO), position_key(3), f"#fleet/3|{AIR}",
                           f"#fleet/3|{TYRE}", f"#fleet/3|{ODO}"}
    table.update(writes)
    # Too soon for another sample: only the position moves.
    _, writes = detector.process_source(table, 3, 42, records[1:2])
    assert writes == {position_key(3): 42}
    table.update(writes)
    _, writes = detector.process_source(table, 3, 40, records[1:2])  # redelivered, older
    assert writes == {position_key(3): 42}


@settings(max_examples=5, deadline=None)
@given(st.integers(1, 3500), st.integers(0, 3))
def test_a_restart_from_the_json_states_changes_nothing(cut: int, seed: int) -> None:
    records = list(car(12, leak_from=4, seed=seed))
    whole, _ = run(records)
    detector = GenericSignals()
    states: dict[str, Any] = {}
    first = []
    for record in records[:cut]:
        first += detector.process([record], states)[0]
    restored = json.loads(json.dumps(states))
    restarted = GenericSignals()
    second = []
    for record in records[cut:]:
        second += restarted.process([record], restored)[0]
    assert first + second == whole


def test_a_pending_hygiene_decision_falls_due_at_the_end() -> None:
    detector = GenericSignals()
    alerts, states = run(list(car(20, leak_from=8)), detector)
    assert detector.due(states, T0 + 40 * DAY_MS) == []  # nothing pending: nothing owed
    assert alerts
    assert states[VIN]["alert"]["open"] == alerts[0]["id"]


FUEL = "Vehicle.Powertrain.FuelSystem.RelativeLevel"


def tank(days: int, *, start: float, burn: float, refills: tuple[float, ...] = (10.0,),
         every_ms: int = 5 * MINUTE_MS) -> Iterator[dict[str, Any]]:
    """A car whose fuel level falls by ``burn`` per sample while it drives (two hours a day)
    and is filled to 100 in one step below the next of ``refills`` (the last one from then
    on): a sawtooth, its healthy cycle."""
    fuel, cycle = start, 0
    for record in car(days, every_ms=every_ms):
        hour = (int(record["ts"]) - T0) % DAY_MS / (60 * MINUTE_MS)
        if 7 <= hour < 9:
            fuel -= burn
            if fuel < refills[min(cycle, len(refills) - 1)]:
                fuel, cycle = 100.0, cycle + 1
        record["data"]["signals"][FUEL] = round(fuel)
        yield record


def test_a_tank_used_up_and_refilled_is_its_cycle_not_a_drift() -> None:
    # Refilled every day or two, each time a little emptier than ever before: new lows day
    # after day, but the jump back to full shows that going down is routine.
    records = list(tank(40, start=100, burn=1.5, refills=tuple(range(90, 4, -5))))
    fuel = [r["data"]["signals"][FUEL] for r in records]
    assert sum(b - a > 50 for a, b in zip(fuel, fuel[1:], strict=False)) >= 10
    alerts, states = run(records)
    assert alerts == []
    assert states[signal_key(VIN, FUEL)]["up"] > 50
    # Judged without that (a return of a whole range in one step counted as not routine),
    # the same tank is a drift.
    drift = run(records, GenericSignals(routine_return=2.0))[0]
    assert [(a["status"], a["evidence"]["signal"]) for a in drift] == [("open", FUEL)]


def test_a_first_tank_that_only_ever_fell_is_not_evidence() -> None:
    # Never refilled in the run: a signal that has only ever moved one way is a counter or a
    # consumable, its new lows are its nature.
    records = list(tank(30, start=100, burn=0.06))
    assert min(r["data"]["signals"][FUEL] for r in records) > 10
    assert run(records)[0] == []
    # The same tank with a gauge that once rose by a point is judged, and found drifting.
    wobble = records[len(records) // 3]["data"]["signals"]
    wobble[FUEL] += 1
    drift = run(records)[0]
    assert [(a["status"], a["evidence"]["signal"]) for a in drift][:1] == [("open", FUEL)]


def parked(vin: str, days: int, cold_from: float, seed: int) -> Iterator[dict[str, Any]]:
    """A parked car reporting only its air temperature (every 30 minutes); from ``cold_from``
    (days) the weather cools by 2 degrees a day: no other signal of the car shares it."""
    rng = random.Random(seed)
    every = 30 * MINUTE_MS
    for i in range(int(days * DAY_MS // every)):
        ts = T0 + i * every + seed * 1000
        day = (ts - T0) / DAY_MS
        air = 10 + 5 * math.sin(2 * math.pi * day) + rng.gauss(0, 0.3)
        if day > cold_from:
            air -= 2 * (day - cold_from)
        yield {"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": i,
               "data": {"signals": {AIR: round(air, 2)}}}


def test_a_cold_spell_the_fleet_shares_is_not_one_cars_drift() -> None:
    vins = [f"WCRAE1B54PA24{n:04d}" for n in range(6)]
    # Alone, the parked car's air temperature looks like a drift: nothing of its own shares it.
    assert [a["status"] for a in run(list(parked(vins[0], 20, 9, 0)))[0]] == ["open"]
    # The other cars of the fleet see the same weather at the same time: nobody's drift.
    fleet = sorted((r for n, vin in enumerate(vins) for r in parked(vin, 20, 9, n)),
                   key=lambda r: int(r["ts"]))
    alerts, states = run(fleet)
    assert alerts == []
    ledger = states[f"#fleet/|{AIR}"]  # per 12 h: cars reporting, with a new high, a new low
    assert max(row[2] for row in ledger.values()) >= 4
    assert all(row[0] == len(vins) for row in ledger.values())
    assert len(json.dumps(ledger)) <= 4096
    # Fewer than three other cars sharing it are no fleet: each car's drift is its own.
    pair = sorted((r for n, vin in enumerate(vins[:3]) for r in parked(vin, 20, 9, n)),
                  key=lambda r: int(r["ts"]))
    assert {a["asset_id"] for a in run(pair)[0]} == set(vins[:3])


def test_nothing_is_evidence_before_a_week_of_the_signal() -> None:
    alerts, _ = run(list(car(20, leak_from=1)))
    assert [a["status"] for a in alerts] == ["open"]
    assert alerts[0]["evidence"]["first_event"] >= T0 + 7 * DAY_MS
    # With no such wait the same leak is found earlier.
    early, _ = run(list(car(20, leak_from=1)), GenericSignals(history_days=0))
    assert early
    assert early[0]["first_seen"] < alerts[0]["first_seen"]


def test_states_of_the_previous_version_are_read_on() -> None:
    # 1.0.0 kept only the last value and whether it ever fell; its states carry on.
    records = list(car(20, leak_from=8))
    detector = GenericSignals()
    states: dict[str, Any] = {}
    for record in records[:2000]:
        detector.process([record], states)
    for key, value in states.items():
        if not key.startswith("#") and "|" in key:
            states[key] = {"g": value["g"], "p": value["p"], "dec": value["dec"],
                           "x": value["x"]}
        elif "|" not in key:
            for event in value["rule"]["ev"]:
                del event[5:]
    alerts = []
    for record in records[2000:]:
        alerts += detector.process([record], states)[0]
    assert [(a["status"], a["evidence"]["signal"]) for a in alerts] == [("open", TYRE)]
