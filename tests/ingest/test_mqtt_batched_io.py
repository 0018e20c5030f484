"""The bridge's paho client (``BatchedIoClient``) against a real Mosquitto.

It reads many packets per ``recv`` and writes a batch of PUBACKs as one buffer, so what can
break is framing (a packet split across two reads, a packet larger than one read) and the
broker's view of the acknowledgements. Both are checked end to end here.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from ingest.mqtt import RECV_CHUNK, BatchedIoClient, make_client

pytestmark = pytest.mark.integration


class Subscriber:
    """A persistent, manually acknowledging BatchedIoClient subscribed to ``t/#`` at QoS 1."""

    def __init__(self, url: str, client_id: str) -> None:
        client, self.connect_kwargs = make_client(url, client_id, persistent=True,
                                                  manual_ack=True, batched_io=True)
        assert isinstance(client, BatchedIoClient)
        self.client = client
        self.received: list[mqtt.MQTTMessage] = []
        self.subscribed = threading.Event()
        self.lock = threading.Condition()
        client.on_connect = lambda c, *_a: c.subscribe("t/#", qos=1)
        client.on_subscribe = lambda *_a: self.subscribed.set()
        client.on_message = self._on_message

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append(msg)
            self.lock.notify_all()

    def start(self) -> None:
        self.client.connect(**self.connect_kwargs)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def wait_for(self, n: int, timeout: float = 30) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.received) < n and time.monotonic() < deadline:
                self.lock.wait(0.2)
            return list(self.received)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(url: str, messages: list[tuple[str, bytes]]) -> None:
    pub, connect = make_client(url, "batched-io-pub")
    pub.max_inflight_messages_set(0)  # no limit: a burst the subscriber reads in big chunks
    pub.connect(**connect)
    pub.loop_start()
    infos = [pub.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


def test_every_packet_arrives_intact_and_in_order(mosquitto_url: str) -> None:
    rng = random.Random(7)
    # Mostly telemetry-sized, some empty, some spanning two or more reads of the socket.
    sizes = [rng.choice([0, 1, 127, 128, 1100, 16_383, 16_384]) for _ in range(400)]
    sizes[50] = RECV_CHUNK + 3
    sizes[51] = 2 * RECV_CHUNK + 1000
    messages = [(f"t/{i % 7}", rng.randbytes(size)) for i, size in enumerate(sizes)]
    sub = Subscriber(mosquitto_url, "batched-io-order")
    sub.start()
    try:
        publish_all(mosquitto_url, messages)
        got = sub.wait_for(len(messages))
        sub.client.ack_many((m.mid, m.qos) for m in got)
    finally:
        sub.stop()
    assert [(m.topic, m.payload) for m in got] == messages


def test_ack_many_acknowledges_exactly_the_given_messages(mosquitto_url: str) -> None:
    messages = [(f"t/{i}", f"m{i}".encode()) for i in range(300)]
    first = Subscriber(mosquitto_url, "batched-io-acks")
    first.start()
    try:
        publish_all(mosquitto_url, messages)
        got = first.wait_for(len(messages))
        assert len(got) == len(messages)
        first.client.ack_many((m.mid, m.qos) for m in got[:200])  # one write of 200 PUBACKs
        time.sleep(0.5)  # let the network thread write them before the disconnect
    finally:
        first.stop()
    # Same session again: the broker resends only what was never acknowledged.
    second = Subscriber(mosquitto_url, "batched-io-acks")
    second.start()
    try:
        again = second.wait_for(100)
        time.sleep(1.0)  # and nothing more than that
        again = second.wait_for(100)
        second.client.ack_many((m.mid, m.qos) for m in again)
    finally:
        second.stop()
    assert sorted(m.payload for m in again) == sorted(p for _t, p in messages[200:])
    assert all(m.dup for m in again)


def test_per_topic_callbacks_still_take_their_topics(mosquitto_url: str) -> None:
    sub = Subscriber(mosquitto_url, "batched-io-topic-callback")
    special: list[bytes] = []
    sub.client.message_callback_add("t/special", lambda _c, _u, m: special.append(m.payload))
    sub.start()
    try:
        publish_all(mosquitto_url, [("t/a", b"1"), ("t/special", b"2"), ("t/b", b"3")])
        got = sub.wait_for(2)
        deadline = time.monotonic() + 10
        while not special and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.stop()
    assert [m.payload for m in got] == [b"1", b"3"]
    assert special == [b"2"]


def test_receive_bench_runs_and_drains_everything() -> None:
    from ownercare.paho_receive_bench import main

    results = main(["--vehicles", "40", "--ticks", "3", "--rounds", "1"])
    assert [r["client"] for r in results] == ["paho", "batched"]
    assert all(r["messages"] == 120 and r["cpu_us_per_msg"] > 0 for r in results)
