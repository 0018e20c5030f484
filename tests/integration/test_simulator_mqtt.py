"""The simulator publishing a fleet to a real amqtt broker: everything arrives, all valid."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import pytest

from ingest.contract import validate
from ingest.mqtt import make_client
from simulators import cli

pytestmark = pytest.mark.integration


def test_simulated_day_arrives_complete_over_mqtt(amqtt_url: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    truth = tmp_path / "truth.json"
    args = parser.parse_args(["--mqtt-url", amqtt_url, "--vehicles", "5", "--chargers", "1",
                              "--seed", "9", "--faults", "weak_12v:1", "--duration", "1d",
                              "--speed", "200000", "--truth", str(truth)])
    expected = list(cli.build_fleet(args).messages(
        cli.start_time(args.start) + int(cli.duration_s(args.duration) * 1000)))

    received: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    sub, connect = make_client(amqtt_url, "test-sub")

    def on_message(_c: object, _u: object, msg: object) -> None:
        with lock:
            received.append((msg.topic, msg.payload))  # type: ignore[attr-defined]

    sub.on_message = on_message
    sub.connect(**connect)
    sub.subscribe([("vehicles/#", 1), ("chargers/#", 1)])
    sub.loop_start()
    time.sleep(0.5)
    try:
        assert cli.run(args) == 0
        deadline = time.monotonic() + 30
        while len(received) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sub.loop_stop()
    assert sorted(received) == sorted((t, p) for _, t, p in expected)
    for topic, payload in received:
        validate(topic, payload)
    assert json.loads(truth.read_text())[0]["fault"] == "weak_12v"


def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from ownercare import embedded

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    port = embedded.free_port()
    args = parser.parse_args(["--mqtt-url", f"mqtt://127.0.0.1:{port}", "--duration", "1h"])
    started = time.monotonic()
    assert cli.run(args) == 1
    assert time.monotonic() - started < 30
    assert f"127.0.0.1:{port} not reachable" in capsys.readouterr().err
