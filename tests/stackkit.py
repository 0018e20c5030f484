"""Helpers for tests against real brokers: processes, Kafka reads, MQTT publishing."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer

from ingest.mqtt import make_client

VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def random_vin(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return "".join(rng.choice(VIN_CHARS) for _ in range(17))


def bootstrap_of(kafka_url: str) -> str:
    return kafka_url.removeprefix("kafka://")


def start_service(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    out = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownercare", command],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
    )
    out.close()
    return proc


def wait_for_log(log_path: Path, needle: str, timeout: float, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists() and needle in log_path.read_text(errors="replace"):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not in {log_path} within {timeout}s:\n"
                         + (log_path.read_text(errors="replace") if log_path.exists() else ""))


def read_topic(
    kafka_url: str,
    topic: str,
    until: Callable[[list[tuple[bytes | None, bytes]]], bool],
    timeout: float = 30,
) -> list[tuple[bytes | None, bytes]]:
    """Read (key, value) pairs from the start of ``topic`` until ``until(rows)`` or timeout."""

    async def go() -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap_of(kafka_url), group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        rows: list[tuple[bytes | None, bytes]] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not until(rows):
                batches = await consumer.getmany(timeout_ms=300)
                for msgs in batches.values():
                    rows.extend((m.key, m.value) for m in msgs)
        finally:
            await consumer.stop()
        return rows

    return asyncio.run(go())


def records_in(rows: list[tuple[bytes | None, bytes]], ids: set[str]) -> list[dict[str, Any]]:
    """Canonical records of the given assets from record-batch rows."""
    out = []
    for _key, value in rows:
        for record in orjson.loads(value)["records"]:
            if record["id"] in ids:
                out.append(record)
    return out


class Publisher:
    """A plain paho client that publishes and waits for every QoS 1 acknowledgement."""

    def __init__(self, mqtt_url: str, protocol: str = "3.1.1", client_id: str = "") -> None:
        client_id = client_id or f"test-pub-{random.randrange(10**9)}"
        self.client, connect = make_client(mqtt_url, client_id, protocol)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(**connect)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=qos))

    def flush(self, timeout: float = 30) -> None:
        for info in self.infos:
            info.wait_for_publish(timeout)
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()
