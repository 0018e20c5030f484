"""Publishes a fleet's message stream over MQTT, paced against the wall clock.

A message stamped with simulated time t goes out at ``wall_start + (t - sim_start) / speed``;
when the publisher falls behind it publishes as fast as the broker takes messages. The wall
clock is read here, at the transport edge, never in the fleet model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

import paho.mqtt.client as mqtt

from ingest.mqtt import make_client

log = logging.getLogger(__name__)

MAX_PENDING = 2000  # QoS 1 publishes not yet acknowledged before we wait


class PublishError(RuntimeError):
    pass


class Publisher:
    def __init__(self, mqtt_url: str, client_id: str, protocol: str = "3.1.1",
                 qos: int = 1, connect_timeout_s: float = 10.0) -> None:
        self.qos = qos
        self.client, connect = make_client(mqtt_url, client_id, protocol)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, reason, _p: (
            None if reason.is_failure else self._connected.set())
        self.client.on_disconnect = lambda *_a: self._connected.clear()
        self.client.connect_async(**connect)
        self.client.loop_start()
        if not self._connected.wait(connect_timeout_s):
            self.client.loop_stop()
            raise PublishError(f"MQTT broker {connect['host']}:{connect['port']} not reachable "
                               f"within {connect_timeout_s:.0f} s")
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()
        self.published = 0

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=self.qos)
        self.published += 1
        if self.qos:
            self._pending.append(info)
            while len(self._pending) > MAX_PENDING:
                self._pending.popleft().wait_for_publish(60)

    def close(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self._pending:
            info = self._pending.popleft()
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()


def publish_paced(
    publisher: Publisher,
    messages: Iterable[tuple[int, str, bytes]],
    start_ms: int,
    speed: float,
    stop: threading.Event,
) -> int:
    wall_start = time.monotonic()
    count = 0
    next_report = wall_start + 10
    for ts, topic, payload in messages:
        if stop.is_set():
            break
        due = wall_start + (ts - start_ms) / 1000 / speed
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        publisher.publish(topic, payload)
        count += 1
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 10
            log.info("simulator_progress messages=%s sim_time=%s", count,
                     time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ts / 1000)))
    return count
