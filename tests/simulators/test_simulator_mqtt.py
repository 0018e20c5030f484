"""The simulator publishing a fleet to real brokers: everything arrives, all valid, clean stops."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.contract import validate
from ingest.mqtt import make_client
from simulators import cli

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Subscriber:
    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.05)


@contextmanager
def subscribed(url: str, protocol: str = "3.1.1") -> Iterator[Subscriber]:
    sub = Subscriber()
    client, connect = make_client(url, f"test-sub-{os.getpid()}", protocol)
    ready = threading.Event()

    def on_message(_c: object, _u: object, msg: object) -> None:
        with sub.lock:
            sub.received.append((msg.topic, msg.payload))  # type: ignore[attr-defined]

    client.on_message = on_message
    client.on_subscribe = lambda *_a: ready.set()
    client.connect(**connect)
    client.subscribe([("vehicles/#", 1), ("chargers/#", 1)])
    client.loop_start()
    assert ready.wait(10), "subscription not acknowledged"
    try:
        yield sub
    finally:
        client.disconnect()
        client.loop_stop()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def expected_messages(args: argparse.Namespace) -> list[tuple[str, bytes]]:
    return [(t, p) for _, t, p in cli.build_fleet(args).messages(cli.until_ms(args))]


def test_simulated_day_arrives_complete_over_mqtt(amqtt_url: str, tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    args = parse("--mqtt-url", amqtt_url, "--vehicles", "5", "--chargers", "1", "--seed", "9",
                 "--faults", "weak_12v:1", "--duration", "1d", "--speed", "200000",
                 "--truth", str(truth))
    expected = expected_messages(args)
    assert len(expected) > 500
    with subscribed(amqtt_url) as sub:
        assert cli.run(args) == 0  # returns once every QoS 1 publish is acknowledged
        sub.wait_for(len(expected), 30)
        received = list(sub.received)
    assert len(received) == len(expected)
    assert Counter(received) == Counter(expected)
    for topic, payload in received:
        validate(topic, payload)
    # Per device, the broker delivered the stream in order.
    last_seq: dict[str, int] = {}
    for topic, payload in received:
        device, seq = topic.split("/")[1], json.loads(payload)["seq"]
        assert seq > last_seq.get(device, 0)
        last_seq[device] = seq
    (entry,) = json.loads(truth.read_text())
    assert entry["fault"] == "weak_12v"
    assert entry["vin"] in {t.split("/")[1] for t, _ in expected}


def test_mqtt5_qos0_and_pacing(mosquitto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--mqtt-url", mosquitto_url, "--mqtt-protocol", "5", "--qos", "0",
                 "--vehicles", "3", "--chargers", "1", "--seed", "4", "--duration", "3h",
                 "--speed", "7200", "--print-truth")
    fleet = cli.build_fleet(args)
    timeline = list(fleet.messages(cli.until_ms(args)))
    with subscribed(mosquitto_url, "5") as sub:
        started = time.monotonic()
        assert cli.run(args) == 0
        elapsed = time.monotonic() - started
        sub.wait_for(len(timeline), 20)
        assert Counter(sub.received) == Counter((t, p) for _, t, p in timeline)
    # Paced: the last message is not published before its simulated time, scaled by --speed.
    assert elapsed >= (timeline[-1][0] - fleet.start_ms) / 1000 / 7200 - 0.1
    assert json.loads(capsys.readouterr().out) == []  # --print-truth: no faults asked for


def test_sigterm_and_sigint_stop_cleanly(amqtt_url: str, tmp_path: Path) -> None:
    with subscribed(amqtt_url) as sub:
        for sig in (signal.SIGINT, signal.SIGTERM):
            before = sub.count()
            proc = subprocess.Popen(
                [sys.executable, "-m", "ownercare", "simulate", "--mqtt-url", amqtt_url,
                 "--vehicles", "3", "--chargers", "1", "--speed", "1200"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                sub.wait_for(before + 3, 30)
                assert sub.count() >= before + 3, "the simulator publishes while it runs"
                proc.send_signal(sig)
                out, err = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert proc.returncode == 0, err
            assert "Traceback" not in err
            assert "simulator_interrupted" in err or "simulator_interrupted" in out


def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from ownercare import embedded

    port = embedded.free_port()
    args = parse("--mqtt-url", f"mqtt://127.0.0.1:{port}", "--duration", "1h")
    started = time.monotonic()
    assert cli.run(args) == 1
    assert 5 < time.monotonic() - started < 30  # it retried for ~10 s before giving up
    assert f"MQTT broker 127.0.0.1:{port} not reachable within 10 s" in capsys.readouterr().err
