"""Simulated chargers speaking OCPP 1.6J to a central system instead of publishing MQTT.

Why it matters
--------------
The OCPP gateway (``ingest.ocpp_gateway``) must turn a real charge point's calls into the
records the bridge makes of the MQTT charger messages. Driving it with the simulator's own
chargers, faults included, shows that the worker raises the same charger alerts either way.

Rules
-----
* Each charger is the ocpp library's ``ChargePoint`` client on its own WebSocket
  (``<url>/<charger id>``, subprotocol ``ocpp1.6``, HTTP Basic with the charger's password),
  all on one asyncio loop in a background thread; ``send`` hands it the chargers' MQTT
  messages from the paced publishing loop, and they are delivered one call at a time in that
  order (the fleet's event-time order, as the bridge sees MQTT messages).
* Translation (``Translator``, pure): a status message is a StatusNotification with its
  ``ts`` as timestamp; the first meter message of a session is preceded by a StartTransaction
  (idTag: the car's VIN, or an RFID-like tag for a car outside the fleet; meterStart: the
  energy register) whose transactionId the later MeterValues carry; the status ending a
  session is preceded by a StopTransaction (meterStop: the last register). BootNotification
  at connect; no Heartbeat: the idle ``Available`` notifications keep the charger alive, with
  the simulated event time.
* A refused call (CALLERROR) is counted and logged, never retried; a dropped connection is
  reopened and the call sent again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from ocpp.v16 import ChargePoint, call
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulators.publisher import Publisher

log = logging.getLogger(__name__)
# The ocpp library logs every frame at INFO: thousands a second from a fast simulation.
_frames = logging.getLogger(f"{__name__}.frames")
_frames.setLevel(logging.WARNING)

ENERGY: Final = "Energy.Active.Import.Register"
SESSION_STATUSES: Final = frozenset({"Preparing", "Charging"})
RECONNECT_S: Final = 1.0


class OcppSimError(RuntimeError):
    pass


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def load_passwords(path: Path) -> dict[str, str]:
    """``charger_id:password`` lines (``*:password`` for every charger); ``#`` comments."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        charger_id, sep, password = line.partition(":")
        if not sep or not charger_id or not password:
            raise ValueError(f"{path} line {number}: expected charger_id:password")
        out[charger_id] = password
    return out


@dataclass
class Translator:
    """One charger's MQTT messages -> OCPP calls; ``transaction`` is the open session's
    transactionId as the central system gave it."""

    charger_id: str
    transaction: int | None = None
    sim_transaction: int | None = None
    energy_wh: float = 0.0
    _tags: int = field(default=0)

    def status_calls(self, body: Mapping[str, Any]) -> list[Any]:
        calls: list[Any] = []
        if self.transaction is not None and body["status"] not in SESSION_STATUSES:
            calls.append(call.StopTransaction(
                meter_stop=int(self.energy_wh), timestamp=iso(body["ts"]),
                transaction_id=self.transaction,
                reason="EVDisconnected" if body["status"] in ("Finishing", "Available")
                else "Other"))
            self.transaction = self.sim_transaction = None
        calls.append(call.StatusNotification(
            connector_id=body["connectorId"], error_code=body["errorCode"],
            status=body["status"], timestamp=iso(body["ts"])))
        return calls

    def start_call(self, body: Mapping[str, Any]) -> Any | None:
        """A StartTransaction when ``body`` opens a session (None otherwise)."""
        if body.get("transactionId") == self.sim_transaction:
            return None
        self.sim_transaction = body.get("transactionId")
        self._tags += 1
        tag = body.get("vin") or f"RFID{self._tags:08X}"  # an RFID card, not a VIN
        return call.StartTransaction(
            connector_id=body["connectorId"], id_tag=tag[:20],
            meter_start=int(body["measurands"].get(ENERGY, self.energy_wh)),
            timestamp=iso(body["ts"]))

    def meter_call(self, body: Mapping[str, Any]) -> Any:
        measurands: Mapping[str, float] = body["measurands"]
        if ENERGY in measurands:
            self.energy_wh = measurands[ENERGY]
        units = {"Power.Active.Import": "W", "Power.Offered": "W", "Current.Import": "A",
                 "Voltage": "V", "Temperature": "Celsius", ENERGY: "Wh", "SoC": "Percent"}
        return call.MeterValues(
            connector_id=body["connectorId"], transaction_id=self.transaction,
            meter_value=[{"timestamp": iso(body["ts"]), "sampledValue": [
                {"value": repr(float(value)), "measurand": name, "unit": units[name],
                 "context": "Sample.Periodic"} for name, value in measurands.items()]}])


class _Charger:
    def __init__(self, charger_id: str, url: str, password: str, owner: OcppChargers) -> None:
        self.translator = Translator(charger_id)
        self.id = charger_id
        self.url = f"{url.rstrip('/')}/{charger_id}"
        self.password = password
        self.owner = owner
        self.point: ChargePoint | None = None
        self._listener: asyncio.Task[Any] | None = None
        self._ws: ClientConnection | None = None

    async def connect(self) -> None:
        token = base64.b64encode(f"{self.id}:{self.password}".encode()).decode()
        self._ws = await connect(self.url, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                 additional_headers={"Authorization": f"Basic {token}"},
                                 open_timeout=30)
        self.point = ChargePoint(self.id, self._ws, response_timeout=60, logger=_frames)
        self._listener = asyncio.create_task(self.point.start())
        await self.call(call.BootNotification(charge_point_model="ownercare-sim",
                                              charge_point_vendor="ownercare"))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._ws is not None:
            await self._ws.close()

    async def call(self, payload: Any) -> Any:
        while True:
            assert self.point is not None
            try:
                result = await self.point.call(payload, suppress=False)
            except (ConnectionClosed, OSError) as exc:
                log.warning("ocpp_sim_reconnect charger=%s reason=%s", self.id, exc)
                await self.close()
                await asyncio.sleep(RECONNECT_S)
                await self.connect()
                continue
            except Exception as exc:  # a CALLERROR: the gateway refused this call
                self.owner.refused += 1
                log.warning("ocpp_sim_call_refused charger=%s action=%s error=%s", self.id,
                            type(payload).__name__, exc)
                return None
            self.owner.calls += 1
            return result

    async def deliver(self, topic: str, body: dict[str, Any]) -> None:
        t = self.translator
        if topic.endswith("/status"):
            for payload in t.status_calls(body):
                await self.call(payload)
            return
        start = t.start_call(body)
        if start is not None:
            result = await self.call(start)
            t.transaction = result.transaction_id if result is not None else None
        await self.call(t.meter_call(body))


class OcppChargers:
    """The fleet's chargers as OCPP charge points (see the module docstring)."""

    def __init__(self, url: str, passwords: Mapping[str, str]) -> None:
        self.url = url
        self.passwords = dict(passwords)
        self.calls = 0
        self.refused = 0
        self._chargers: dict[str, _Charger] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="ocpp-chargers")
        self._thread.start()
        self._tasks: list[asyncio.Task[Any]] = []
        self._queue: asyncio.Queue[tuple[_Charger, str, bytes]] | None = None

    def password_of(self, charger_id: str) -> str:
        password = self.passwords.get(charger_id, self.passwords.get("*"))
        if password is None:
            raise OcppSimError(f"no OCPP password for charger {charger_id} (add a "
                               f"{charger_id}:password or *:password line)")
        return password

    def start(self, charger_ids: list[str], connect_timeout_s: float = 10.0) -> None:
        """Connect every charger (each sends its BootNotification); OcppSimError when one is
        refused or the central system stays unreachable for ``connect_timeout_s``."""
        chargers = [_Charger(cid, self.url, self.password_of(cid), self) for cid in charger_ids]
        future = asyncio.run_coroutine_threadsafe(self._start(chargers, connect_timeout_s),
                                                  self._loop)
        future.result()

    async def _start(self, chargers: list[_Charger], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for charger in chargers:
            while True:
                try:
                    await charger.connect()
                    break
                except InvalidStatus as exc:
                    raise OcppSimError(f"the central system at {charger.url} refused charger "
                                       f"{charger.id}: HTTP {exc.response.status_code}") from None
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise OcppSimError(f"the central system at {charger.url} is not "
                                           f"reachable: {exc}") from None
                    await asyncio.sleep(0.5)
            self._chargers[charger.id] = charger
        self._queue = asyncio.Queue()
        self._tasks.append(asyncio.create_task(self._deliver_in_order(self._queue)))

    @staticmethod
    async def _deliver_in_order(queue: asyncio.Queue[tuple[_Charger, str, bytes]]) -> None:
        """One call at a time for the whole fleet, in the order of the merged stream: the
        chargers' event times advance together, as over MQTT. Chargers delivering at their
        own pace would drift apart in simulated time, and the ones behind would look silent
        next to the others."""
        while True:
            charger, topic, raw = await queue.get()
            try:
                await charger.deliver(topic, orjson.loads(raw))
            finally:
                queue.task_done()

    def send(self, topic: str, payload: bytes) -> None:
        """One charger message (``chargers/<id>/status|meter``), in the charger's order."""
        charger_id = topic.split("/")[1]
        charger = self._chargers.get(charger_id)
        if charger is None or self._queue is None:
            raise OcppSimError(f"charger {charger_id} is not connected")
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (charger, topic, payload))

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def drain(self, timeout_s: float) -> bool:
        """Wait until every message handed to ``send`` was delivered; False on timeout."""
        async def joined() -> None:
            if self._queue is not None:
                await self._queue.join()

        future = asyncio.run_coroutine_threadsafe(joined(), self._loop)
        try:
            future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            return False
        return True

    def close(self) -> None:
        async def shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for charger in self._chargers.values():
                with contextlib.suppress(Exception):
                    await charger.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        log.info("ocpp_sim_done calls=%s refused=%s", self.calls, self.refused)


MAX_QUEUED: Final = 2000  # charger messages waiting for their call before the publisher waits


class ChargerRouter(Publisher):
    """Stands in for the MQTT publisher of ``publish_paced``: charger messages go to the OCPP
    charge points, the vehicles' to MQTT. It wraps a connected ``Publisher`` (so it does not
    connect again) and bounds the OCPP queues as the publisher bounds paho's."""

    def __init__(self, mqtt: Publisher, chargers: OcppChargers) -> None:
        self.mqtt = mqtt
        self.chargers = chargers
        self.qos = mqtt.qos

    def publish(self, topic: str, payload: bytes, stop: threading.Event | None = None) -> None:
        if not topic.startswith("chargers/"):
            self.mqtt.publish(topic, payload, stop)
            return
        while self.chargers.pending >= MAX_QUEUED and not (stop is not None and stop.is_set()):
            time.sleep(0.05)
        self.chargers.send(topic, payload)

    @property
    def pending(self) -> int:
        return self.mqtt.pending + self.chargers.pending

    @property
    def lost(self) -> int:
        return self.mqtt.lost

    @lost.setter
    def lost(self, value: int) -> None:
        self.mqtt.lost = value

    def drain(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        drained = self.mqtt.drain(timeout_s, stop)
        return self.chargers.drain(max(0.0, deadline - time.monotonic())) and drained

    def close(self) -> None:
        self.chargers.close()
        self.mqtt.close()


def route_chargers(mqtt: Publisher, url: str, passwords: Mapping[str, str],
                   charger_ids: list[str], connect_timeout_s: float) -> ChargerRouter:
    """Connect the fleet's chargers to the central system at ``url``; OcppSimError when a
    charger is refused or the central system is unreachable."""
    chargers = OcppChargers(url, passwords)
    try:
        chargers.start(charger_ids, connect_timeout_s)
    except BaseException:
        chargers.close()
        raise
    log.info("ocpp_chargers_connected url=%s chargers=%s", url, len(charger_ids))
    return ChargerRouter(mqtt, chargers)
