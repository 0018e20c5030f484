"""The simulated fleet: deterministic, valid against the contract, faults labelled truthfully."""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict
from functools import cache

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.contract import CHARGER_ID_RE, VIN_RE, validate
from simulators import booking, cli, faults, public_charging
from simulators.faults import FAILURE_V25, FaultInstance, FaultSpec, parse_fault_spec
from simulators.fleet import Fleet
from simulators.physics.battery12v import Battery12V
from simulators.physics.weather import Weather
from simulators.population import ALL_ELECTRIC
from simulators.spec import MODELS, MODELS_BY_POWERTRAIN
from simulators.vin import vin_check_digit
from vocab.eventtime import DAY_MS, HOUR_MS

Message = tuple[int, str, bytes]
VOLTS = "Vehicle.LowVoltageBattery.CurrentVoltage"
AMPS = "Vehicle.LowVoltageBattery.CurrentCurrent"
KEY = "Vehicle.LowVoltageSystemState"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"


def stream(fleet: Fleet, days: float) -> list[Message]:
    return list(fleet.messages(fleet.start_ms + int(days * DAY_MS)))


@cache
def reference() -> tuple[Fleet, list[Message]]:
    """10 battery-electric vehicles + 2 chargers over 14 simulated days, shared by the
    read-only tests of the EV's physics (DC-DC, traction battery, charging)."""
    fleet = Fleet(10, 2, seed=1, faults={"weak_12v": 2, "dtc": 1}, powertrain_mix=ALL_ELECTRIC)
    return fleet, stream(fleet, 14)


def decoded(messages: list[Message], vin: str) -> list[tuple[int, str, dict]]:
    return [(ts, topic.rsplit("/", 1)[1], orjson.loads(p)) for ts, topic, p in messages
            if topic.startswith(f"vehicles/{vin}/")]


# ------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    a = stream(Fleet(5, 1, seed=3, faults={"weak_12v": 1}), 3)
    b = stream(Fleet(5, 1, seed=3, faults={"weak_12v": 1}), 3)
    c = stream(Fleet(5, 1, seed=4, faults={"weak_12v": 1}), 3)
    assert a == b
    assert a != c
    assert Fleet(5, 1, seed=3).truth() == Fleet(5, 1, seed=3).truth()


def test_every_call_replays_the_same_stream() -> None:
    fleet = Fleet(4, 2, seed=8, faults={"weak_12v": 1})
    first = stream(fleet, 4)
    assert stream(fleet, 4) == first
    # A shorter run is the same stream, cut at its end.
    for days in (0.3, 2, 3.7):
        cut = fleet.start_ms + int(days * DAY_MS)
        assert stream(fleet, days) == [m for m in first if m[0] < cut]


# ------------------------------------------------------------------------- the contract


def test_every_message_follows_the_contract_and_time_and_seq_behave() -> None:
    fleet, messages = reference()
    last_ts = 0
    last_seq: dict[str, int] = {}
    kinds: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for ts, topic, payload in messages:
        record = validate(topic, payload)  # raises on any contract violation
        assert ts == record["ts"] >= last_ts
        assert fleet.start_ms <= ts < fleet.start_ms + 14 * DAY_MS
        last_ts = ts
        device = record["id"]
        assert record["seq"] > last_seq.get(device, 0), "seq must increase per device"
        last_seq[device] = record["seq"]
        kinds[record["kind"]] += 1
        if record["kind"] == "vehicle_event":
            events[record["data"]["type"]] += 1
    assert set(kinds) == {"vehicle_telemetry", "vehicle_event", "charger_status",
                          "charger_meter"}
    assert {"ignition", "trip_end", "charge_start", "charge_end", "dtc"} <= set(events)
    assert events["ignition"] == 2 * events["trip_end"]
    assert set(last_seq) == {v.vin for v in fleet.vehicles} | set(fleet.chargers)


@settings(max_examples=12)
@given(seed=st.integers(0, 10_000), vehicles=st.integers(0, 4), chargers=st.integers(0, 3),
       drive_s=st.sampled_from([1, 15, 60, 600]), parked_s=st.sampled_from([60, 900, 7200]))
def test_any_fleet_follows_the_contract(seed: int, vehicles: int, chargers: int, drive_s: int,
                                        parked_s: int) -> None:
    fleet = Fleet(vehicles, chargers, seed=seed, faults={"weak_12v": min(1, vehicles)},
                  drive_interval_s=drive_s, parked_interval_s=parked_s)
    last = 0
    for ts, topic, payload in stream(fleet, 1.5):
        assert validate(topic, payload)["ts"] == ts >= last
        last = ts


def test_ids_are_valid_vins_and_charger_ids() -> None:
    fleet = Fleet(200, 12, seed=5)
    vins = [v.vin for v in fleet.vehicles]
    assert len(set(vins)) == len(vins)
    for vin in vins:
        assert VIN_RE.match(vin), vin
        assert vin[8] == vin_check_digit(vin), vin
    assert fleet.chargers[:2] == ["CP-0001", "CP-0002"]
    assert all(CHARGER_ID_RE.match(c) for c in fleet.chargers)
    assert {v.model for v in fleet.vehicles} == {
        "Aurora EV", "Borealis EV", "Cirrus EV", "Delta PHEV", "Estuary Hybrid", "Fjord 1.5",
        "Glacier 2.0 TDI"}
    assert vins != [v.vin for v in Fleet(200, 0, seed=6).vehicles]


# ------------------------------------------------------------------------- volume


@pytest.mark.parametrize(("drive_s", "parked_s"), [(60, 1800), (300, 3600), (10, 600)])
def test_message_volume_per_vehicle_day_follows_the_intervals(drive_s: int,
                                                              parked_s: int) -> None:
    days = 28
    fleet = Fleet(1, 0, seed=21, drive_interval_s=drive_s, parked_interval_s=parked_s)
    per_day = Counter((ts - fleet.start_ms) // DAY_MS for ts, _, _ in stream(fleet, days))
    parked_per_day = DAY_MS / (parked_s * 1000)
    # At most 3 trips of at most 60 min a day, each adding ignition ON/OFF + trip_end, plus
    # charge start/end and a 30 min top-up; at least a day parked minus 3 h on the road.
    most = parked_per_day + 3 * (3600 / drive_s + 4) + 4 + 2
    least = parked_per_day * (21 / 24) * 0.9
    for day in range(days):
        assert least <= per_day[day] <= most, (day, per_day[day], least, most)
    mean = sum(per_day.values()) / days
    assert parked_per_day < mean < parked_per_day + 2 * (3600 / drive_s + 4), mean


@pytest.mark.parametrize("start_hour", [0, 13])
def test_trips_follow_a_daily_routine(start_hour: int) -> None:
    fleet = Fleet(20, 0, seed=11, start_ms=Fleet(0).start_ms + start_hour * HOUR_MS)
    days = 21
    starts, durations = [], []
    driving_days: set[tuple[str, int]] = set()
    for ts, topic, payload in stream(fleet, days):
        if not topic.endswith("/events"):
            continue
        body = orjson.loads(payload)
        if body["type"] == "ignition" and body["state"] == "ON":
            starts.append((ts % DAY_MS) / HOUR_MS)
            driving_days.add((topic, ts // DAY_MS))
        elif body["type"] == "trip_end":
            durations.append(body["duration_ms"] / 60_000)
            assert 0 < body["distance_m"] < 130_000
    assert min(starts) >= 6.5  # the clock, not the start of the run
    assert max(starts) < 21
    assert all(10 <= d <= 60 for d in durations)
    trips_per_driving_day = len(durations) / len(driving_days)
    assert 1.5 < trips_per_driving_day <= 3
    idle_share = 1 - len(driving_days) / (20 * days)
    assert 0.05 < idle_share < 0.35  # ~10 % idle days plus the occasional absence


# ------------------------------------------------------------------------- physics


def deep_rest_readings(messages: list[tuple[int, str, dict]]) -> list[tuple[int, float]]:
    """12 V readings at least 4 h after key-off or a top-up: the resting voltage."""
    rest_start: int | None = None
    out = []
    for ts, kind, body in messages:
        if kind == "events" and body["type"] == "ignition":
            rest_start = ts if body["state"] == "OFF" else None
        elif kind == "telemetry":
            signals = body["signals"]
            if signals.get(KEY) != "OFF" or VOLTS not in signals:
                continue
            if signals[VOLTS] > 13.0 or signals.get(AMPS, 0) > 1.0:  # a top-up
                rest_start = ts
            elif rest_start is not None and ts - rest_start >= 4 * HOUR_MS:
                out.append((ts, signals[VOLTS]))
    return out


def slope_v_per_day(readings: list[tuple[int, float]]) -> float:
    t = np.array([r[0] for r in readings], dtype=float) / DAY_MS
    v = np.array([r[1] for r in readings])
    return float(np.polyfit(t, v, 1)[0])


def test_weak_12v_truth_matches_the_battery_model() -> None:
    fleet = Fleet(6, 0, seed=2, faults={"weak_12v": 2})
    truth = fleet.truth()
    assert len(truth) == 2
    days = 16
    messages = stream(fleet, days)
    faulty = {t["vin"] for t in truth}
    for t in truth:
        p = t["params"]
        assert 0.02 <= p["rate_v_per_day"] <= 0.08
        assert 12.55 <= p["v25_initial"] <= 12.80
        assert fleet.start_ms <= t["onset_ts"] <= fleet.start_ms + 2 * DAY_MS
        expected = t["onset_ts"] + (p["v25_initial"] - FAILURE_V25) / p["rate_v_per_day"] * DAY_MS
        assert abs(t["failure_ts"] - expected) < 1000
        battery = Battery12V(p["v25_initial"], fault_onset=t["onset_ts"],
                             fault_rate_v_per_day=p["rate_v_per_day"])
        assert battery.failure_ts() == t["failure_ts"]
        assert abs(battery.v25(t["failure_ts"]) - FAILURE_V25) < 1e-6
        # The stream's resting voltages fall at the drawn rate (weather and noise aside).
        end = min(t["failure_ts"], fleet.start_ms + days * DAY_MS)
        rest = [r for r in deep_rest_readings(decoded(messages, t["vin"]))
                if t["onset_ts"] + DAY_MS <= r[0] < end]
        assert len(rest) >= 20
        assert slope_v_per_day(rest) == pytest.approx(-p["rate_v_per_day"], abs=0.02)
    for v in fleet.vehicles:
        if v.vin not in faulty:
            rest = deep_rest_readings(decoded(messages, v.vin))
            assert abs(slope_v_per_day(rest)) < 0.012, v.vin  # weather and drain only
            assert min(r[1] for r in rest) > 12.2
            assert max(r[1] for r in rest) < 12.9


def test_a_failed_battery_stops_the_car() -> None:
    fleet = Fleet(3, 0, seed=4, faults={"weak_12v": 1})
    (t,) = fleet.truth()
    days = math.ceil((t["failure_ts"] - fleet.start_ms) / DAY_MS) + 4
    messages = decoded(stream(fleet, days), t["vin"])
    after = [(ts, body) for ts, kind, body in messages if ts >= t["failure_ts"]]
    assert not [b for _, b in after if b.get("type") == "ignition"], "a dead car cannot wake"
    cranks = [b for _, b in after if b.get("type") == "crank"]
    assert len(cranks) == 1
    assert cranks[0]["voltage_min"] < 12.0
    parked = [b["signals"] for _, b in after if "signals" in b]
    assert parked
    assert all(s[KEY] == "OFF" for s in parked)
    assert max(s[VOLTS] for s in parked if VOLTS in s) < 12.0
    assert not any(s[VOLTS] > 13 for s in parked if VOLTS in s), "no more top-ups"


def test_models_differ_in_tyre_placard_and_each_car_is_set_around_its_own() -> None:
    models = [m for ms in MODELS_BY_POWERTRAIN.values() for m in ms]
    assert MODELS_BY_POWERTRAIN["bev"] == MODELS
    assert len({m.placard_kpa for m in models}) == len(models)
    fleet = Fleet(9, 0, seed=3)
    for spec in fleet.vehicles:
        assert all(abs(p - spec.spec.placard_kpa) <= 6 for p in spec.tire_cold_kpa), spec.model
    leak = Fleet(9, 0, seed=3, faults={"slow_leak": 3}).truth()
    placards = {m.name: m.placard_kpa for m in models}
    assert all(t["params"]["placard_kpa"] == placards[t["model"]] for t in leak)


def test_driving_and_parked_signals_are_plausible() -> None:
    fleet, messages = reference()
    for spec in fleet.vehicles[:4]:
        odometer = 0.0
        for _ts, kind, body in decoded(messages, spec.vin):
            if kind != "telemetry":
                continue
            s = body["signals"]
            if "Vehicle.TraveledDistance" in s:
                assert s["Vehicle.TraveledDistance"] >= odometer
                odometer = s["Vehicle.TraveledDistance"]
            if s[KEY] == "ON":
                if VOLTS in s:
                    assert 13.5 <= s[VOLTS] <= 14.5
                for wheel in ("Row1.Wheel.Left", "Row2.Wheel.Right"):
                    path = f"Vehicle.Chassis.Axle.{wheel}.Tire.Pressure"
                    if path in s:  # the model's placard set cold at 20 °C, then Gay-Lussac
                        kelvin = s[f"Vehicle.Chassis.Axle.{wheel}.Tire.Temperature"] + 273.15
                        at_20c = (s[path] + 101.3) * 293.15 / kelvin - 101.3
                        placard = spec.spec.placard_kpa
                        assert placard - 10 < at_20c < placard + 10, (s[path], kelvin)
                assert 0 <= s.get("Vehicle.Speed", 0) <= 180
            else:
                assert s["Vehicle.Speed"] == 0
                assert s["Vehicle.IsMoving"] is False
                if AMPS in s and s[AMPS] < 1:
                    assert s[AMPS] == pytest.approx(-0.05, abs=0.03)


def test_soc_falls_when_driving_and_rises_when_charging() -> None:
    fleet, messages = reference()
    for spec in fleet.vehicles:
        trips = charges = 0
        soc_on = soc_charge = None
        for _ts, kind, body in decoded(messages, spec.vin):
            signals = body.get("signals", {})
            if kind == "events" and body["type"] == "ignition" and body["state"] == "ON":
                soc_on = None
            if kind == "events" and body["type"] == "trip_end":
                trips += 1
            if kind == "events" and body["type"] == "charge_end":
                charges += 1
                assert body["energy_kwh"] >= 0
            if SOC not in signals:
                continue
            if signals[KEY] == "ON":
                if soc_on is not None:
                    assert signals[SOC] <= soc_on
                soc_on = signals[SOC]
            elif signals.get(CHARGING):
                if soc_charge is not None:
                    assert signals[SOC] >= soc_charge
                soc_charge = signals[SOC]
            else:
                soc_charge = None
        assert trips > 0, spec.vin
    assert sum(1 for _, t, p in messages if t.endswith("/events") and b"charge_end" in p) > 5


def test_weather_daily_cycle_and_season() -> None:
    weather = Weather(7, Fleet(0).start_ms)
    start = weather.start_ms
    by_hour = [np.mean([weather.ambient(start + d * DAY_MS + h * HOUR_MS) for d in range(60)])
               for h in range(24)]
    assert int(np.argmin(by_hour)) in (4, 5, 6)
    assert int(np.argmax(by_hour)) in (14, 15, 16)
    assert 8 < max(by_hour) - min(by_hour) < 12  # amplitude ~5 °C
    january = np.mean([weather.ambient(start + h * HOUR_MS) for h in range(0, 24 * 28, 3)])
    july = np.mean([weather.ambient(start + 182 * DAY_MS + h * HOUR_MS)
                    for h in range(0, 24 * 28, 3)])
    assert -10 < january < 8
    assert july > january + 10
    # Consecutive hours never jump: the weather drifts, it does not teleport.
    hourly = [weather.ambient(start + h * HOUR_MS) for h in range(24 * 90)]
    assert max(abs(a - b) for a, b in zip(hourly, hourly[1:], strict=False)) < 4.0


def test_dtc_fault_is_reported_once_after_its_onset() -> None:
    fleet = Fleet(8, 0, seed=5, faults={"dtc": 2, "weak_12v": 1})
    truth = [t for t in fleet.truth() if t["fault"] == "dtc"]
    assert len(truth) == 2
    events = [(ts, topic, orjson.loads(p)) for ts, topic, p in stream(fleet, 8)
              if b'"dtc"' in p]
    assert len(events) == 2
    for t in truth:
        (ts, _, body), = [e for e in events if e[1] == f"vehicles/{t['vin']}/events"]
        assert body["code"] == t["params"]["code"]
        assert body["state"] == "active"
        assert t["onset_ts"] <= ts < t["failure_ts"]


# ------------------------------------------------------------------------- chargers


def test_public_charging_sessions_match_on_both_sides() -> None:
    fleet = Fleet(12, 2, seed=3, powertrain_mix=ALL_ELECTRIC)
    messages = stream(fleet, 14)
    sessions: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    statuses: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for ts, topic, payload in messages:
        body = orjson.loads(payload)
        if topic.endswith("/meter"):
            sessions[body["transactionId"]].append((ts, body))
            assert set(body["measurands"]) >= {"Power.Active.Import", "Power.Offered",
                                               "Current.Import", "Voltage", "SoC",
                                               "Energy.Active.Import.Register"}
        elif topic.endswith("/status"):
            assert body["errorCode"] == "NoError"
            assert body["connectorId"] == 1
            statuses[topic.split("/")[1]].append((ts, body["status"]))
    # OCPP status sequence per charger; idle heartbeats every parked interval.
    allowed = {("Available", "Available"), ("Available", "Preparing"),
               ("Preparing", "Charging"), ("Charging", "Finishing"), ("Finishing", "Available")}
    for sequence in statuses.values():
        names = [s for _, s in sequence]
        assert set(zip(names, names[1:], strict=False)) <= allowed
        for (t0, a), (t1, b) in zip(sequence, sequence[1:], strict=False):
            if a == b == "Available":
                assert t1 - t0 == 1_800_000
    # Energy registers only grow; fleet sessions carry the VIN and the car agrees.
    fleet_sessions = 0
    for meters in sessions.values():
        energy = [m["measurands"]["Energy.Active.Import.Register"] for _, m in meters]
        assert energy == sorted(energy)
        vin = meters[0][1].get("vin")
        if vin is None:
            continue
        fleet_sessions += 1
        times = np.array([ts for ts, _ in meters], dtype=float)
        socs = np.array([m["measurands"]["SoC"] for _, m in meters])
        car = [(ts, b["signals"]) for ts, kind, b in decoded(messages, vin)
               if kind == "telemetry" and times[0] < ts < times[-1] - 60_000]
        assert car, "the car reports while it charges"
        for ts, signals in car:
            assert signals[CHARGING] is True
            if SOC in signals:
                assert signals[SOC] == pytest.approx(np.interp(ts, times, socs), abs=0.3)
        # The car's own charge events name the charger, within the charger's session.
        charger = next(t.split("/")[1] for _, t, p in messages
                       if t.endswith("/meter") and orjson.loads(p) == meters[0][1])
        events = [(ts, b) for ts, kind, b in decoded(messages, vin) if kind == "events"
                  and b["type"] in ("charge_start", "charge_end")
                  and times[0] - 300_000 <= ts <= times[-1]]
        assert [b["type"] for _, b in events] == ["charge_start", "charge_end"], vin
        assert {b.get("charger_id") for _, b in events} == {charger}
    assert fleet_sessions >= 2
    assert sum(1 for _, t, p in messages if t.endswith("/meter") and b'"vin"' not in p) > 0


# ------------------------------------------------------------------------- faults and flags


@pytest.mark.parametrize(("spec", "message"), [
    ("weak_12v", "needs a count"),
    ("flat_tyre:1", r"unknown fault 'flat_tyre'; known faults: (\w+, )*dtc, (\w+, )*weak_12v"),
    ("weak_12v:x", "must be an integer"),
    ("weak_12v:-1", ">= 0"),
    ("weak_12v:11", "only 10 vehicles"),
    ("weak_12v:6,dtc:5", r"11 vehicle faults requested \(weak_12v:6\+dtc:5\)"),
    ("weak_12v:1,weak_12v:2", "given twice"),
])
def test_fault_spec_errors_are_precise(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(spec, vehicles=10, chargers=2)


def test_fault_spec_parses() -> None:
    assert parse_fault_spec("weak_12v:3", 10, 2) == {"weak_12v": 3}
    assert parse_fault_spec(" weak_12v : 3 , dtc:1 ,", 10, 2) == {"weak_12v": 3, "dtc": 1}
    assert parse_fault_spec("", 0, 0) == {}
    assert parse_fault_spec("weak_12v:50") == {"weak_12v": 50}  # fleet size unknown yet


def test_a_charger_fault_can_be_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry takes charger faults without touching the parser or the truth."""

    def draw(rng, start_ms, ctx):  # type: ignore[no-untyped-def]
        onset = start_ms + int(rng.uniform(0, 3) * DAY_MS)
        return FaultInstance("charger_test", onset, onset + DAY_MS, {"factor": 0.5})

    monkeypatch.setitem(faults.FAULTS, "charger_test",
                        FaultSpec("charger_test", "charger", "test only", draw, "none"))
    with pytest.raises(ValueError, match="only 2 chargers"):
        parse_fault_spec("charger_test:3", vehicles=10, chargers=2)
    fleet = Fleet(3, 2, seed=1, faults={"charger_test": 1, "weak_12v": 3})
    truth = fleet.truth()
    (charger,) = [t for t in truth if t["fault"] == "charger_test"]
    assert charger["charger_id"] in fleet.chargers
    assert "vin" not in charger
    assert charger["failure_ts"] - charger["onset_ts"] == DAY_MS
    assert sum(1 for t in truth if t["fault"] == "weak_12v") == 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate", exit_on_error=True)
    cli.add_arguments(p)
    return p


def test_cli_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERCARE_MQTT_URL", "mqtt://sim:secret@broker:1884")
    args = parser().parse_args([])
    assert args.mqtt_url == "mqtt://sim:secret@broker:1884"
    assert (args.vehicles, args.chargers, args.seed, args.speed, args.qos) == (20, 4, 1, 1.0, 1)
    assert (args.drive_interval, args.parked_interval) == (60.0, 1800.0)
    assert args.mqtt_protocol == "3.1.1"
    assert args.duration is None
    assert args.faults == ""
    assert cli.until_ms(args) is None
    args = parser().parse_args(["--duration", "36h", "--start", "2026-02-01T00:00:00Z",
                                "--speed", "3600", "--faults", "weak_12v:3",
                                "--mqtt-protocol", "5", "--qos", "0"])
    assert cli.duration_s(args.duration) == 36 * 3600
    assert cli.start_time(args.start) == 1_769_904_000_000
    assert cli.until_ms(args) == 1_769_904_000_000 + 36 * HOUR_MS
    assert {cli.duration_s(d) for d in ("20d", "480h", "28800m", "1728000s")} == {1_728_000}
    fleet = cli.build_fleet(args)
    assert fleet.start_ms == 1_769_904_000_000
    assert len(fleet.truth()) == 3
    assert args.powertrains is None
    assert fleet.powertrain_mix == {"ice": 0.45, "hev": 0.2, "phev": 0.1, "bev": 0.25}
    electric = cli.build_fleet(parser().parse_args(["--powertrains", "bev:1"]))
    assert {v.powertrain for v in electric.vehicles} == {"bev"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--duration", "3 weeks"], "is not a duration"),
    (["--speed", "0"], "must be > 0"),
    (["--start", "tomorrow"], "is not an ISO 8601 time"),
    (["--vehicles", "-1"], "must be >= 0"),
    (["--faults", "gremlins:2"], "argument --faults: unknown fault 'gremlins'"),
    (["--faults", "weak_12v"], "argument --faults: fault 'weak_12v' needs a count"),
    (["--vehicles", "2", "--faults", "weak_12v:3"], "argument --faults: 3 vehicle faults"),
    (["--faults", "weak_12v:3", "--vehicles", "2"], "only 2 vehicles"),
    (["--faults", "weak_12v:21"], "only 20 vehicles"),
    (["--qos", "2"], "invalid choice"),
    (["--mqtt-protocol", "4"], "invalid choice"),
    (["--powertrains", "steam:1"], "argument --powertrains: unknown powertrain 'steam'"),
    (["--powertrains", "ice"], "powertrain 'ice' needs a weight"),
])
def test_cli_errors_are_argparse_errors(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_silent_car_stops_at_its_onset_and_the_others_are_unchanged() -> None:
    silent = Fleet(6, 0, seed=2, faults={"silent": 1})
    healthy = Fleet(6, 0, seed=2)
    (truth,) = silent.truth()
    assert truth["fault"] == "silent"
    assert truth["failure_ts"] == truth["onset_ts"]
    assert silent.start_ms + DAY_MS // 2 <= truth["onset_ts"] <= silent.start_ms + 5 * DAY_MS
    vin = truth["vin"]
    days = 7
    ours = stream(silent, days)
    own = [ts for ts, topic, _ in ours if vin in topic]
    assert own
    assert max(own) < truth["onset_ts"]
    others = [m for m in ours if vin not in m[1]]
    assert others == [m for m in stream(healthy, days) if vin not in m[1]]


def test_a_silent_charger_stops_at_its_onset() -> None:
    fleet = Fleet(4, 3, seed=5, faults={"charger_silent": 1})
    (truth,) = fleet.truth()
    cid = truth["charger_id"]
    own = [ts for ts, topic, _ in stream(fleet, 6) if cid in topic]
    assert own
    assert max(own) < truth["onset_ts"]
    assert faults.FAULTS["charger_silent"].scored_by == "delay"
    assert faults.FAULTS["charger_silent"].alert_type == "charger_silent"


# ------------------------------------------------------------------------- charging faults


@cache
def charging_fault_run(seed: int = 4) -> tuple[Fleet, list, list[Message]]:
    """A fleet with every charging fault, 14 days: (fleet, finished sessions
    (diagnostics.charging.track), messages)."""
    from diagnostics.charging import track

    fleet = Fleet(40, 8, seed=seed, faults={"charger_derating": 1, "charger_fault": 1,
                                            "inlet_fault": 1}, drive_interval_s=120,
                  powertrain_mix=ALL_ELECTRIC)
    latest: dict = {}
    done = []
    messages = stream(fleet, 14)
    for _ts, topic, payload in messages:
        record = validate(topic, payload)  # the faults follow the contract too
        done += [s for s in track(latest, [record]) if not s.is_open]
    return fleet, done, messages


def charging_fault_sessions(seed: int = 4) -> tuple[Fleet, list]:
    fleet, done, _ = charging_fault_run(seed)
    return fleet, done


def test_charging_faults_are_labelled_truthfully() -> None:
    fleet, done = charging_fault_sessions()
    truth = {t["fault"]: t for t in fleet.truth()}
    assert set(truth) == {"charger_derating", "charger_fault", "inlet_fault"}
    for t in truth.values():
        assert t["onset_ts"] < t["failure_ts"]
    d = truth["charger_derating"]
    p = d["params"]
    days = (d["failure_ts"] - d["onset_ts"]) / DAY_MS
    assert p["initial_fraction"] - p["rate_per_day"] * days == pytest.approx(
        faults.DERATING_USEFUL_FRACTION, abs=1e-6)
    for name in ("charger_fault", "inlet_fault"):
        p = truth[name]["params"]
        days = (truth[name]["failure_ts"] - truth[name]["onset_ts"]) / DAY_MS
        assert p["initial_prob"] + p["prob_per_day"] * days == pytest.approx(1.0, abs=1e-6)
    # Abnormal ends happen only on the faulty charger or with the faulty car, after the onset,
    # with the fault's own codes.
    bad_charger, bad_vin = truth["charger_fault"]["charger_id"], truth["inlet_fault"]["vin"]
    abnormal = [s for s in done if s.abnormal]
    assert abnormal
    for s in abnormal:
        fault = truth["charger_fault"] if s.charger_id == bad_charger else truth["inlet_fault"]
        assert s.charger_id == bad_charger or s.vin == bad_vin
        assert s.start_ts >= fault["onset_ts"] - 60_000
        assert s.error_code in fault["params"]["codes"]
    assert any(s.charger_id == bad_charger and s.vin != bad_vin for s in abnormal)
    # The car with the inlet fault meets several chargers and fails at two or more of them.
    assert len({s.charger_id for s in abnormal if s.vin == bad_vin}) >= 2


def test_a_session_cut_short_is_unplugged_minutes_later_walk_ins_included() -> None:
    """The driver's app says the session stopped: the connector is free 1-5 minutes after an
    abnormal end, whoever's car it was (a walk-in left plugged into a Faulted charger for its
    planned hours made the charger look silent: no heartbeat comes while a car is plugged)."""
    _fleet, _done, messages = charging_fault_run()
    ended: dict[str, int] = {}  # charger -> ts of its abnormal end awaiting the unplug
    gaps = []
    for ts, topic, payload in messages:
        if not topic.endswith("/status"):
            continue
        charger, body = topic.split("/")[1], orjson.loads(payload)
        if body["errorCode"] != "NoError":
            ended[charger] = ts
        elif body["status"] == "Available" and charger in ended:
            gaps.append(ts - ended.pop(charger))
    assert len(gaps) >= 5
    assert all(60_000 <= gap <= 5 * 60_000 for gap in gaps), sorted(gaps)[-3:]


def test_worn_contacts_slow_the_start_up_of_sessions_on_their_side() -> None:
    """Start-up (Preparing -> Charging): each charger keeps its own pace; healthy equipment
    repeats a step now and then; the inlet-fault car starts slowly at every charger after its
    onset, and the faulty charger with every car."""
    fleet, done = charging_fault_sessions()
    truth = {t["fault"]: t for t in fleet.truth()}
    bad_charger, bad_vin = truth["charger_fault"]["charger_id"], truth["inlet_fault"]["vin"]
    pace = {c.charger_id: c for c in fleet.charger_specs}
    healthy = [s for s in done if s.startup_ms is not None and s.charger_id != bad_charger
               and s.vin != bad_vin]
    assert len(healthy) > 100
    by_charger: dict[str, list[int]] = defaultdict(list)
    for s in healthy:
        by_charger[s.charger_id].append(s.startup_ms)
    lo_s, hi_s = public_charging.STARTUP_AC_S[0], public_charging.STARTUP_DC_S[1]
    repeated = 0
    for charger, startups in by_charger.items():
        typical = sorted(startups)[len(startups) // 2]
        ac_or_dc = (public_charging.STARTUP_DC_S if pace[charger].dc
                    else public_charging.STARTUP_AC_S)
        assert ac_or_dc[0] - 3 <= typical / 1000 <= ac_or_dc[1] + 3, charger
        for ms in startups:
            assert lo_s - 3 <= ms / 1000 <= hi_s + 3 + public_charging.STARTUP_RETRY_S[1]
            repeated += ms > typical + 2 * public_charging.STARTUP_JITTER_S * 1000
    assert repeated <= 0.06 * len(healthy)  # a step repeated in about 2 % of sessions
    # The faulty car after its onset, against the other cars at the same charger.
    onset = truth["inlet_fault"]["onset_ts"]
    excess = []
    for s in done:
        if s.vin == bad_vin and s.start_ts > onset and s.charger_id != bad_charger:
            others = sorted(by_charger[s.charger_id])
            excess.append(s.startup_ms - others[len(others) // 2])
    assert len(excess) >= 4
    # Slow as often as its sessions fail (30-50 % at the onset, rising), healthy ones 2 %.
    slow = sum(x > 10_000 for x in excess)
    assert slow >= 2
    assert slow / len(excess) > 5 * max(repeated / len(healthy), 0.02)
    onset = truth["charger_fault"]["onset_ts"]
    at_bad = [s.startup_ms for s in done if s.charger_id == bad_charger and s.start_ts > onset]
    before = [s.startup_ms for s in done if s.charger_id == bad_charger and s.start_ts < onset]
    assert before
    assert len(at_bad) >= 5
    typical = sorted(before)[len(before) // 2]
    slow = sum(ms > typical + 10_000 for ms in at_bad)
    assert slow >= 2
    assert slow / len(at_bad) > 5 * 0.02


def test_a_derating_charger_folds_back_within_its_sessions_after_the_onset() -> None:
    fleet, done = charging_fault_sessions()
    derating = next(t for t in fleet.truth() if t["fault"] == "charger_derating")
    onset = derating["onset_ts"]
    mine = [s for s in done if s.charger_id == derating["charger_id"]]
    assert any(s.start_ts < onset for s in mine)
    assert any(s.start_ts > onset for s in mine)
    # Power.Offered stays the rating: the charger does not know it folds back.
    assert len({s.offered_w for s in mine}) == 1


def test_charging_faults_leave_the_draws_of_fleets_without_them_unchanged() -> None:
    """A charger's own parameters do not depend on whether it carries a fault."""
    plain = Fleet(10, 6, seed=9)
    faulty = Fleet(10, 6, seed=9, faults={"charger_derating": 2, "charger_fault": 1})
    for a, b in zip(plain.charger_specs, faulty.charger_specs, strict=True):
        assert (a.dc, a.power_kw, a.location, a.mean_gap_h) == (b.dc, b.power_kw, b.location,
                                                                b.mean_gap_h)
    assert [v.vin for v in plain.vehicles] == [v.vin for v in faulty.vehicles]


def test_a_driver_whose_session_failed_retries_before_driving_off_at_most_twice() -> None:
    fleet, done, messages = charging_fault_run()
    drives: dict[str, list[int]] = defaultdict(list)  # ignition ON times per car
    for ts, topic, payload in messages:
        if topic.endswith("/events") and b'"ignition"' in payload and b'"ON"' in payload:
            drives[topic.split("/")[1]].append(ts)
    by_car: dict[str, list] = defaultdict(list)
    for s in sorted(done, key=lambda s: s.start_ts):
        if s.vin is not None:
            by_car[s.vin].append(s)
    retries, stops = [], []  # (failed, next) without a drive between; sessions per stop
    for vin, sessions in by_car.items():
        stop = [sessions[0]]
        for prev, nxt in zip(sessions, sessions[1:], strict=False):
            assert prev.end_ts is not None
            drove = any(prev.end_ts < t < nxt.start_ts for t in drives[vin])
            if drove:
                stops.append(stop)
                stop = [nxt]
                continue
            assert prev.abnormal, "only a failed session is followed by another at one stop"
            retries.append((prev, nxt))
            stop.append(nxt)
            # Minutes later (unplug, a short hop across town), and over before the car leaves.
            assert 0 < nxt.start_ts - prev.end_ts < 2 * 3_600_000
            leaves = [t for t in drives[vin] if t > nxt.start_ts]
            assert not leaves or nxt.end_ts <= leaves[0]
        stops.append(stop)
    assert len(retries) >= 2
    assert any(a.charger_id != b.charger_id for a, b in retries)  # mostly another charger
    assert max(len(stop) for stop in stops) <= 1 + booking.MAX_RETRIES_PER_STOP
    for stop in stops:  # never back to a charger that failed earlier at this stop
        for k in range(2, len(stop)):
            assert stop[k].charger_id not in {s.charger_id for s in stop[:k - 1]}
