"""kill -9 of the embedded MQTT broker's process: with its journal, a restarted broker owes a
persistent session everything it had acknowledged to the publishers and not yet had
acknowledged by the session, queued and in flight alike."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ownercare import embedded
from simulators.publisher import Publisher as SimPublisher
from tests.ownercare.test_embedded_mqtt import Subscriber, publish

pytestmark = pytest.mark.integration


class BrokerProcess:
    """``python -m ownercare.embedded amqtt PORT DIR``, as ``ownercare run`` supervises it."""

    def __init__(self, journal: Path, log: Path) -> None:
        self.port = embedded.free_port()
        self.journal = journal
        self.log = log
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "ownercare.embedded", "amqtt",
                                     str(self.port), str(self.journal)],
                                    stdout=out, stderr=subprocess.STDOUT)
        assert embedded.wait_for_port(self.port, 30), self.log.read_text()
        return proc

    def kill_and_restart(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc = self._start()

    def stop(self) -> None:
        embedded.stop_process(self.proc, 10)

    @property
    def url(self) -> str:
        return f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "mqtt", tmp_path / "broker.log")
    yield b
    b.stop()


def test_a_queue_for_an_absent_session_survives_kill_9(broker: BrokerProcess) -> None:
    sub = Subscriber(broker.url, "bridge-k1")
    sub.subscribe()
    sub.disconnect()
    sent = [f"q{i}".encode() for i in range(2000)]
    publish(broker.url, sent)  # every one acknowledged by the broker
    broker.kill_and_restart()
    back = Subscriber(broker.url, "bridge-k1")
    back.wait_for(len(sent), timeout=60)
    back.disconnect()
    assert back.session_present is True
    assert set(back.got) == set(sent)


def test_messages_in_flight_to_a_connected_session_survive_kill_9(
        broker: BrokerProcess) -> None:
    sub = Subscriber(broker.url, "bridge-k2", ack=False)
    sub.subscribe()
    in_flight = [f"f{i}".encode() for i in range(500)]
    publish(broker.url, in_flight)
    sub.wait_for(len(in_flight))
    assert set(sub.got) == set(in_flight), "the subscriber should hold them un-acknowledged"
    sub.kill()
    queued = [f"q{i}".encode() for i in range(500)]
    publish(broker.url, queued)
    broker.kill_and_restart()
    back = Subscriber(broker.url, "bridge-k2")
    back.wait_for(len(in_flight) + len(queued), timeout=60)
    back.disconnect()
    assert set(back.got) == set(in_flight + queued)  # duplicates allowed, none lost
    # In flight first, then the queue: the publisher's order is kept across the restart.
    firsts = [back.got.index(m) for m in in_flight]
    assert max(firsts) < min(back.got.index(m) for m in queued)


def test_what_was_acknowledged_is_not_sent_again(broker: BrokerProcess) -> None:
    sub = Subscriber(broker.url, "bridge-k3")
    sub.subscribe()
    publish(broker.url, [f"a{i}".encode() for i in range(300)])
    sub.wait_for(300)
    time.sleep(0.5)  # the PUBACKs reach the broker
    sub.kill()
    broker.kill_and_restart()
    back = Subscriber(broker.url, "bridge-k3")
    publish(broker.url, [b"after"])
    back.wait_for(1, timeout=30)
    time.sleep(0.5)
    back.disconnect()
    assert back.session_present is True
    assert back.got == [b"after"]


def test_a_device_keeps_its_order_across_a_broker_kill(broker: BrokerProcess) -> None:
    """The simulator's publisher, killed broker and all: every message arrives once at least,
    and none after a newer one (the silence detectors' clock is the newest record)."""
    sub = Subscriber(broker.url, "bridge-k4")
    sub.subscribe()
    pub = SimPublisher(f"mqtt://127.0.0.1:{broker.port}", "device-k4")
    n, rate = 6000, 500  # paced, as the simulator is: the outage queues some in paho
    done = threading.Event()

    def publish_all() -> None:
        start = time.monotonic()
        for seq in range(n):
            time.sleep(max(0.0, start + seq / rate - time.monotonic()))
            pub.publish("vehicles/V4/telemetry", b"%d" % seq)
        done.set()

    thread = threading.Thread(target=publish_all)
    thread.start()
    wait_until(lambda: len(sub.got) >= n // 3, "a third of the messages")
    broker.kill_and_restart()
    thread.join(120)
    assert done.is_set()
    assert pub.drain(60)
    pub.close()
    sub.wait_for(n, timeout=60)
    sub.disconnect()
    firsts: list[int] = []
    seen: set[int] = set()
    for payload in sub.got:
        seq = int(payload)
        if seq not in seen:
            seen.add(seq)
            firsts.append(seq)
    assert seen == set(range(n))
    assert firsts == sorted(firsts), [
        (a, b) for a, b in zip(firsts, firsts[1:], strict=False) if b < a][:5]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.01)
