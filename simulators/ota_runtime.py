"""The running simulator's OTA side: commands in over MQTT, progress reports out.

``OtaFleet`` (pure, event time) gives every simulated car an ``OtaClient``, follows what each
car knows about itself from the messages the simulator publishes (``CarTracker``), hands it
the commands, and turns the clients' reports into ``vehicles/{vin}/ota/status`` messages. A
car that installs a release marked bad gets ``Fleet.bad_release_since`` set, which the fleet
model turns into a faster parked 12 V drain.

``CommandListener`` subscribes (paho, QoS 1) to ``vehicles/+/ota/command`` and queues each
command with its wall-clock arrival; ``publish_paced_ota`` is ``publish_paced`` with that
queue merged in: it maps an arrival to simulated time (the run goes at ``--speed``), hands the
command over, and publishes the reports at their event times among the fleet's messages, all
from one thread, so the clients need no locks.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingest.contract import OTA_COMMAND_TOPIC, REMOTE_COMMAND_TOPIC, VIN_RE, Kind, topic_for
from ingest.mqtt import make_client
from simulators.fleet import Fleet
from simulators.ota_client import (
    PARKED_STATES,
    ArtifactStore,
    CarState,
    ClientConfig,
    OtaClient,
    Report,
)
from simulators.publisher import MIN_SLEEP_S, PROGRESS_EVERY_S, Publisher, sim_time
from simulators.stream import Message
from vocab.eventtime import SECOND_MS

log = logging.getLogger(__name__)

COMMAND_SUBSCRIPTION = OTA_COMMAND_TOPIC.format(id="+")
REMOTE_COMMAND_SUBSCRIPTION = REMOTE_COMMAND_TOPIC.format(id="+")
WAIT_SLICE_S = 0.25  # longest sleep before looking at the stop flag again

_SPEED = "Vehicle.Speed"
_KEY = "Vehicle.LowVoltageSystemState"
_V12 = "Vehicle.LowVoltageBattery.CurrentVoltage"
_SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
_CHARGING = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"


class CarTracker:
    """Each car's view of itself: the fold of the messages it has published so far."""

    def __init__(self) -> None:
        self.cars: dict[str, CarState] = {}

    def observe(self, ts: int, topic: str, payload: bytes) -> None:
        if not topic.startswith("vehicles/"):
            return
        vin = topic.split("/", 2)[1]
        if topic.endswith("/telemetry"):
            signals = orjson.loads(payload).get("signals", {})
            car = self.cars.get(vin) or CarState(ts)
            self.cars[vin] = replace(
                car, ts=ts, speed_kmh=signals.get(_SPEED, car.speed_kmh),
                system_state=signals.get(_KEY, car.system_state),
                v12_volts=signals.get(_V12, car.v12_volts),
                soc_percent=signals.get(_SOC, car.soc_percent),
                charging=signals.get(_CHARGING, car.charging))
        elif topic.endswith("/events"):
            body = orjson.loads(payload)
            car = self.cars.get(vin) or CarState(ts)
            if body.get("type") == "ignition":
                # Key on: about to drive (its first telemetry follows); key off: stopped.
                state = body.get("state")
                self.cars[vin] = replace(car, ts=ts, system_state=state,
                                         speed_kmh=0.0 if state in PARKED_STATES
                                         else car.speed_kmh)
            elif body.get("type") in ("charge_start", "charge_end"):
                self.cars[vin] = replace(car, ts=ts, charging=body["type"] == "charge_start")


@dataclass(frozen=True)
class OtaSettings:
    public_key: Ed25519PublicKey | None
    config: ClientConfig = ClientConfig()
    installed: Mapping[str, str] | None = None  # component -> version on every car at start


class OtaFleet:
    """Every car's OTA client, fed in event time (no I/O, no clock)."""

    def __init__(self, fleet: Fleet, settings: OtaSettings,
                 artifacts: ArtifactStore | None = None) -> None:
        self.fleet = fleet
        self.tracker = CarTracker()
        # Every simulated car starts parked at home, key off: it knows that before its first
        # report goes out (the model's initial state, not a guess).
        for spec in fleet.vehicles:
            self.tracker.cars[spec.vin] = CarState(
                fleet.start_ms, speed_kmh=0.0, system_state="OFF",
                v12_volts=spec.v25_initial, soc_percent=spec.soc)
        self.clock = fleet.start_ms  # event time the stream has reached
        self.clients = {
            spec.vin: OtaClient(spec.vin, settings.public_key, settings.installed,
                                config=settings.config, seed=fleet.seed, artifacts=artifacts,
                                next_seq=functools.partial(fleet.next_seq, spec.vin))
            for spec in fleet.vehicles}
        self.reports = 0

    def observe(self, ts: int, topic: str, payload: bytes) -> None:
        """A fleet message went out: the car now knows this about itself."""
        self.clock = max(self.clock, ts)
        self.tracker.observe(ts, topic, payload)

    def command(self, topic: str, payload: bytes, now: int) -> list[Message]:
        """A command arrived on ``topic`` at event time ``now``: the reports it causes."""
        vin = topic.split("/")[1] if topic.count("/") == 3 else ""
        client = self.clients.get(vin)
        if client is None:
            log.info("ota_command_ignored topic=%s reason=not_a_simulated_vehicle", topic)
            return []
        try:
            command: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            command = None  # the client refuses it as malformed
        now = max(now, self.clock)
        self.clock = now
        return self._messages(client, client.on_command(command, now,
                                                        self.tracker.cars.get(vin)))

    def next_due(self) -> int | None:
        due = [c.next_due() for c in self.clients.values()]
        return min((d for d in due if d is not None), default=None)

    def advance(self, now: int) -> list[Message]:
        """Reports of every car's steps due at or before ``now``, in event-time order."""
        self.clock = max(self.clock, now)
        out: list[Message] = []
        for vin, client in self.clients.items():
            due = client.next_due()
            if due is not None and due <= now:
                out += self._messages(client, client.advance(now, self.tracker.cars.get(vin)))
        out.sort(key=lambda m: m[0])
        return out

    def _messages(self, client: OtaClient, reports: Iterable[Report]) -> list[Message]:
        out = []
        for report in reports:
            out.append((report.ts, topic_for(Kind.VEHICLE_OTA_STATUS, client.vin),
                        orjson.dumps(report.payload())))
            self.reports += 1
            log.info("ota_report vin=%s campaign=%s attempt=%s status=%s detail=%s",
                     client.vin, report.campaign_id, report.attempt, report.status,
                     report.detail)
        # The fleet model reads this at each parked report (faster 12 V drain).
        if client.bad_since is not None:
            self.fleet.bad_release_since[client.vin] = client.bad_since
        else:
            self.fleet.bad_release_since.pop(client.vin, None)
        return out


class CarSide(Protocol):
    """What the publishing loop drives: ``OtaFleet``, or it with the remote command handlers
    (``simulators.remote_commands.Cars``)."""

    @property
    def reports(self) -> int: ...

    def observe(self, ts: int, topic: str, payload: bytes) -> None: ...

    def command(self, topic: str, payload: bytes, now: int) -> list[Message]: ...

    def next_due(self) -> int | None: ...

    def advance(self, now: int) -> list[Message]: ...


class CommandListener:
    """Subscribes to every car's command topics; queues (monotonic arrival, topic, payload)."""

    def __init__(self, mqtt_url: str, client_id: str, protocol: str = "3.1.1",
                 subscriptions: tuple[str, ...] = (COMMAND_SUBSCRIPTION,)) -> None:
        self.subscriptions = subscriptions
        self.inbox: queue.Queue[tuple[float, str, bytes]] = queue.Queue()
        self.subscribed = threading.Event()
        self.client, connect = make_client(mqtt_url, client_id, protocol)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(**connect)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object,
                    _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("ota_listener_connect_refused reason=%s", reason)
            return
        # (Re)subscribe on every connect: the session is not persistent.
        client.subscribe([(topic, 1) for topic in self.subscriptions])
        log.info("ota_listener_subscribed topics=%s", ",".join(self.subscriptions))

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if (len(parts) == 4 or parts[2:] == ["commands"]) and VIN_RE.fullmatch(parts[1]):
            self.inbox.put((time.monotonic(), msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_paced_ota(publisher: Publisher, messages: Iterable[Message], start_ms: int,
                      speed: float, stop: threading.Event, ota: CarSide,
                      inbox: queue.Queue[tuple[float, str, bytes]]) -> int:
    """``publish_paced`` with OTA: publish the fleet's messages and the cars' OTA reports on
    the simulated schedule, handing each arriving command to its car; return the count of
    fleet messages published (reports are counted in ``ota.reports``)."""
    wall_start = time.monotonic()
    arrived: list[tuple[float, str, bytes]] = []

    def wall_of(ts: int) -> float:
        return wall_start + (ts - start_ms) / SECOND_MS / speed

    def sim_of(wall: float) -> int:
        return start_ms + int((wall - wall_start) * speed * SECOND_MS)

    def wait_until(wall: float) -> bool:
        """Sleep until ``wall``; True when woken early by a command or the stop flag."""
        while True:
            left = wall - time.monotonic()
            if left <= MIN_SLEEP_S:
                return False
            if stop.is_set():
                return True
            try:
                arrived.append(inbox.get(timeout=min(left, WAIT_SLICE_S)))
                return True
            except queue.Empty:
                continue

    def send(batch: Iterable[Message]) -> None:
        for _ts, topic, payload in batch:
            publisher.publish(topic, payload, stop)

    stream = iter(messages)
    upcoming = next(stream, None)
    count = 0
    next_report = wall_start + PROGRESS_EVERY_S
    while not stop.is_set():
        while True:  # commands first: they may change what is due
            try:
                arrived.append(inbox.get_nowait())
            except queue.Empty:
                break
        for arrival, topic, payload in arrived:
            # The simulation's time is where its stream is: a publisher running behind the
            # wall clock has not reached the arrival's mapped time yet. Stay before the next
            # fleet message: its seq is already drawn, and the cloud drops a message whose
            # seq and ts are both not above the last one of that car.
            at = sim_of(arrival)
            if upcoming is not None:
                at = min(at, upcoming[0] - 1)
            send(ota.command(topic, payload, at))
        arrived.clear()
        due = ota.next_due()
        if due is not None and (upcoming is None or due <= upcoming[0]):
            if not wait_until(wall_of(due)):
                send(ota.advance(due))
            continue
        if upcoming is None:
            break  # the run's duration is over
        if wait_until(wall_of(upcoming[0])):
            continue
        ts, topic, payload = upcoming
        send(ota.advance(ts))
        publisher.publish(topic, payload, stop)
        ota.observe(ts, topic, payload)
        count += 1
        upcoming = next(stream, None)
        wall_now = time.monotonic()
        if wall_now >= next_report:
            next_report = wall_now + PROGRESS_EVERY_S
            log.info("simulator_progress messages=%s ota_reports=%s sim_time=%s pending=%s",
                     count, ota.reports, sim_time(ts), publisher.pending)
    return count
