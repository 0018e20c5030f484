"""The running simulator answers a signed OTA offer over a real MQTT broker."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from ingest.contract import ota_command_topic, validate
from ingest.mqtt import make_client
from ota.manifest import generate_keypair, load_private_key, offer_manifest, sign
from simulators import cli
from simulators.ota_client import simulated_release

pytestmark = pytest.mark.integration
START = "2026-01-05T00:00:00Z"  # midnight: every car is parked at home until 06:30


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


class StatusSubscriber:
    def __init__(self, url: str, vin: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client, connect = make_client(url, f"test-ota-sub-{os.getpid()}")
        ready = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect(**connect)
        self.client.subscribe(f"vehicles/{vin}/ota/status", qos=1)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def statuses(self) -> list[str]:
        with self.lock:
            return [orjson.loads(p)["status"] for _, p in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_signed_offer_makes_the_simulated_car_report_its_update(
        amqtt_url: str, tmp_path: Path) -> None:
    private_pem, public_pem = generate_keypair()
    key_file = tmp_path / "ota-public.pem"
    key_file.write_bytes(public_pem)
    args = parse("--mqtt-url", amqtt_url, "--vehicles", "2", "--chargers", "0", "--seed", "3",
                 "--start", START, "--duration", "5h", "--speed", "3600",
                 "--ota-public-key", str(key_file), "--ota-installed", "bms@1.0.0")
    vin = cli.build_fleet(args).vehicles[0].vin
    start_ms = cli.start_time(START)
    release = simulated_release("2.0.0", "bms", "https://updates.example.com/bms-2.0.0.bin",
                                size=64_000)
    offer = orjson.dumps(sign(load_private_key(private_pem), offer_manifest(
        release, vin=vin, campaign_id="camp-1", attempt=1, issued_at=start_ms,
        ttl_ms=86_400_000)))

    subscriber = StatusSubscriber(amqtt_url, vin)
    commander, connect = make_client(amqtt_url, f"test-ota-cloud-{os.getpid()}")
    commander.connect(**connect)
    commander.loop_start()
    exit_code: list[int] = []
    simulator = threading.Thread(target=lambda: exit_code.append(cli.run(args)))
    simulator.start()
    try:
        # QoS 1 to a topic nobody has subscribed to yet is dropped by the broker: repeat the
        # same command until the car answers; it is idempotent, so it answers once.
        deadline = time.monotonic() + 30
        while not subscriber.statuses() and time.monotonic() < deadline:
            commander.publish(ota_command_topic(vin), offer, qos=1).wait_for_publish(5)
            time.sleep(0.3)
        while "succeeded" not in subscriber.statuses() and time.monotonic() < deadline:
            time.sleep(0.1)
        simulator.join(60)
        assert not simulator.is_alive()
        assert exit_code == [0]
        time.sleep(0.2)  # the last QoS 1 deliveries to the subscriber (already acknowledged)
    finally:
        commander.disconnect()
        commander.loop_stop()
        subscriber.close()

    records = [validate(topic, payload) for topic, payload in subscriber.received]
    statuses = [r["data"]["status"] for r in records]
    assert statuses == ["accepted", "downloading", "downloaded", "installing", "succeeded"]
    assert all(r["data"]["campaign_id"] == "camp-1" and r["data"]["action_id"] == "camp-1:1"
               and r["data"]["version"] == "2.0.0" and r["id"] == vin for r in records)
    ts = [r["ts"] for r in records]
    seq = [r["seq"] for r in records]
    assert ts == sorted(ts)
    assert seq == sorted(seq)
    assert len(set(seq)) == len(seq)
    assert start_ms <= ts[0] < start_ms + 5 * 3_600_000
    assert ts[-1] - ts[2] == 10 * 60_000  # installing takes 10 simulated minutes


def test_without_a_public_key_ota_is_off_and_the_log_says_so(
        amqtt_url: str, caplog: pytest.LogCaptureFixture) -> None:
    args = parse("--mqtt-url", amqtt_url, "--vehicles", "1", "--chargers", "0",
                 "--duration", "1h", "--speed", "360000")
    with caplog.at_level(logging.INFO, logger="simulators.cli"):
        assert cli.run(args) == 0
    disabled = [r for r in caplog.records if r.getMessage().startswith("ota_disabled")]
    assert len(disabled) == 1


def test_a_bad_ota_flag_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse("--ota-bad-releases", "two")
    with pytest.raises(SystemExit):
        parse("--ota-failure-rate", "1.5")
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("nope")
    args = parse("--ota-public-key", str(not_a_key), "--vehicles", "1", "--duration", "1h")
    assert cli.run(args) == 2
