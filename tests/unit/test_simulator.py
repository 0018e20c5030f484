"""The simulated fleet: deterministic, valid against the contract, faults labelled truthfully."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import orjson
import pytest

from ingest.contract import validate
from simulators import cli
from simulators.faults import FAILURE_V25, parse_fault_spec
from simulators.fleet import DAY_MS, Fleet


def stream(fleet: Fleet, days: float) -> list[tuple[int, str, bytes]]:
    return list(fleet.messages(fleet.start_ms + int(days * DAY_MS)))


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    a = stream(Fleet(5, 1, seed=3, faults={"weak_12v": 1}), 3)
    b = stream(Fleet(5, 1, seed=3, faults={"weak_12v": 1}), 3)
    c = stream(Fleet(5, 1, seed=4, faults={"weak_12v": 1}), 3)
    assert a == b
    assert a != c


def test_every_message_follows_the_contract_and_time_and_seq_behave() -> None:
    fleet = Fleet(10, 2, seed=1, faults={"weak_12v": 2})
    messages = stream(fleet, 10)
    last_ts = 0
    last_seq: dict[str, int] = {}
    kinds: Counter[str] = Counter()
    for ts, topic, payload in messages:
        record = validate(topic, payload)  # raises on any contract violation
        assert ts == record["ts"] >= last_ts
        last_ts = ts
        device = record["id"]
        assert record["seq"] > last_seq.get(device, 0), "seq must increase per device"
        last_seq[device] = record["seq"]
        kinds[record["kind"]] += 1
    assert set(kinds) == {"vehicle_telemetry", "vehicle_event", "charger_status",
                          "charger_meter"}
    # Volume per vehicle-day from the intervals: ~46 parked reports + ~1 h of driving at 60 s.
    per_vehicle_day = kinds["vehicle_telemetry"] / (10 * 10)
    assert 45 <= per_vehicle_day <= 160, per_vehicle_day


def resting_voltages(fleet: Fleet, vin: str, days: int) -> dict[int, float]:
    """Lowest parked 12 V reading per day: the resting voltage, roughly."""
    per_day: dict[int, float] = defaultdict(lambda: 99.0)
    for ts, topic, payload in fleet.messages(fleet.start_ms + days * DAY_MS):
        if topic == f"vehicles/{vin}/telemetry":
            signals = orjson.loads(payload)["signals"]
            if signals.get("Vehicle.LowVoltageSystemState") == "OFF":
                volts = signals.get("Vehicle.LowVoltageBattery.CurrentVoltage")
                if volts is not None and volts < 13.0:
                    day = (ts - fleet.start_ms) // DAY_MS
                    per_day[day] = min(per_day[day], volts)
    return dict(per_day)


def test_weak_12v_truth_matches_the_battery_model() -> None:
    fleet = Fleet(6, 0, seed=2, faults={"weak_12v": 2})
    truth = fleet.truth()
    assert len(truth) == 2
    faulty = {t["vin"] for t in truth}
    for t in truth:
        p = t["params"]
        assert 0.02 <= p["rate_v_per_day"] <= 0.08
        assert fleet.start_ms <= t["onset_ts"] <= fleet.start_ms + 2 * DAY_MS
        expected = t["onset_ts"] + (p["v25_initial"] - FAILURE_V25) / p["rate_v_per_day"] * DAY_MS
        assert abs(t["failure_ts"] - expected) < 1000
        rest = resting_voltages(fleet, t["vin"], 12)
        assert rest[11] < rest[1] - 0.15, "a weak battery's resting voltage must fall"
    healthy = next(v.vin for v in fleet.vehicles if v.vin not in faulty)
    rest = resting_voltages(fleet, healthy, 12)
    assert max(rest.values()) - min(rest.values()) < 0.25  # weather and drain only


@pytest.mark.parametrize(("spec", "message"), [
    ("weak_12v", "needs a count"),
    ("flat_tyre:1", "unknown fault"),
    ("weak_12v:x", "must be an integer"),
    ("weak_12v:-1", ">= 0"),
    ("weak_12v:11", "only 10 vehicles"),
    ("weak_12v:1,weak_12v:2", "given twice"),
])
def test_fault_spec_errors_are_precise(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(spec, vehicles=10, chargers=2)
    assert parse_fault_spec("weak_12v:3", 10, 2) == {"weak_12v": 3}


def test_cli_flags_are_validated() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--duration", "36h", "--start", "2026-02-01T00:00:00Z",
                              "--speed", "3600"])
    assert cli.duration_s(args.duration) == 36 * 3600
    assert cli.start_time(args.start) == 1_769_904_000_000
    for bad in (["--duration", "3 weeks"], ["--speed", "0"], ["--start", "tomorrow"],
                ["--vehicles", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_dtc_fault_is_reported_once_after_its_onset() -> None:
    fleet = Fleet(8, 0, seed=5, faults={"dtc": 2, "weak_12v": 1})
    truth = [t for t in fleet.truth() if t["fault"] == "dtc"]
    assert len(truth) == 2
    events = [(ts, topic, orjson.loads(p)) for ts, topic, p in stream(fleet, 8)
              if b'"dtc"' in p]
    assert len(events) == 2
    for t in truth:
        (ts, _, body), = [e for e in events if e[1] == f"vehicles/{t['vin']}/events"]
        assert body["code"] == t["params"]["code"] and body["state"] == "active"
        assert t["onset_ts"] <= ts < t["failure_ts"]
