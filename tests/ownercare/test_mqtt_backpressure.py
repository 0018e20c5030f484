"""The embedded MQTT broker owes its persistent sessions at most a bounded amount: beyond it a
publisher's PUBACK waits, so the publisher holds its own messages, and nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ownercare import embedded
from tests.conftest import AmqttThread
from tests.ownercare.test_embedded_mqtt import TOPIC, Subscriber
from tests.stackkit import Publisher

pytestmark = pytest.mark.integration

PAYLOAD_BYTES = 1000
LIMIT = 20 * PAYLOAD_BYTES  # about twenty messages


def acknowledged(pub: Publisher) -> int:
    return sum(info.is_published() for info in pub.infos)


def settle(pub: Publisher, at_least: int = 0, within_s: float = 10) -> int:
    """The publisher's acknowledged count once it stops moving (and has reached at_least)."""
    deadline = time.monotonic() + within_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = acknowledged(pub)
        if now != last:
            last, since = now, time.monotonic()
        elif now >= at_least and time.monotonic() - since > 1.5:
            break
        time.sleep(0.1)
    return last


def test_publishers_wait_once_the_broker_owes_its_limit_and_nothing_is_lost(
        tmp_path: Path) -> None:
    broker = AmqttThread(embedded.free_port(), tmp_path / "mqtt", owed_limit_bytes=LIMIT)
    broker.start()
    try:
        url = f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{broker.port}"
        sub = Subscriber(url, "bridge-b")
        sub.subscribe()
        sub.disconnect()  # away: everything published now is owed to its session
        pub = Publisher(url)
        sent = [b"%04d" % i + b"x" * (PAYLOAD_BYTES - 4) for i in range(200)]
        for payload in sent:
            pub.publish(TOPIC, payload)
        held = settle(pub)
        # Acknowledged (owed to the session) up to the limit, not the 200 sent.
        assert LIMIT // PAYLOAD_BYTES - 5 <= held <= LIMIT // PAYLOAD_BYTES + 5, held
        assert broker.broker is not None
        assert broker.broker.waits > 0
        assert broker.broker.journal.owed_bytes <= LIMIT + 2 * PAYLOAD_BYTES

        back = Subscriber(url, "bridge-b")  # the bridge returns and takes what it is owed
        back.wait_for(len(sent), timeout=60)
        assert settle(pub, at_least=len(sent), within_s=60) == len(sent)
        back.disconnect()
        pub.close()
        # Every message once, each publisher's order kept (MQTT 3.1.1 §4.6).
        assert len(set(back.got)) == len(sent)
        first_seen = list(dict.fromkeys(back.got))
        assert first_seen == sent
    finally:
        broker.stop()
