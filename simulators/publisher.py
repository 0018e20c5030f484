"""Publishes a fleet's message stream over MQTT, paced against the wall clock.

A message stamped with simulated time t goes out at ``wall_start + (t - sim_start) / speed``;
when the publisher falls behind it publishes as fast as the broker takes messages, without
sleeping. The wall clock is read here, at the transport edge, never in the fleet model.

Delivery: QoS 1 publishes count as delivered when the broker's PUBACK arrives (QoS 0 when the
packet is written to the socket); paho's ``on_publish`` counts them. At most ``max_pending``
publishes are outstanding: beyond that the publisher waits, which bounds paho's outgoing queue
(and memory) when the broker is slower than the simulation. A QoS 1 message published while
the connection is down stays queued in paho and goes out after the automatic reconnect.

Order survives a reconnect, as a car's telematics unit keeps it: after a connection drops, new
QoS 1 messages wait until paho's resends are acknowledged. paho itself sends a message
published right after the CONNACK ahead of the ones it resends (its in-flight count starts
again at zero), and with the broker killed at 15 000x those resends were the last 12 hours of
event time before the outage: the silence detectors, whose clock is a partition's newest
record, alerted on healthy cars whose reports came late.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as mqtt

from ingest.mqtt import MqttTarget, make_client
from simulators.stream import Message
from vocab.eventtime import SECOND_MS

log = logging.getLogger(__name__)

MAX_PENDING = 2000  # publishes handed to paho but not yet acknowledged before we wait
MAX_INFLIGHT = 1000  # QoS 1 messages on the wire awaiting PUBACK
MIN_SLEEP_S = 0.002  # shorter waits are not worth a sleep; publish now
PROGRESS_EVERY_S = 10.0
# CONNACK reason codes not worth retrying: unsupported protocol, client id not valid, bad user
# name or password, not authorized, bad authentication method.
FINAL_REFUSALS = frozenset({132, 133, 134, 135, 140})


def sim_time(ts: int) -> str:
    """An event time for the progress log: ISO 8601, UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / SECOND_MS))


class PublishError(RuntimeError):
    pass


class Publisher:
    """A connected paho client that counts acknowledgements and bounds what is outstanding."""

    def __init__(self, mqtt_url: str, client_id: str, protocol: str = "3.1.1", qos: int = 1,
                 connect_timeout_s: float = 10.0, max_pending: int = MAX_PENDING) -> None:
        self.qos = qos
        self.max_pending = max_pending
        target = MqttTarget.from_url(mqtt_url)
        self.where = f"{target.host}:{target.port}"
        self.client, connect = make_client(mqtt_url, client_id, protocol)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.max_queued_messages_set(0)  # unbounded in paho; we bound it ourselves
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._settled = threading.Event()  # connected, or refused for good
        self._refused: str | None = None
        self._last_error: str | None = None
        self.sent = 0  # handed to paho and expected to be acknowledged
        self.acked = 0
        self.lost = 0  # QoS 0 messages published while disconnected (dropped by design)
        self._resending = False  # a connection dropped; what paho resends is not all acked
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect_async(**connect)
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot connect to MQTT broker {self.where}: {exc}") from None
        # loop_start retries the first connection too (reconnect delay 1 s, doubling).
        self.client.loop_start()
        self._settled.wait(connect_timeout_s)
        if not self._connected.is_set():
            self.client.disconnect()
            self.client.loop_stop()
            why = (f"refused the connection: {self._refused}" if self._refused
                   else f"not reachable within {connect_timeout_s:.0f} s"
                   + (f" ({self._last_error})" if self._last_error else ""))
            raise PublishError(f"MQTT broker {self.where} {why}")
        log.info("mqtt_connected broker=%s client_id=%s protocol=%s qos=%s", self.where,
                 client_id, protocol, qos)

    # paho callbacks (network thread)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: object,
                    _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
            log.warning("mqtt_connect_refused broker=%s reason=%s", self.where, reason)
            if getattr(reason, "value", None) in FINAL_REFUSALS:
                self._settled.set()  # retrying with the same credentials cannot help
            return
        if self._connected.is_set() or self.acked or self.sent:
            log.info("mqtt_reconnected broker=%s pending=%s", self.where, self.pending)
        self._connected.set()
        self._settled.set()
        with self._cond:
            if self._resending and self.pending == 0:
                self._resending = False
                self._cond.notify_all()

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        self._last_error = "connection failed"
        log.debug("mqtt_connect_failed broker=%s", self.where)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: object,
                       _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt_disconnected broker=%s reason=%s pending=%s (reconnecting)",
                        self.where, reason, self.pending)
            if self.qos:
                with self._cond:
                    self._resending = True

    def _on_publish(self, _c: mqtt.Client, _u: object, _mid: int, _reason: object,
                    _p: object) -> None:
        with self._cond:
            self.acked += 1
            if self._resending and self.pending == 0 and self.client.is_connected():
                self._resending = False
            self._cond.notify_all()

    # publishing (caller's thread)

    @property
    def pending(self) -> int:
        return max(0, self.sent - self.acked)

    def publish(self, topic: str, payload: bytes, stop: threading.Event | None = None) -> None:
        """Publish one message; wait while too many are outstanding (unless ``stop`` is set)."""
        with self._cond:
            while self.sent - self.acked >= self.max_pending or self._resending:
                if stop is not None and stop.is_set():
                    break
                self._cond.wait(0.2)
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (self.qos and info.rc == mqtt.MQTT_ERR_NO_CONN):
            with self._cond:
                self.sent += 1  # QoS 1 while disconnected: queued, sent after the reconnect
        elif info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.lost += 1
        else:
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def drain(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Wait until every publish is acknowledged; False if the time ran out first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.sent - self.acked > 0:
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_paced(
    publisher: Publisher,
    messages: Iterable[Message],
    start_ms: int,
    speed: float,
    stop: threading.Event,
) -> int:
    """Publish ``messages`` on their simulated schedule; return how many were published."""
    wall_start = time.monotonic()
    count = 0
    next_report = wall_start + PROGRESS_EVERY_S
    for ts, topic, payload in messages:
        if stop.is_set():
            break
        delay = wall_start + (ts - start_ms) / SECOND_MS / speed - time.monotonic()
        if delay > MIN_SLEEP_S and stop.wait(delay):
            break
        publisher.publish(topic, payload, stop)
        count += 1
        now = time.monotonic()
        if now >= next_report:
            next_report = now + PROGRESS_EVERY_S
            behind = max(0.0, -delay)
            log.info("simulator_progress messages=%s sim_time=%s rate=%.0f/s behind_s=%.1f "
                     "pending=%s", count, sim_time(ts), count / (now - wall_start), behind,
                     publisher.pending)
    return count
