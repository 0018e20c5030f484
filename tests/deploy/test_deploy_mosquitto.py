"""deploy/mosquitto run for real: per-device credentials and the topic ACL hold.

The production config is used as committed; only file paths and ports are rewritten for the
test's temporary directory, and a throwaway CA/server certificate is generated for the TLS
listener.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ownercare import embedded
from tests.stackkit import random_vin

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PASSWORD = "correct horse battery staple"


def make_certs(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(directory / "server.key"), "-out", str(directory / "server.csr"))
    openssl("x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(directory / "ca.crt"),
            "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "2",
            "-out", str(directory / "server.crt"))


class Broker:
    def __init__(self, tmp: Path, users: list[str]) -> None:
        self.port = embedded.free_port()
        self.tls_port = embedded.free_port()
        (tmp / "data").mkdir()
        make_certs(tmp)
        passwd = tmp / "passwd"
        passwd.touch()
        for user in users:
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, PASSWORD], check=True)
        conf = (DEPLOY / "mosquitto.conf").read_text()
        conf = conf.replace("/mosquitto/config/passwd", str(passwd))
        conf = conf.replace("/mosquitto/config/acl", str(DEPLOY / "acl"))
        conf = conf.replace("/mosquitto/data/", f"{tmp / 'data'}/")
        conf = conf.replace("/mosquitto/certs/", f"{tmp}/")
        conf = re.sub(r"^listener 8883$", f"listener {self.tls_port} 127.0.0.1", conf, flags=re.M)
        conf = re.sub(r"^listener 1883$", f"listener {self.port} 127.0.0.1", conf, flags=re.M)
        # Run as the test's user: mosquitto started as root would drop to the `mosquitto`
        # user, which cannot read pytest's private temporary directory.
        import getpass

        conf += f"\nuser {getpass.getuser()}\n"
        (tmp / "mosquitto.conf").write_text(conf)
        self.log = tmp / "mosquitto.log"
        self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(tmp / "mosquitto.conf")],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        assert embedded.wait_for_port(self.port, 10), self.log.read_text()


@pytest.fixture
def vins() -> tuple[str, str]:
    return random_vin(), random_vin()


@pytest.fixture
def broker(tmp_path: Path, vins: tuple[str, str]) -> Iterator[Broker]:
    b = Broker(tmp_path, [*vins, "ownercare-bridge", "CP-0001"])
    yield b
    embedded.stop_process(b.proc)


class Client:
    def __init__(self, broker: Broker, user: str | None, password: str = PASSWORD,
                 protocol: int = mqtt.MQTTv311) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.suback: list[object] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.time()}",
                             protocol=protocol)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        self.c.on_subscribe = lambda _c, _u, _mid, codes, _p: self.suback.extend(codes)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if reason.is_failure:  # type: ignore[attr-defined]
            self.refused.append(str(reason))
        else:
            self.connected.set()

    def wait_connected(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.connected.is_set() and not self.refused:
            time.sleep(0.05)
        return self.connected.is_set()

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while not self.suback and time.monotonic() < deadline:
            time.sleep(0.05)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(predicate: object, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_anonymous_and_wrong_password_clients_are_refused(broker: Broker,
                                                          vins: tuple[str, str]) -> None:
    anonymous = Client(broker, None)
    assert not anonymous.wait_connected()
    assert anonymous.refused, "anonymous clients must be refused"
    wrong = Client(broker, vins[0], password="guess")
    assert not wrong.wait_connected()
    assert wrong.refused
    anonymous.close()
    wrong.close()


def test_a_vehicle_publishes_only_as_itself(broker: Broker, vins: tuple[str, str]) -> None:
    a, b = vins
    bridge = Client(broker, "ownercare-bridge")
    assert bridge.wait_connected()
    bridge.subscribe("vehicles/#")
    car_a = Client(broker, a)
    assert car_a.wait_connected()
    car_a.publish(f"vehicles/{b}/telemetry", b"pretending to be B")
    car_a.publish(f"vehicles/{b}/ota/command", b"forged command for B")
    car_a.publish(f"chargers/{a}/status", b"pretending to be a charger")
    car_a.publish(f"vehicles/{a}/telemetry", b"honest")  # same connection: arrives after
    assert wait_for(lambda: (f"vehicles/{a}/telemetry", b"honest") in bridge.messages)
    time.sleep(0.3)
    assert bridge.messages == [(f"vehicles/{a}/telemetry", b"honest")]
    for c in (bridge, car_a):
        c.close()


def test_a_vehicle_reads_only_its_own_commands(broker: Broker, vins: tuple[str, str]) -> None:
    a, b = vins
    car_a = Client(broker, a)
    car_b = Client(broker, b, protocol=mqtt.MQTTv5)
    assert car_a.wait_connected()
    assert car_b.wait_connected()
    car_a.subscribe(f"vehicles/{a}/ota/command")
    # B tries to read A's commands. Mosquitto 2.0 may grant the subscription; the ACL is
    # enforced when a message is delivered, which is what matters.
    car_b.subscribe(f"vehicles/{a}/ota/command")
    car_b.suback.clear()
    car_b.subscribe("vehicles/#")
    bridge = Client(broker, "ownercare-bridge")
    assert bridge.wait_connected()
    bridge.publish(f"vehicles/{a}/ota/command", b"update for A")
    assert wait_for(lambda: car_a.messages == [(f"vehicles/{a}/ota/command", b"update for A")])
    time.sleep(0.3)
    assert car_b.messages == []
    for c in (bridge, car_a, car_b):
        c.close()


def test_the_bridge_account_cannot_impersonate_devices(broker: Broker,
                                                       vins: tuple[str, str]) -> None:
    a, _ = vins
    watcher = Client(broker, "ownercare-bridge")
    assert watcher.wait_connected()
    watcher.subscribe("vehicles/#")
    bridge = Client(broker, "ownercare-bridge")
    assert bridge.wait_connected()
    bridge.publish(f"vehicles/{a}/telemetry", b"forged by the bridge")
    bridge.publish(f"vehicles/{a}/ota/command", b"allowed")
    assert wait_for(lambda: (f"vehicles/{a}/ota/command", b"allowed") in watcher.messages)
    time.sleep(0.3)
    assert [t for t, _ in watcher.messages] == [f"vehicles/{a}/ota/command"]
    for c in (watcher, bridge):
        c.close()


def test_a_charger_publishes_under_its_own_id(broker: Broker) -> None:
    bridge = Client(broker, "ownercare-bridge")
    assert bridge.wait_connected()
    bridge.subscribe("chargers/#")
    charger = Client(broker, "CP-0001")
    assert charger.wait_connected()
    charger.publish("chargers/CP-0002/status", b"not me")
    charger.publish("chargers/CP-0001/status", b"me")
    assert wait_for(lambda: ("chargers/CP-0001/status", b"me") in bridge.messages)
    time.sleep(0.3)
    assert bridge.messages == [("chargers/CP-0001/status", b"me")]
    for c in (bridge, charger):
        c.close()
