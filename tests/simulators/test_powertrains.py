"""Combustion and hybrid cars in the simulated fleet: mix, signals, fuel, the alternator."""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import orjson
import pytest

from simulators.faults import (
    CHARGE_HEADROOM_V,
    FAILURE_V25,
    FAULTS,
    TRACTION_BATTERY,
    alternator_failure_ts,
)
from simulators.fleet import Fleet
from simulators.physics import engine
from simulators.population import ALL_ELECTRIC, parse_powertrain_mix
from vocab.eventtime import DAY_MS, HOUR_MS

VOLTS = "Vehicle.LowVoltageBattery.CurrentVoltage"
AMPS = "Vehicle.LowVoltageBattery.CurrentCurrent"
KEY = "Vehicle.LowVoltageSystemState"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
RUNNING = "Vehicle.Powertrain.CombustionEngine.IsRunning"
RPM = "Vehicle.Powertrain.CombustionEngine.Speed"
ECT = "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature"
FUEL = "Vehicle.Powertrain.FuelSystem.RelativeLevel"
MOTOR = "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature"
SPEED = "Vehicle.Speed"

Decoded = list[tuple[int, str, dict[str, Any]]]


@cache
def mixed(days: int = 16) -> tuple[Fleet, dict[str, Decoded]]:
    """A mixed fleet (two failing alternators among them), each car's messages decoded."""
    fleet = Fleet(16, 2, seed=2, faults={"alternator": 2, "dtc": 2})
    by_vin: dict[str, Decoded] = {v.vin: [] for v in fleet.vehicles}
    for ts, topic, payload in fleet.messages(fleet.start_ms + days * DAY_MS):
        if topic.startswith("vehicles/"):
            by_vin[topic.split("/")[1]].append((ts, topic.rsplit("/", 1)[1],
                                                orjson.loads(payload)))
    return fleet, by_vin


def cars(powertrain: str) -> list[tuple[Any, Decoded]]:
    fleet, by_vin = mixed()
    out = [(v, by_vin[v.vin]) for v in fleet.vehicles if v.powertrain == powertrain]
    assert out, f"the fleet has no {powertrain} car"
    return out


def telemetry(messages: Decoded) -> list[tuple[int, dict[str, Any]]]:
    return [(ts, b["signals"]) for ts, kind, b in messages if kind == "telemetry"]


def test_default_mix_is_mostly_combustion_and_hybrid() -> None:
    counts = Counter(v.powertrain for v in Fleet(400, 0, seed=3).vehicles)
    assert counts["ice"] + counts["hev"] + counts["phev"] > 0.6 * 400
    assert 0.35 * 400 < counts["ice"] < 0.55 * 400
    assert counts["bev"] > 0.15 * 400


def test_an_electric_car_is_the_same_car_whatever_the_mix() -> None:
    mixed_fleet = Fleet(60, 0, seed=4)
    electric = Fleet(60, 0, seed=4, powertrain_mix=ALL_ELECTRIC)
    assert {v.powertrain for v in electric.vehicles} == {"bev"}
    same = [(a, b) for a, b in zip(mixed_fleet.vehicles, electric.vehicles, strict=True)
            if a.powertrain == "bev"]
    assert same
    assert all(a == b for a, b in same)


@pytest.mark.parametrize("mix", [None, {"ice": 1.0}, {"bev": 1.0}, {"hev": 3, "phev": 1}])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_fault_lands_on_a_car_that_can_have_it(mix: dict[str, float] | None,
                                                     seed: int) -> None:
    faults = {name: 2 for name, spec in FAULTS.items() if spec.asset == "vehicle"}
    fleet = Fleet(40, 0, seed=seed, faults=faults, powertrain_mix=mix)
    placed = Counter(v.fault.name for v in fleet.vehicles if v.fault is not None)
    assert placed == Counter(faults)
    for v in fleet.vehicles:
        if v.fault is not None:
            assert v.powertrain in FAULTS[v.fault.name].powertrains, (v.fault.name, mix)
    assert FAULTS["cell_drift"].powertrains == TRACTION_BATTERY
    assert FAULTS["alternator"].powertrains == {"ice"}


def test_combustion_cars_report_the_engine_and_the_alternator_not_a_traction_battery() -> None:
    for spec, messages in cars("ice"):
        if spec.fault is not None and spec.fault.name == "alternator":
            continue
        samples = telemetry(messages)
        assert not any(SOC in s or MOTOR in s for _, s in samples)
        running = [s for _, s in samples if s.get(RUNNING) is True]
        paused = [s for _, s in samples if s[KEY] == "ON" and s.get(RUNNING) is False]
        parked = [(ts, s) for ts, s in samples if s[KEY] == "OFF"]
        assert running
        assert paused, "stop-start pauses at traffic stops"
        assert parked
        # The alternator charges at its regulator's voltage; in a pause the battery dips.
        assert all(13.5 <= s[VOLTS] <= 15.0 for s in running if VOLTS in s)
        assert all(s[VOLTS] < 12.9 and s[AMPS] < -10 for s in paused
                   if VOLTS in s and AMPS in s)
        assert all(700 <= s[RPM] <= 6000 for s in running if RPM in s)
        # No DC-DC: a parked combustion car is never topped up (past its surface charge).
        last_on = 0
        rested = []
        for ts, s in samples:
            if s[KEY] == "ON":
                last_on = ts
            elif VOLTS in s and ts - last_on > HOUR_MS:
                rested.append(s[VOLTS])
        assert rested
        assert max(rested) < 12.95
        assert all(s[RUNNING] is False for _, s in parked)
        # The engine warms up to its thermostat on a drive.
        assert max(s[ECT] for s in running if ECT in s) > 80
        trip_ends = [b for _, k, b in messages if k == "events" and b["type"] == "trip_end"]
        assert trip_ends
        assert all("energy_kwh" not in b for b in trip_ends)


def test_fuel_falls_while_the_engine_runs_and_the_tank_is_refilled() -> None:
    for _spec, messages in cars("ice"):
        levels = [s[FUEL] for _, s in telemetry(messages) if FUEL in s]
        falls = sum(b < a for a, b in zip(levels, levels[1:], strict=False))
        rises = [b for a, b in zip(levels, levels[1:], strict=False) if b > a]
        assert falls > 5
        assert all(level == 100 for level in rises)  # only a refill adds fuel
        assert min(levels) >= engine.REFILL_BELOW_PCT - 5


def test_hybrids_never_plug_in_and_drive_partly_on_their_engine() -> None:
    for _spec, messages in cars("hev"):
        assert not any(b["type"].startswith("charge") for _, k, b in messages
                       if k == "events")
        samples = telemetry(messages)
        socs = [s[SOC] for _, s in samples if SOC in s]
        assert socs
        assert 40 <= min(socs) <= max(socs) <= 75  # charge-sustaining
        driving = [s for _, s in samples if s[KEY] == "ON"]
        assert any(s.get(RUNNING) for s in driving)
        assert any(s.get(RUNNING) is False and s[SPEED] > 0 for s in driving)
        assert not any(MOTOR in s for _, s in samples)


def test_plug_in_hybrids_drive_electrically_down_to_their_floor() -> None:
    for _spec, messages in cars("phev"):
        for _, s in telemetry(messages):
            if s[KEY] == "ON" and s.get(RUNNING) and SOC in s:
                assert (s[SOC] <= engine.PHEV_FLOOR_SOC + 0.01
                        or s[SPEED] > engine.PHEV_ENGINE_KMH)


def test_combustion_cars_do_not_get_hybrid_battery_trouble_codes() -> None:
    fleet, by_vin = mixed()
    for spec in fleet.vehicles:
        if spec.fault is not None and spec.fault.name == "dtc" and spec.powertrain == "ice":
            assert not str(spec.fault.params["code"]).startswith("P0A")


def test_a_failing_alternator_sags_then_the_car_does_not_crank() -> None:
    fleet, by_vin = mixed(days=45)
    failing = [v for v in fleet.vehicles if v.fault is not None and v.fault.name == "alternator"]
    assert len(failing) == 2
    for spec in failing:
        fault = spec.fault
        assert fault is not None
        assert spec.powertrain == "ice"
        rate = float(fault.params["rate_v_per_day"])
        assert fault.failure_ts == alternator_failure_ts(fault.onset_ts, spec.alternator_v, rate)
        fails_at = spec.alternator_v - rate * (fault.failure_ts - fault.onset_ts) / DAY_MS
        assert fails_at == pytest.approx(FAILURE_V25 + CHARGE_HEADROOM_V, abs=1e-3)
        messages = by_vin[spec.vin]
        charging = [(ts, s[VOLTS]) for ts, s in telemetry(messages)
                    if s.get(RUNNING) and VOLTS in s and s.get(SPEED, 0) > 1]
        before = [v for ts, v in charging if ts < fault.onset_ts]
        late = [v for ts, v in charging if fault.failure_ts - 2 * DAY_MS < ts < fault.failure_ts]
        assert late
        assert max(late) < 13.2
        if before:
            assert min(before) > 13.5
        # After the failure it never drives again and says why, once.
        after = [(ts, k, b) for ts, k, b in messages if ts >= fault.failure_ts]
        if fault.failure_ts < fleet.start_ms + 44 * DAY_MS:
            cranks = [b for _, k, b in after if k == "events" and b["type"] == "crank"]
            assert len(cranks) == 1
            assert "crank the engine" in cranks[0]["description"]
            assert not any(b["signals"][KEY] == "ON" for _, k, b in after if k == "telemetry")
            resting = [b["signals"][VOLTS] for ts, k, b in after if k == "telemetry"
                       and VOLTS in b["signals"] and ts > fault.failure_ts + 12 * HOUR_MS]
            assert resting
            assert max(resting) < FAILURE_V25 + 0.1


def test_the_mix_is_parsed_and_checked() -> None:
    assert parse_powertrain_mix("ice:45, hev:20,bev:35") == {"ice": 45.0, "hev": 20.0,
                                                             "bev": 35.0}
    for text, message in (("diesel:1", "unknown powertrain 'diesel'"),
                          ("ice", "needs a weight"), ("ice:x", "must be a number"),
                          ("ice:1,ice:2", "given twice"), ("ice:-1", ">= 0"),
                          ("ice:0,bev:0", "at least one"), ("ice:nan", "finite")):
        with pytest.raises(ValueError, match=message):
            parse_powertrain_mix(text)
    with pytest.raises(ValueError, match="unknown powertrain"):
        Fleet(1, powertrain_mix={"steam": 1.0})
