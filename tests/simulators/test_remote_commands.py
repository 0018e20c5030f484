"""The simulated cars answer remote commands truthfully and refuse what they must (pure,
event time, no broker)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from care import commands as policy
from care.signing import generate_keypair, load_private_key, load_public_key, sign
from simulators.fleet import Fleet
from simulators.remote_commands import UNVERIFIED, RemoteCommandFleet
from simulators.stream import Message
from vocab.eventtime import DAY_MS, HOUR_MS

PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
PRIVATE, PUBLIC = load_private_key(PRIVATE_PEM), load_public_key(PUBLIC_PEM)


def run_until(until: int, **faults: int) -> tuple[Fleet, RemoteCommandFleet, int]:
    """A fleet of four cars streamed (and observed by the cars) up to ``until`` ms in."""
    fleet = Fleet(4, seed=3, faults=faults)
    cars = RemoteCommandFleet(fleet, PUBLIC)
    last = fleet.start_ms
    for ts, topic, payload in fleet.messages(fleet.start_ms + until):
        cars.observe(ts, topic, payload)
        last = ts
    return fleet, cars, last


def command(vin: str, kind: str, now: int, *, nonce: str = "n-1", command_id: str = "c-1",
            ttl: int = HOUR_MS) -> bytes:
    body = policy.command_body(command_id=command_id, vin=vin, kind=kind, nonce=nonce,
                               issued_at=now, expires_at=now + ttl)
    return orjson.dumps(sign(PRIVATE, body, policy.ENVELOPE_FIELD))


def results(messages: list[Message]) -> list[dict[str, Any]]:
    return [orjson.loads(p) for _ts, t, p in messages if t.endswith("/commands/result")]


def awake(cars: RemoteCommandFleet, vin: str, now: int) -> None:
    cars.cars[vin].awake_until = now + HOUR_MS  # as if a wake had just come


def test_a_weak_battery_fails_the_load_test_and_a_healthy_one_passes() -> None:
    fleet, cars, now = run_until(10 * DAY_MS, weak_12v=1)
    weak = next(s.vin for s in fleet.vehicles if s.fault is not None)
    healthy = next(s.vin for s in fleet.vehicles if s.fault is None)
    answers = {}
    for vin in (weak, healthy):
        awake(cars, vin, now)
        out = cars.command(f"vehicles/{vin}/commands", command(vin, "battery_test", now), now)
        out += cars.advance(now + policy.LOAD_MS)
        got = results(out)
        assert [r["status"] for r in got][0] == "acknowledged"
        answers[vin] = got[-1]
    assert answers[weak]["status"] == "failed"
    assert answers[weak]["result"]["passed"] is False
    assert answers[weak]["result"]["voltage_under_load"] < policy.PASS_V
    assert answers[healthy]["status"] == "succeeded"
    assert answers[healthy]["result"]["crank_margin_v"] > 0
    assert policy.battery_verdict(answers[healthy]["result"]) == "false_positive"


def test_a_sleeping_car_answers_when_it_wakes() -> None:
    fleet, cars, now = run_until(2 * DAY_MS)
    vin = fleet.vehicles[0].vin
    cars.cars[vin].system_state, cars.cars[vin].charging = "OFF", False
    cars.cars[vin].awake_until = -1
    assert cars.command(f"vehicles/{vin}/commands", command(vin, "snapshot", now), now) == []
    assert cars.next_due() is None
    # Its next report: the unit is up and reads its modem.
    cars.observe(now + 600_000, f"vehicles/{vin}/telemetry",
                 orjson.dumps({"ts": now + 600_000, "seq": 1,
                               "signals": {"Vehicle.Speed": 0.0}}))
    assert cars.next_due() == now + 600_000
    got = results(cars.advance(now + 600_000 + policy.LOAD_MS))
    assert [r["status"] for r in got] == ["acknowledged", "succeeded"]
    assert got[1]["result"]["signals"]["Vehicle.Speed"] == 0.0


def test_a_wake_command_wakes_a_sleeping_car_at_once() -> None:
    fleet, cars, now = run_until(DAY_MS)
    vin = fleet.vehicles[1].vin
    cars.cars[vin].system_state, cars.cars[vin].charging = "OFF", False
    got = results(cars.command(f"vehicles/{vin}/commands", command(vin, "wake", now), now))
    assert [r["status"] for r in got] == ["acknowledged", "succeeded"]
    assert got[1]["result"] == {"awake_since": now}
    assert not cars.cars[vin].asleep(now + 1)


def test_a_car_out_of_coverage_never_answers() -> None:
    fleet, cars, now = run_until(DAY_MS, silent=1)
    spec = next(s for s in fleet.vehicles if s.fault is not None)
    vin = spec.vin
    assert spec.fault is not None
    now = max(now, spec.fault.onset_ts)  # out of coverage from the onset on
    awake(cars, vin, now)
    assert cars.command(f"vehicles/{vin}/commands", command(vin, "wake", now), now) == []
    assert cars.advance(now + DAY_MS) == []


def test_tampered_expired_and_replayed_commands_are_refused() -> None:
    fleet, cars, now = run_until(DAY_MS)
    vin = fleet.vehicles[0].vin
    awake(cars, vin, now)
    topic = f"vehicles/{vin}/commands"
    good = command(vin, "wake", now)
    tampered = orjson.loads(good)
    tampered["command"]["kind"] = "clear_dtc"
    first = results(cars.command(topic, good, now))
    assert first[-1]["status"] == "succeeded"
    replayed = results(cars.command(topic, good, now + 1))
    forged = results(cars.command(topic, orjson.dumps(tampered), now + 2))
    expired = results(cars.command(topic, command(vin, "wake", now - 2 * HOUR_MS, nonce="n-2",
                                                  command_id="c-2"), now + 3))
    assert [(r["status"], r["reason"], r["command_id"]) for r in replayed + forged + expired] \
        == [("refused", "replayed", "c-1"), ("refused", "bad_signature", UNVERIFIED),
            ("refused", "expired", "c-2")]
    assert "c-1" in forged[0]["detail"]  # what the forgery claimed, for the record


def test_clear_dtc_forgets_the_codes_and_reports_them_cleared() -> None:
    fleet, cars, now = run_until(DAY_MS)
    vin = fleet.vehicles[0].vin
    awake(cars, vin, now)
    cars.observe(now, f"vehicles/{vin}/events",
                 orjson.dumps({"ts": now, "seq": 1, "type": "dtc", "code": "P0A80"}))
    snap = results(cars.command(f"vehicles/{vin}/commands", command(vin, "snapshot", now),
                                now) + cars.advance(now + 5000))
    assert [d["code"] for d in snap[-1]["result"]["dtcs"]] == ["P0A80"]
    out = cars.command(f"vehicles/{vin}/commands",
                       command(vin, "clear_dtc", now, nonce="n-2", command_id="c-2"), now)
    out += cars.advance(now + 5000)
    assert results(out)[-1]["result"] == {"cleared": ["P0A80"]}
    events = [orjson.loads(p) for _ts, t, p in out if t.endswith("/events")]
    assert [(e["code"], e["state"]) for e in events] == [("P0A80", "cleared")]


@pytest.mark.parametrize("junk", [b"not json", b"[]", b'{"command": {}}'])
def test_junk_is_refused_not_crashed_on(junk: bytes) -> None:
    fleet, cars, now = run_until(DAY_MS)
    vin = fleet.vehicles[0].vin
    awake(cars, vin, now)
    (got,) = results(cars.command(f"vehicles/{vin}/commands", copy.copy(junk), now))
    assert got["status"] == "refused"
    assert got["command_id"] == UNVERIFIED
