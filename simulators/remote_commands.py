"""The simulated cars' side of remote support commands (``vehicles/{vin}/commands``).

Each car verifies a command as a real telematics unit would (``care.commands.verify_command``:
the signature with the pinned key, that it is for this car, its expiry at the car's event
time, its nonce never seen before) and refuses with a reason otherwise. Then it answers
truthfully from its own state, on ``vehicles/{vin}/commands/result``: an acknowledgement at
once, the result when the work is done.

* ``battery_test``: the 12 V battery's resting voltage and its voltage under
  ``care.commands.LOAD_A`` for ``LOAD_MS``, from the battery model of the running stream. A
  battery that is losing capacity (fault ``weak_12v``) has a higher internal resistance and
  sags below ``PASS_V``: the test fails. A discharged but sound battery passes.
* ``snapshot``: the signals the car last reported, its active and pending trouble codes with
  the signals at the time they were set (freeze frames), its software versions.
* ``wake``: a shoulder tap that wakes a sleeping unit at once.
* ``clear_dtc``: forgets the trouble codes and reports each as cleared on ``events``.

A parked car with the key off sleeps between its reports: a command waits in the modem until
the car next wakes (its next report, or a ``wake``), and is verified then, so one that
expired meanwhile is refused as expired. A car out of coverage (fault ``silent``, from its
onset) never receives anything: its commands expire in the cloud. Pure (event time, no I/O).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from care import commands as policy
from ingest.contract import COMMAND_ID_RE, Kind, topic_for
from simulators.fleet import Fleet
from simulators.ota_runtime import OtaFleet
from simulators.physics.battery12v import Battery12V
from simulators.stream import Message
from vocab.eventtime import DAY_MS, MINUTE_MS, SECOND_MS

log = logging.getLogger(__name__)

AWAKE_STATES = frozenset({"ACC", "ON", "START"})
AWAKE_AFTER_WAKE_MS = 10 * MINUTE_MS  # a woken unit stays up this long for more commands
WORK_MS: Mapping[str, int] = {"battery_test": policy.LOAD_MS, "snapshot": SECOND_MS,
                              "wake": 0, "clear_dtc": 2 * SECOND_MS}
# Internal resistance of the 12 V battery: a sound one, plus what lost capacity adds per volt
# of resting-voltage decline (sulphation raises the resistance long before the resting voltage
# says the battery is flat).
R_HEALTHY_OHM = 0.012
R_PER_DECLINE_V_OHM = 0.5
UNVERIFIED = "unverified"  # the command_id reported for a command that failed authentication


def internal_resistance(battery: Battery12V, ts: int) -> float:
    decline = 0.0
    if battery.fault_onset is not None and ts > battery.fault_onset:
        decline = battery.fault_rate_v_per_day * (ts - battery.fault_onset) / DAY_MS
    return R_HEALTHY_OHM + R_PER_DECLINE_V_OHM * decline


def load_test(battery: Battery12V, ts: int) -> dict[str, Any]:
    """The 12 V load test's result at ``ts`` (``care.commands`` fixes the load and the pass
    voltage)."""
    resting = battery.resting_v(ts)
    under_load = max(0.0, resting - policy.LOAD_A * internal_resistance(battery, ts))
    margin = under_load - policy.PASS_V
    temperature = 25.0 if battery.temp_c is None else battery.temp_c
    return {"passed": margin >= 0, "load_a": policy.LOAD_A, "load_ms": policy.LOAD_MS,
            "resting_voltage": round(resting, 3), "voltage_under_load": round(under_load, 3),
            "crank_margin_v": round(max(-20.0, margin), 3),
            "temperature_c": round(temperature, 1)}


@dataclass
class CarView:
    """What a car's unit knows about itself from the messages it published."""

    system_state: str | None = "OFF"
    charging: bool = False
    last_ts: int = 0
    signals: dict[str, Any] = field(default_factory=dict)
    dtcs: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> state, frame
    awake_until: int = -1
    nonces: set[str] = field(default_factory=set)
    modem: list[tuple[int, bytes]] = field(default_factory=list)  # (arrival, payload)
    wake_due: int | None = None

    def asleep(self, now: int) -> bool:
        return (self.system_state not in AWAKE_STATES and not self.charging
                and now > self.awake_until)


class RemoteCommandFleet:
    """Every simulated car's command handler, fed in event time."""

    def __init__(self, fleet: Fleet, public_key: Ed25519PublicKey | None,
                 software: Callable[[str], Mapping[str, str]] | None = None) -> None:
        self.fleet = fleet
        self.public_key = public_key
        self.software = software or (lambda _vin: {})
        self.cars = {spec.vin: CarView(last_ts=fleet.start_ms) for spec in fleet.vehicles}
        self.silent_from = {spec.vin: spec.fault.onset_ts for spec in fleet.vehicles
                            if spec.fault is not None and spec.fault.name == "silent"}
        self.pending: list[tuple[int, str, dict[str, Any]]] = []  # (due, vin, payload)
        self.reports = 0
        self.refusals: list[tuple[str, str]] = []  # (vin, reason), for logs and tests

    # ------------------------------------------------------------------ what the car sees

    def observe(self, ts: int, topic: str, payload: bytes) -> None:
        """A fleet message went out: the car knows this about itself, and it is awake."""
        parts = topic.split("/")
        car = self.cars.get(parts[1]) if len(parts) == 3 and parts[0] == "vehicles" else None
        if car is None:
            return
        body = orjson.loads(payload)
        car.last_ts = max(car.last_ts, ts)
        if parts[2] == "telemetry":
            signals = body.get("signals", {})
            car.signals.update(signals)
            car.system_state = signals.get("Vehicle.LowVoltageSystemState", car.system_state)
            car.charging = signals.get(
                "Vehicle.Powertrain.TractionBattery.Charging.IsCharging", car.charging)
        elif parts[2] == "events":
            kind = body.get("type")
            if kind == "ignition":
                car.system_state = body.get("state", car.system_state)
            elif kind in ("charge_start", "charge_end"):
                car.charging = kind == "charge_start"
            elif kind == "dtc":
                code, state = body.get("code"), body.get("state", "active")
                if state == "cleared":
                    car.dtcs.pop(code, None)
                else:
                    car.dtcs[code] = {"code": code, "state": state,
                                      "freeze_frame": dict(car.signals)}
        if car.modem:
            car.wake_due = ts  # the unit is up for this report: it reads its modem now

    # ------------------------------------------------------------------ commands in

    def command(self, topic: str, payload: bytes, now: int) -> list[Message]:
        """A command arrived on ``topic`` at event time ``now``: what the car publishes now."""
        parts = topic.split("/")
        vin = parts[1] if len(parts) == 3 and parts[2] == "commands" else ""
        car = self.cars.get(vin)
        if car is None:
            log.info("remote_command_ignored topic=%s reason=not_a_simulated_vehicle", topic)
            return []
        if vin in self.silent_from and now >= self.silent_from[vin]:
            log.info("remote_command_lost vin=%s reason=out_of_coverage", vin)
            return []
        car.modem.append((now, payload))
        if car.asleep(now) and not _claims_wake(payload):
            log.info("remote_command_queued vin=%s reason=asleep", vin)
            return []
        car.wake_due = None
        return self._read_modem(vin, car, now)

    def next_due(self) -> int | None:
        due = [d for d, _v, _p in self.pending]
        due += [c.wake_due for c in self.cars.values() if c.wake_due is not None]
        return min(due, default=None)

    def advance(self, now: int) -> list[Message]:
        """What the cars publish up to ``now``: queued commands read on waking, results of
        work that finished."""
        out: list[Message] = []
        for vin, car in self.cars.items():
            if car.wake_due is not None and car.wake_due <= now:
                at, car.wake_due = car.wake_due, None
                out += self._read_modem(vin, car, at)
        due = sorted((p for p in self.pending if p[0] <= now), key=lambda p: p[0])
        self.pending = [p for p in self.pending if p[0] > now]
        out += [self._message(vin, payload) for _at, vin, payload in due]
        out.sort(key=lambda m: m[0])
        return out

    # ------------------------------------------------------------------ the work

    def _read_modem(self, vin: str, car: CarView, now: int) -> list[Message]:
        out: list[Message] = []
        queued, car.modem = car.modem, []
        for _arrival, payload in queued:
            out += self._handle(vin, car, payload, now)
        return out

    def _handle(self, vin: str, car: CarView, payload: bytes, now: int) -> list[Message]:
        try:
            envelope: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            envelope = None
        if self.public_key is None:
            return [self._refusal(vin, now, UNVERIFIED, "no_key", "the car holds no key to "
                                  "verify commands with")]
        try:
            command = policy.verify_command(self.public_key, envelope, vin=vin, now=now,
                                            seen_nonces=car.nonces)
        except policy.CommandRefused as exc:
            claimed = _claimed_id(envelope)
            command_id = exc.command_id or UNVERIFIED
            detail = exc.detail if exc.command_id else f"{exc.detail} (claimed id {claimed!r})"
            self.refusals.append((vin, exc.reason))
            log.info("remote_command_refused vin=%s reason=%s id=%s", vin, exc.reason, claimed)
            return [self._refusal(vin, now, command_id, exc.reason, detail)]
        car.nonces.add(command.nonce)
        base = {"command_id": command.id, "kind": command.kind}
        out = [self._message(vin, {**base, "ts": now, "status": "acknowledged"})]
        done = now + WORK_MS[command.kind]
        status, result, extra = self._execute(vin, car, command.kind, now, done)
        out += extra
        report = {**base, "ts": done, "status": status, "result": result}
        if status == "failed":
            report["reason"] = "battery_failed_load_test"
        if done == now:
            out.append(self._message(vin, report))
        else:
            self.pending.append((done, vin, report))
        log.info("remote_command_accepted vin=%s kind=%s id=%s status=%s", vin, command.kind,
                 command.id, status)
        return out

    def _execute(self, vin: str, car: CarView, kind: str, now: int, done: int
                 ) -> tuple[str, dict[str, Any], list[Message]]:
        if kind == "battery_test":
            run = self.fleet.vehicle_run(vin)
            if run is None:  # the stream has not started this car: no battery state yet
                return "failed", {"passed": False}, []
            result = load_test(run.battery, now)
            return ("succeeded" if result["passed"] else "failed"), result, []
        if kind == "snapshot":
            return "succeeded", {
                "signals": dict(car.signals),
                "dtcs": [dict(d) for d in car.dtcs.values() if d["state"] != "cleared"],
                "software": dict(self.software(vin))}, []
        if kind == "wake":
            car.awake_until = now + AWAKE_AFTER_WAKE_MS
            return "succeeded", {"awake_since": now}, []
        cleared = sorted(car.dtcs)
        car.dtcs.clear()
        events = [self._event(vin, done, {"type": "dtc", "code": code, "state": "cleared"})
                  for code in cleared]
        return "succeeded", {"cleared": cleared}, events

    # ------------------------------------------------------------------ messages out

    def _refusal(self, vin: str, now: int, command_id: str, reason: str, detail: str
                 ) -> Message:
        return self._message(vin, {"ts": now, "command_id": command_id, "status": "refused",
                                   "reason": reason, "detail": detail[:500]})

    def _message(self, vin: str, body: dict[str, Any]) -> Message:
        self.reports += 1
        payload = {**body, "seq": self.fleet.next_seq(vin)}
        return int(body["ts"]), topic_for(Kind.VEHICLE_COMMAND_RESULT, vin), orjson.dumps(payload)

    def _event(self, vin: str, ts: int, body: dict[str, Any]) -> Message:
        payload = {**body, "ts": ts, "seq": self.fleet.next_seq(vin)}
        return ts, topic_for(Kind.VEHICLE_EVENT, vin), orjson.dumps(payload)


def _claims_wake(payload: bytes) -> bool:
    """Whether a command says it is a ``wake`` (unverified: the modem's shoulder tap wakes
    the unit, which then verifies it like any other)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    command = body.get("command") if isinstance(body, dict) else None
    return isinstance(command, dict) and command.get("kind") == "wake"


def _claimed_id(envelope: Any) -> str | None:
    command = envelope.get("command") if isinstance(envelope, dict) else None
    claimed = command.get("id") if isinstance(command, dict) else None
    return claimed if isinstance(claimed, str) and COMMAND_ID_RE.fullmatch(claimed) else None


class Cars:
    """The OTA clients and the remote command handlers of one fleet, behind the one interface
    the publishing loop (``simulators.ota_runtime.publish_paced_ota``) drives."""

    def __init__(self, ota: OtaFleet, remote: RemoteCommandFleet) -> None:
        self.ota = ota
        self.remote = remote

    @property
    def reports(self) -> int:
        return self.ota.reports + self.remote.reports

    def observe(self, ts: int, topic: str, payload: bytes) -> None:
        self.ota.observe(ts, topic, payload)
        self.remote.observe(ts, topic, payload)

    def command(self, topic: str, payload: bytes, now: int) -> list[Message]:
        if topic.endswith("/commands"):
            return self.remote.command(topic, payload, now)
        return self.ota.command(topic, payload, now)

    def next_due(self) -> int | None:
        due = [d for d in (self.ota.next_due(), self.remote.next_due()) if d is not None]
        return min(due, default=None)

    def advance(self, now: int) -> list[Message]:
        out = self.ota.advance(now) + self.remote.advance(now)
        out.sort(key=lambda m: m[0])
        return out


def cars_of(fleet: Fleet, ota: OtaFleet, public_key: Ed25519PublicKey | None) -> Cars:
    def software(vin: str) -> Mapping[str, str]:
        client = ota.clients.get(vin)
        return client.installed if client is not None else {}

    return Cars(ota, RemoteCommandFleet(fleet, public_key, software))
