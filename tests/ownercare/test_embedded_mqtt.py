"""The embedded amqtt keeps a named client's persistent session and its QoS 1 messages."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from ingest import topics
from ingest.mqtt import make_client
from ownercare import embedded
from tests.bridgekit import bridge_env, start_bridge
from tests.conftest import AmqttThread
from tests.stackkit import Publisher, random_vin, read_topic, records_in, start_service

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

TOPIC = "vehicles/V1/telemetry"


@pytest.fixture
def broker_port() -> Iterator[int]:
    broker = AmqttThread(embedded.free_port())
    broker.start()
    yield broker.port
    broker.stop()


class Subscriber:
    """A persistent-session subscriber; with ``ack=False`` it never PUBACKs what it gets."""

    def __init__(self, url: str, client_id: str, ack: bool = True) -> None:
        self.client, connect = make_client(url, client_id, persistent=True, manual_ack=not ack)
        self.got: list[bytes] = []
        self.session_present: bool | None = None
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.got.append(m.payload)
        self.client.connect(**connect)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, flags: Any, _rc: Any, _p: Any = None) -> None:
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def subscribe(self) -> None:
        info = self.client.subscribe("vehicles/#", qos=1)
        assert info[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)

    def wait_for(self, n: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(set(self.got)) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def kill(self) -> None:
        """Drop the TCP connection without an MQTT DISCONNECT, as a kill -9 does."""
        sock = self.client.socket()
        self.client.loop_stop()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def publish(url: str, payloads: list[bytes]) -> None:
    pub = Publisher(url)
    for i, payload in enumerate(payloads, 1):
        pub.publish(TOPIC, payload)
        if i % 1000 == 0:
            # paho's message ids wrap at 65 535: with more unacknowledged than that a new one
            # collides and is refused (ERR_QUEUE_SIZE), which a slow machine reaches.
            pub.flush()
    pub.close()


def test_queued_messages_reach_a_returning_named_session(broker_port: int) -> None:
    url = f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{broker_port}"
    sub = Subscriber(url, "bridge-a")
    sub.subscribe()
    sub.disconnect()
    sent = [f"m{i}".encode() for i in range(10)]
    publish(url, sent)
    back = Subscriber(url, "bridge-a")
    back.wait_for(10)
    back.disconnect()
    assert back.session_present is True
    assert sorted(back.got) == sorted(sent)


def test_unacknowledged_messages_are_redelivered_after_an_abrupt_drop(broker_port: int) -> None:
    url = f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{broker_port}"
    sub = Subscriber(url, "bridge-b", ack=False)
    sub.subscribe()
    in_flight = [f"f{i}".encode() for i in range(10)]
    publish(url, in_flight)
    sub.wait_for(10)
    assert sorted(sub.got) == sorted(in_flight), "the subscriber should hold them un-acked"
    sub.kill()
    time.sleep(0.5)
    queued = [f"q{i}".encode() for i in range(10)]
    publish(url, queued)
    back = Subscriber(url, "bridge-b")
    back.wait_for(20)
    back.disconnect()
    assert back.session_present is True
    assert set(back.got) == set(in_flight + queued)  # duplicates allowed, none lost


def test_a_client_without_username_stays_anonymous(broker_port: int) -> None:
    # Anonymous clients (the simulator's vehicles) get no queue: the broker must not grow one
    # for every device that ever subscribed with a persistent session.
    url = f"mqtt://127.0.0.1:{broker_port}"
    sub = Subscriber(url, "device-c")
    sub.subscribe()
    sub.disconnect()
    publish(url, [b"x"])
    back = Subscriber(url, "device-c")
    time.sleep(1)
    back.disconnect()
    assert back.got == []


RATE_HZ = 200
OUTAGE_S = 15.0


def test_bridge_killed_for_15s_loses_nothing_through_the_embedded_broker(
    broker_port: int, kafka_url: str, tmp_path: Path
) -> None:
    """End to end as `ownercare run` wires it: publisher → amqtt → bridge (kill -9) → Kafka."""
    url = f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{broker_port}"
    env = bridge_env(url, kafka_url)
    bridge = start_bridge(env, tmp_path / "bridge1.log")
    vin = random_vin()
    pub = Publisher(f"mqtt://127.0.0.1:{broker_port}")
    total = int(RATE_HZ * (5 + OUTAGE_S + 5))
    kill_at, restart_at = 5 * RATE_HZ, int((5 + OUTAGE_S) * RATE_HZ)
    start = time.monotonic()
    try:
        for seq in range(1, total + 1):
            if seq == kill_at:
                bridge.kill()  # SIGKILL: no DISCONNECT, un-acked messages in its hands
                bridge.wait(10)
            if seq == restart_at:
                bridge = start_service("bridge", env, tmp_path / "bridge2.log")
            pub.publish(f"vehicles/{vin}/telemetry", telemetry(seq))
            time.sleep(max(0.0, start + seq / RATE_HZ - time.monotonic()))
        pub.close()
        rows = read_topic(kafka_url, topics.VEHICLES,
                          lambda rows: len({r["seq"] for r in records_in(rows, {vin})}) >= total,
                          timeout=60)
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
    seqs = [r["seq"] for r in records_in(rows, {vin})]
    lost = total - len(set(seqs))
    report = (f"embedded amqtt, bridge kill -9 for {OUTAGE_S:.0f} s at {RATE_HZ} msg/s: "
              f"published={total} in_kafka={len(seqs)} lost={lost} "
              f"duplicated={len(seqs) - len(set(seqs))}")
    log.warning("%s", report)  # the measurement docs/architecture.md quotes
    assert lost == 0, report


def telemetry(seq: int) -> bytes:
    return orjson.dumps({"ts": 1_767_571_200_000 + seq * 50, "seq": seq,
                         "signals": {"Vehicle.Speed": 0.0}})


def test_a_queue_longer_than_the_packet_id_space_arrives_whole(broker_port: int) -> None:
    url = f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{broker_port}"
    sub = Subscriber(url, "bridge-d")
    sub.subscribe()
    sub.disconnect()
    n = 66_000  # more than the 65 535 packet ids a session can have in flight
    t0 = time.monotonic()
    publish(url, [b"%d" % i for i in range(n)])
    t1 = time.monotonic()
    back = Subscriber(url, "bridge-d")
    back.wait_for(n, timeout=120)
    back.disconnect()
    assert len(set(back.got)) == n, (
        f"{len(set(back.got))} of {n} arrived (publish {t1 - t0:.0f} s, "
        f"redelivery {time.monotonic() - t1:.0f} s)")
