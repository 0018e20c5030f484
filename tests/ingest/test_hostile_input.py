"""Hostile input through the real bridge: a real MQTT broker (amqtt or Mosquitto) and Tansu.

Every message an attacker or a broken device can send (random bytes, deep nesting, NaN and
infinities, huge and negative numbers, extreme timestamps and sequence numbers, oversized
payloads, wrong topics, duplicate keys, topics that are not UTF-8) must leave the bridge
running: each invalid one goes to the dead-letter topic with the precise reason the contract
gives, the valid messages published around it still arrive, and the bridge's metrics count
the dead letters by reason.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import BridgeSettings
from ingest import contract, service_metrics, topics
from ingest.contract import Reason
from ownercare import embedded
from tests.conftest import AmqttThread
from tests.ingest.test_bridge import bridge_env
from tests.stackkit import Publisher, bootstrap_of, random_vin, start_service, wait_for_log

pytestmark = pytest.mark.integration

TS = 1_767_571_200_000  # 2026-01-05T00:00Z: in the past of any wall clock these tests run at
SPEED = "Vehicle.Speed"


class KafkaTail:
    """Everything produced to the bridge's output topics from now on, read in a thread."""

    TOPICS = (topics.VEHICLES, topics.CHARGERS, topics.DEAD_LETTER, topics.SERVICE_METRICS)

    def __init__(self, kafka_url: str) -> None:
        self.bootstrap = bootstrap_of(kafka_url)
        self.rows: dict[str, list[bytes]] = {t: [] for t in self.TOPICS}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        assert self.ready.wait(60), f"the Kafka tail did not start: {self.error!r}"

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False)
        try:
            await consumer.start()
            await consumer.topics()
            parts = [TopicPartition(t, p) for t in self.TOPICS
                     for p in sorted(consumer.partitions_for_topic(t) or [])]
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            for tp in parts:  # resolve the end now: later records are this test's
                await consumer.position(tp)
            self.ready.set()
            while not self.stopping.is_set():
                for tp, msgs in (await consumer.getmany(timeout_ms=200)).items():
                    with self.lock:
                        self.rows[tp.topic].extend(m.value or b"" for m in msgs)
        except BaseException as exc:  # surfaced by the waits
            self.error = exc
            self.ready.set()
        finally:
            await consumer.stop()

    def letters(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(v) for v in self.rows[topics.DEAD_LETTER]]

    def records(self) -> list[dict[str, Any]]:
        with self.lock:
            raws = [*self.rows[topics.VEHICLES], *self.rows[topics.CHARGERS]]
        return [r for raw in raws for r in contract.decode_batch(raw)]

    def reports(self, service: str, pid: int) -> list[service_metrics.Report]:
        with self.lock:
            raws = list(self.rows[topics.SERVICE_METRICS])
        return [r for r in map(service_metrics.decode, raws)
                if r.service == service and r.instance.endswith(f":{pid}")]

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise AssertionError(f"the Kafka tail failed: {self.error!r}")
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {timeout} s")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(30)


class Bridge:
    """``ownercare bridge`` as a process, with its log."""

    def __init__(self, mqtt_url: str, kafka_url: str, log: Path) -> None:
        self.log = log
        self.proc = start_service("bridge", bridge_env(mqtt_url, kafka_url), log)
        wait_for_log(log, "mqtt_connected", 60, self.proc)

    def assert_running(self) -> None:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        assert "Traceback" not in self.log.read_text(errors="replace"), self.log.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        code = self.proc.wait(30)
        assert code == 0, self.log.read_text()[-3000:]


def mosquitto(directory: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = embedded.free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\nmax_inflight_messages 1000\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert embedded.wait_for_port(port, 10), "mosquitto did not start listening"
    return f"mqtt://127.0.0.1:{port}", proc


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def stack(request: pytest.FixtureRequest, kafka_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Bridge, KafkaTail]]:
    """A broker, a bridge and a tail of its output, shared by the tests of one broker."""
    directory = tmp_path_factory.mktemp(f"hostile-{request.param}")
    amqtt: AmqttThread | None = None
    proc: subprocess.Popen[bytes] | None = None
    if request.param == "amqtt":
        amqtt = AmqttThread(embedded.free_port())
        amqtt.start()
        url = f"mqtt://127.0.0.1:{amqtt.port}"
    else:
        url, proc = mosquitto(directory)
    tail = KafkaTail(kafka_url)
    bridge = Bridge(url, kafka_url, directory / "bridge.log")
    try:
        yield url, bridge, tail
        bridge.assert_running()
    finally:
        if bridge.proc.poll() is None:
            bridge.stop()
        tail.close()
        if amqtt is not None:
            amqtt.stop()
        if proc is not None:
            embedded.stop_process(proc)


def expected_reason(topic: str, payload: bytes) -> Reason | None:
    """The contract's verdict, as the bridge gives it (None: a valid record)."""
    try:
        record = contract.validate(topic, payload)
        contract.check_not_future(record, int(time.time() * 1000),
                                  BridgeSettings().max_future_skew_ms)
    except contract.ContractError as exc:
        return exc.reason
    return None


def good(seq: int) -> bytes:
    return orjson.dumps({"ts": TS + seq * 1000, "seq": seq, "signals": {SPEED: 12.0}})


def deep(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * depth + inner + b"}" * depth


def hostile(vin: str) -> list[tuple[str, bytes, Reason | None, str]]:
    """(topic, payload, the reason it must be dead-lettered with or None, what the detail
    says) of every kind of hostile message; the few the contract accepts go through."""
    t = f"vehicles/{vin}/telemetry"
    e = f"vehicles/{vin}/events"

    def tele(**fields: Any) -> bytes:
        return orjson.dumps({"ts": TS, "seq": 1, "signals": {SPEED: 1.0}, **fields})

    def raw(body: str) -> bytes:
        return body.encode()

    signal = '{"ts": 1767571200000, "seq": 1, "signals": {"Vehicle.Speed": %s}}'
    return [
        (t, bytes(range(256)) * 4, Reason.NOT_JSON, "not valid UTF-8 JSON"),
        (t, b"\xff\xfe{}", Reason.NOT_JSON, "UTF-8"),
        (t, b"", Reason.NOT_JSON, "empty"),
        (t, b"[" * 30_000 + b"]" * 30_000, Reason.NOT_JSON, "depth"),
        (t, raw('{"ts": 1767571200000, "seq": 1, "signals": ') + deep(2000) + b"}",
         Reason.NOT_JSON, "depth"),
        (t, raw('{"ts": 1767571200000, "seq": 1, "signals": {"Vehicle.Speed": ')
         + deep(20) + b"}}", Reason.WRONG_TYPE, "Vehicle.Speed"),
        (t, raw(signal % "NaN"), Reason.NOT_JSON, "char"),
        (t, raw(signal % "Infinity"), Reason.NOT_JSON, "char"),
        (t, raw(signal % "-Infinity"), Reason.NOT_JSON, "char"),
        (t, raw(signal % "1e400"), Reason.NOT_JSON, "infinity"),
        (t, raw(signal % "-1e400"), Reason.NOT_JSON, "infinity"),
        (t, raw(signal % ("9" * 400)), Reason.NOT_JSON, "infinity"),
        (t, raw(signal % "123456789012345678901234567890"), Reason.OUT_OF_RANGE,
         "plausible range"),
        (t, raw(signal % "-1e308"), Reason.OUT_OF_RANGE, "plausible range"),
        (t, raw(signal % "true"), Reason.WRONG_TYPE, "Vehicle.Speed"),
        (t, tele(ts=2**63 - 1), Reason.OUT_OF_RANGE, "ts=9223372036854775807"),
        (t, tele(ts=-1), Reason.OUT_OF_RANGE, "ts=-1"),
        (t, tele(ts=-(2**63)), Reason.OUT_OF_RANGE, "ts=-9223372036854775808"),
        # Past 64 bits orjson reads a number as a float: not an integer any more.
        (t, raw('{"ts": 99999999999999999999999, "seq": 1, "signals": {}}'),
         Reason.WRONG_TYPE, "ts must be an integer"),
        (t, tele(ts=4_070_908_800_000), Reason.TS_IN_FUTURE, "ahead of the bridge"),  # 2099
        (t, tele(ts=TS + 0.5), Reason.WRONG_TYPE, "ts must be an integer"),
        (t, tele(ts=True), Reason.WRONG_TYPE, "ts must be an integer"),
        (t, tele(ts="2026-01-05T00:00:00Z"), Reason.WRONG_TYPE, "ts must be an integer"),
        (t, tele(seq=2**63), Reason.OUT_OF_RANGE, "seq=9223372036854775808"),
        (t, tele(seq=-1), Reason.OUT_OF_RANGE, "seq=-1"),
        (t, tele(seq=None), Reason.WRONG_TYPE, "seq must be an integer"),
        (t, b'{"ts": 1767571200000, "seq": 1, "signals": {}, "pad": "' + b"x" * 65_536
         + b'"}', Reason.OVERSIZED, "the limit is 65536"),
        (t, b"x" * (1024 * 1024), Reason.OVERSIZED, "payload is 1048576 bytes"),
        (t, raw('{"ts": 1767571200000, "seq": 1, "seq": 2, "signals": {}}'),
         Reason.DUPLICATE_KEY, "seq"),
        (t, raw('{"ts": 1767571200000, "seq": 3, "signals": {"Vehicle.Speed": 1.0, '
                '"Vehicle.Speed": 500.0}}'), Reason.DUPLICATE_KEY, "Vehicle.Speed"),
        (e, raw('{"ts": 1767571200000, "seq": 4, "type": "dtc", "code": "P0AA6", '
                '"code": "U0100"}'), Reason.DUPLICATE_KEY, "code"),
        (f"vehicles/{vin}/telemetry/extra", good(1), Reason.UNKNOWN_TOPIC, "not part"),
        (f"vehicles/{vin}/Telemetry", good(1), Reason.UNKNOWN_TOPIC, "not part"),
        (f"vehicles/{vin}", good(1), Reason.UNKNOWN_TOPIC, "not part"),
        (f"vehicles/{vin.lower()}/telemetry", good(1), Reason.BAD_ID, "17-character VIN"),
        (f"vehicles/{vin}\u00e9/telemetry", good(1), Reason.BAD_ID, "17-character VIN"),
        (f"vehicles/{'X' * 5000}/telemetry", good(1), Reason.BAD_ID, "17-character VIN"),
        ("chargers//status", good(1), Reason.BAD_ID, "charger id"),
        (t, tele(vin="AAAAAAAAAAAAAAAAA"), Reason.ID_MISMATCH, "does not match"),
        (t, tele(extra=1), Reason.UNKNOWN_FIELD, "extra"),
        # Inside the contract, however extreme: forwarded (the worker's guard rails keep one
        # record from moving its clocks, tests/diagnostics/test_eventtime_guards.py).
        (t, tele(seq=2**63 - 1), None, ""),
        (t, tele(seq=0, signals={SPEED: -0.0}), None, ""),
    ]


def test_hostile_messages_are_dead_lettered_with_their_reason_and_counted(
        stack: tuple[str, Bridge, KafkaTail]) -> None:
    url, bridge, tail = stack
    vin, neighbour = random_vin(), random_vin()
    cases = hostile(vin)
    # The expectations agree with the contract itself: the bridge adds nothing of its own.
    assert [(n, c[1][:60], c[2]) for n, c in enumerate(cases) if c[2] != expected_reason(
        c[0], c[1])] == []
    before = dead_letter_counts(tail, bridge, after_ms=int(time.time() * 1000))
    pub = Publisher(url)
    for n, (topic, payload, _reason, _detail) in enumerate(cases, start=1):
        pub.publish(f"vehicles/{neighbour}/telemetry", good(n))  # good ones around each
        pub.publish(topic, payload)
    pub.publish(f"vehicles/{neighbour}/telemetry", good(len(cases) + 1))
    pub.close()

    bad = [c for c in cases if c[2] is not None]
    expected = {(topic, payload): (reason.value, detail)
                for topic, payload, reason, detail in bad if reason is not None}

    def mine() -> dict[tuple[str, bytes], dict[str, Any]]:
        return {key: letter for letter in tail.letters()
                if (key := (letter["topic"], base64.b64decode(letter["payload_b64"])))
                in expected}

    letters = tail.wait(lambda: m if len(m := mine()) == len(expected) else None,
                        f"{len(expected)} dead letters")
    for key, (reason, detail) in expected.items():
        letter = letters[key]
        assert (letter["reason"], detail in letter["detail"]) == (reason, True), (
            key[0][:80], key[1][:80], letter["detail"])
        assert letter["payload_bytes"] == len(key[1])
    # The good messages around them all arrive, once each, and the two valid extremes too.
    ids = {neighbour, vin}
    records = tail.wait(lambda: r if len(r := [x for x in tail.records() if x["id"] in ids])
                        >= len(cases) + 3 else None, "the valid records")
    assert sorted(r["seq"] for r in records if r["id"] == neighbour) == list(
        range(1, len(cases) + 2))
    assert sorted(r["seq"] for r in records if r["id"] == vin) == [0, 2**63 - 1]
    # The bridge's metrics (GET /metrics' source) count every dead letter by its reason.
    counted = dead_letter_counts(tail, bridge, after_ms=int(time.time() * 1000))
    assert counted - before == Counter(reason.value for _t, _p, reason, _d in bad if reason)
    bridge.assert_running()


def dead_letter_counts(tail: KafkaTail, bridge: Bridge, after_ms: int) -> Counter[str]:
    """The bridge's dead letters by reason in its first metrics report sent after
    ``after_ms`` (it reports cumulative counts every few seconds)."""
    def report() -> service_metrics.Report | None:
        return next((r for r in tail.reports("bridge", bridge.proc.pid)
                     if r.sent_at_ms > after_ms), None)

    found = tail.wait(report, "a metrics report of the bridge", 60)
    return Counter({dict(s.labels)["reason"]: int(s.value) for s in found.samples
                    if s.name == service_metrics.BRIDGE_DEAD_LETTERS.name and s.value})


def raw_publish(url: str, topic: bytes, payload: bytes) -> bytes:
    """Publish with a topic paho refuses to encode (not UTF-8), over a bare socket; return
    what the broker answered (b"": it closed the connection)."""
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)

    def remaining(n: int) -> bytes:
        out = bytearray()
        while True:
            n, digit = divmod(n, 128)
            out.append(digit | (0x80 if n else 0))
            if not n:
                return bytes(out)

    with socket.create_connection((host, int(port)), timeout=10) as sock:
        connect = struct.pack("!H", 4) + b"MQTT" + bytes([4, 2]) + struct.pack("!H", 30) \
            + struct.pack("!H", 6) + b"rawpub"
        sock.sendall(b"\x10" + remaining(len(connect)) + connect)
        assert sock.recv(4)[:1] == b"\x20"  # CONNACK
        publish = struct.pack("!H", len(topic)) + topic + struct.pack("!H", 1) + payload
        sock.sendall(b"\x32" + remaining(len(publish)) + publish)
        try:
            return sock.recv(4)
        except OSError:
            return b""


def test_topics_that_are_not_utf8_never_reach_the_bridge(
        stack: tuple[str, Bridge, KafkaTail]) -> None:
    """MQTT topics are UTF-8 without U+0000 (3.1.1 §1.5.3). Mosquitto drops the client that
    sends another one; amqtt acknowledges and discards one that is not UTF-8, and passes a
    U+0000 on, which the bridge dead-letters as an unknown topic. The messages around them
    arrive."""
    url, bridge, tail = stack
    vin = random_vin()
    topic = f"vehicles/{vin}/telemetry"
    pub = Publisher(url)
    pub.publish(topic, good(1))
    pub.flush()
    answers = [raw_publish(url, bad, good(2)) for bad in (
        f"vehicles/{vin}/\xff".encode("latin-1"), f"vehicles/{vin}\xed\xa0\x80".encode(
            "latin-1"), topic.encode() + b"\x00")]
    pub.publish(topic, good(3))
    pub.close()
    records = tail.wait(lambda: r if len(r := [x for x in tail.records() if x["id"] == vin])
                        >= 2 else None, "the records around the bad topics")
    amqtt = "amqtt" in bridge.log.parent.name
    if amqtt:
        letter = tail.wait(lambda: [d for d in tail.letters() if vin in d["topic"]],
                           "the dead letter of the U+0000 topic")
        assert [(d["topic"], d["reason"]) for d in letter] == [(topic + "\x00",
                                                                "unknown_topic")]
    time.sleep(2)  # what would follow them has had its time
    assert sorted(r["seq"] for r in records) == [1, 3]
    letters = [(d["topic"], d["reason"]) for d in tail.letters() if vin in d["topic"]
               or "\ufffd" in d["topic"]]
    assert letters == ([(topic + "\x00", "unknown_topic")] if amqtt else [])
    puback = b"\x40\x02\x00\x01"
    assert answers == ([puback] * 3 if amqtt else [b""] * 3), answers
    bridge.assert_running()


@settings(max_examples=40)
@given(payloads=st.lists(st.binary(max_size=300) | st.text(max_size=100).map(str.encode)
                         | st.sampled_from([b"{}", b"null", b'{"ts": 1, "seq": 1}']),
                         min_size=1, max_size=15))
def test_random_bytes_never_stop_the_bridge(stack: tuple[str, Bridge, KafkaTail],
                                            payloads: list[bytes]) -> None:
    url, bridge, tail = stack
    vins = [random_vin() for _ in payloads]
    neighbour = random_vin()
    pub = Publisher(url)
    for n, (vin, payload) in enumerate(zip(vins, payloads, strict=True), start=1):
        pub.publish(f"vehicles/{vin}/telemetry", payload)
        pub.publish(f"vehicles/{neighbour}/telemetry", good(n))
    pub.close()
    expected = {f"vehicles/{v}/telemetry": expected_reason(f"vehicles/{v}/telemetry", p)
                for v, p in zip(vins, payloads, strict=True)}
    bad = sum(r is not None for r in expected.values())
    letters = tail.wait(lambda: m if len(m := {d["topic"]: d for d in tail.letters()
                                               if d["topic"] in expected}) == bad else None,
                        "the dead letters")
    assert {t: Reason(d["reason"]) for t, d in letters.items()} == {
        t: r for t, r in expected.items() if r is not None}
    ids = {neighbour, *vins}
    records = tail.wait(lambda: r if len(r := [x for x in tail.records() if x["id"] in ids])
                        >= 2 * len(payloads) - bad else None, "the records")
    assert sorted(r["seq"] for r in records if r["id"] == neighbour) == list(
        range(1, len(payloads) + 1))
    bridge.assert_running()
