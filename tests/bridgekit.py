"""Running ``ownercare bridge`` as its own process against real brokers."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from tests.stackkit import start_service, wait_for_log

TS = 1_767_571_200_000  # 2026-01-05T00:00Z


def bridge_env(mqtt_url: str, kafka_url: str, **extra: str) -> dict[str, str]:
    """The bridge's settings: its own MQTT session, and a short give-up so a test fails fast."""
    return {
        "OWNERCARE_MQTT_URL": mqtt_url,
        "OWNERCARE_KAFKA_URL": kafka_url,
        "OWNERCARE_MQTT_CLIENT_ID": f"bridge-{random.randrange(10**9)}",
        "OWNERCARE_BROKER_GIVE_UP_S": "20",
        **extra,
    }


def start_bridge(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The bridge, once it is connected to MQTT; killed (not left running) if it never is."""
    proc = start_service("bridge", env, log)
    try:
        wait_for_log(log, "mqtt_connected", 30, proc)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc
