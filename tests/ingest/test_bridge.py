"""The bridge against real brokers: amqtt and Mosquitto for MQTT, Tansu for Kafka."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from ingest import topics
from ingest.contract import Reason
from ingest.mqtt import make_client
from ingest.shard import Shard
from ownercare import embedded
from tests.bridgekit import TS, bridge_env, start_bridge
from tests.stackkit import Publisher, random_vin, read_topic, records_in, start_service

pytestmark = pytest.mark.integration

def telemetry(seq: int, volts: float = 12.6) -> bytes:
    return orjson.dumps({"ts": TS + seq * 1000, "seq": seq,
                         "signals": {"Vehicle.LowVoltageBattery.CurrentVoltage": volts,
                                     "Vehicle.Speed": 0.0}})


# Each bad message and the reason it must be dead-lettered with (faults of the envelope: bad
# signals of a good message are dead-lettered one by one, test_bridge_signals.py).
def bad_messages(vin: str, other_vin: str) -> list[tuple[str, bytes, Reason]]:
    t = f"vehicles/{vin}/telemetry"
    return [
        (t, b"not json at all", Reason.NOT_JSON),
        (t, b'{"ts": 1767571200000, "seq": 1, "signals": {"Vehicle.Speed": NaN}}',
         Reason.NOT_JSON),
        (t, b"[1, 2, 3]", Reason.NOT_OBJECT),
        (t, orjson.dumps({"seq": 1, "signals": {"Vehicle.Speed": 1.0}}), Reason.MISSING_FIELD),
        (t, orjson.dumps({"ts": "yesterday", "seq": 1, "signals": {"Vehicle.Speed": 1.0}}),
         Reason.WRONG_TYPE),
        (t, orjson.dumps({"ts": TS, "seq": 1, "signals": {}}), Reason.BAD_VALUE),
        (t, orjson.dumps({"ts": TS, "seq": 1, "vin": other_vin,
                          "signals": {"Vehicle.Speed": 1.0}}), Reason.ID_MISMATCH),
        (t, b'{"ts": 1767571200000, "seq": 1, "signals": {}, "pad": "' + b"x" * 70_000 + b'"}',
         Reason.OVERSIZED),
        (t, orjson.dumps({"ts": 4_102_358_400_000, "seq": 2**63 - 1,  # 2099-12-31
                          "signals": {"Vehicle.Speed": 1.0}}), Reason.TS_IN_FUTURE),
        (f"vehicles/{vin}/nonsense", b"{}", Reason.UNKNOWN_TOPIC),
        ("vehicles/SHORT/telemetry", telemetry(1), Reason.BAD_ID),
        (f"chargers/CP-{vin[:4]}/status",
         orjson.dumps({"ts": TS, "connectorId": 1, "status": "Exploding", "errorCode": "NoError"}),
         Reason.BAD_VALUE),
    ]


@pytest.fixture(params=["amqtt-3.1.1", "mosquitto-3.1.1", "mosquitto-5"])
def mqtt_target(request: pytest.FixtureRequest) -> tuple[str, str]:
    broker, protocol = request.param.split("-")
    return request.getfixturevalue(f"{broker}_url"), protocol


def test_valid_records_reach_kafka_and_bad_ones_are_dead_lettered(
    mqtt_target: tuple[str, str], kafka_url: str, tmp_path: Path
) -> None:
    mqtt_url, protocol = mqtt_target
    log = tmp_path / "bridge.log"
    env = bridge_env(mqtt_url, kafka_url, OWNERCARE_MQTT_PROTOCOL=protocol)
    proc = start_bridge(env, log)
    try:
        vins = {random_vin() for _ in range(5)}
        charger = f"CP-{random.randrange(10**6)}"
        pub = Publisher(mqtt_url, protocol)
        for seq in range(1, 41):
            for vin in sorted(vins):
                pub.publish(f"vehicles/{vin}/telemetry", telemetry(seq))
        pub.publish(f"chargers/{charger}/status", orjson.dumps(
            {"ts": TS, "connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure"}))
        first = sorted(vins)[0]
        bad = bad_messages(first, sorted(vins)[1])
        for topic, payload, _ in bad:
            pub.publish(topic, payload)
        pub.close()

        rows = read_topic(kafka_url, topics.VEHICLES,
                          lambda rows: len(records_in(rows, vins)) >= 200)
        got = records_in(rows, vins)
        assert sorted((r["id"], r["seq"]) for r in got) == sorted(
            (v, s) for v in vins for s in range(1, 41))
        assert got[0]["data"]["signals"]["Vehicle.LowVoltageBattery.CurrentVoltage"] == 12.6
        # Micro-batching: fewer Kafka records than MQTT messages, each within one partition.
        assert len([r for r in rows if records_in([r], vins)]) < 200

        charger_rows = read_topic(kafka_url, topics.CHARGERS,
                                  lambda rows: bool(records_in(rows, {charger})))
        (status,) = records_in(charger_rows, {charger})
        assert status["data"]["status"] == "Faulted"
        assert status["data"]["errorCode"] == "GroundFailure"

        bad_topics = {t for t, _, _ in bad}

        def letters(rows: list[tuple[bytes | None, bytes]]) -> list[dict[str, object]]:
            out = [orjson.loads(v) for _, v in rows]
            return [d for d in out if d["topic"] in bad_topics and (
                d["topic"] != "vehicles/SHORT/telemetry" or
                base64.b64decode(d["payload_b64"]) == telemetry(1))]

        dl = read_topic(kafka_url, topics.DEAD_LETTER, lambda rows: len(letters(rows)) >= len(bad))
        found = {(d["topic"], base64.b64decode(d["payload_b64"])): d for d in letters(dl)}
        for topic, payload, reason in bad:
            letter = found[(topic, payload)]  # the original bytes are kept
            assert letter["reason"] == reason.value, (topic, letter["detail"])
            assert letter["detail"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_crash_between_mqtt_receive_and_kafka_ack_loses_nothing(
    mosquitto_url: str, kafka_url: str, tmp_path: Path
) -> None:
    """Messages held in an unflushed batch when the bridge is killed are redelivered."""
    env = bridge_env(mosquitto_url, kafka_url)
    log = tmp_path / "bridge.log"
    # A 10 s linger keeps everything received in memory, not yet written to Kafka.
    slow = start_bridge({**env, "OWNERCARE_BRIDGE_LINGER_MS": "10000",
                         "OWNERCARE_BRIDGE_BATCH_MAX": "100000"}, log)
    vin = random_vin()
    pub = Publisher(mosquitto_url)
    for seq in range(1, 101):
        pub.publish(f"vehicles/{vin}/telemetry", telemetry(seq))
    pub.close()  # the broker has them all, and has delivered them to the bridge
    # Wait until the bridge has received every message (it holds them unacknowledged).
    time.sleep(1.5)
    slow.kill()
    slow.wait(10)
    assert records_in(read_topic(kafka_url, topics.VEHICLES, lambda rows: False, timeout=2),
                      {vin}) == [], "the killed bridge must not have written the batch"

    again = start_service("bridge", env, tmp_path / "bridge2.log")
    try:
        rows = read_topic(kafka_url, topics.VEHICLES,
                          lambda rows: len({r["seq"] for r in records_in(rows, {vin})}) >= 100)
        assert {r["seq"] for r in records_in(rows, {vin})} == set(range(1, 101))
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0


def test_ota_commands_are_forwarded_to_the_vehicle_topic(
    amqtt_url: str, kafka_url: str, tmp_path: Path
) -> None:
    vin = random_vin()
    received: list[bytes] = []
    client, connect = make_client(amqtt_url, f"car-{vin}")
    client.on_message = lambda _c, _u, msg: received.append(msg.payload)
    client.connect(**connect)
    client.subscribe(f"vehicles/{vin}/ota/command", qos=1)
    client.loop_start()
    log = tmp_path / "bridge.log"
    proc = start_bridge(bridge_env(amqtt_url, kafka_url), log)
    try:
        command = orjson.dumps({"action_id": "a1", "type": "offer", "version": "2.0.0"})

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=kafka_url.removeprefix("kafka://"))
            await producer.start()
            await producer.send_and_wait(topics.OTA_COMMANDS, command, key=vin.encode())
            await producer.stop()

        asyncio.run(produce())
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received == [command]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        client.loop_stop()


def test_bridge_exits_nonzero_when_mqtt_stays_unreachable(kafka_url: str, tmp_path: Path) -> None:
    port = embedded.free_port()  # nothing listens here
    log = tmp_path / "bridge.log"
    proc = start_service("bridge", bridge_env(f"mqtt://127.0.0.1:{port}", kafka_url,
                                              OWNERCARE_BROKER_GIVE_UP_S="2"), log)
    assert proc.wait(30) == 1
    text = log.read_text()
    assert f"MQTT broker mqtt://127.0.0.1:{port} unreachable for 2 s" in text


def test_bridge_rejects_invalid_settings(tmp_path: Path) -> None:
    log = tmp_path / "bridge.log"
    proc = start_service("bridge", {"OWNERCARE_MQTT_URL": "http://nope",
                                    "OWNERCARE_BRIDGE_BATCH_MAX": "0"}, log)
    assert proc.wait(30) == 2
    text = log.read_text()
    assert "OWNERCARE_MQTT_URL" in text
    assert "mqtt://" in text
    assert "OWNERCARE_BRIDGE_BATCH_MAX" in text


def test_dead_letter_reasons_are_counted(mosquitto_url: str, kafka_url: str,
                                          tmp_path: Path) -> None:
    """The bridge's stats line counts dead letters by reason (the metric source)."""
    log = tmp_path / "bridge.log"
    proc = start_bridge(bridge_env(mosquitto_url, kafka_url), log)
    vin = random_vin()
    pub = Publisher(mosquitto_url)
    for _ in range(3):
        pub.publish(f"vehicles/{vin}/telemetry", b"garbage")
    pub.publish(f"vehicles/{vin}/telemetry", b"[]")
    pub.close()
    read_topic(kafka_url, topics.DEAD_LETTER, lambda rows: sum(
        orjson.loads(v)["topic"] == f"vehicles/{vin}/telemetry" for _, v in rows) >= 4)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    stats = [line for line in log.read_text().splitlines() if "bridge_stats" in line][-1]
    counts = Counter({"not_json": 3, "not_object": 1})
    for reason, n in counts.items():
        assert f"'{reason}': {n}" in stats, stats


def test_bridge_exits_nonzero_when_kafka_stays_unreachable(amqtt_url: str,
                                                           tmp_path: Path) -> None:
    port = embedded.free_port()
    log = tmp_path / "bridge.log"
    proc = start_service("bridge", bridge_env(amqtt_url, f"kafka://127.0.0.1:{port}",
                                              OWNERCARE_BROKER_GIVE_UP_S="2"), log)
    assert proc.wait(30) == 1
    assert f"Kafka at 127.0.0.1:{port} unreachable for 2 s" in log.read_text()


def test_two_sharded_bridges_forward_each_asset_once_in_order(
    mosquitto_url: str, kafka_url: str, tmp_path: Path
) -> None:
    """Both bridges see every message; each forwards only its share's assets, so every record
    reaches Kafka once, an asset's records in the order it sent them, and an OTA command is
    published to the car once."""
    rng = random.Random(25)
    shares: dict[int, list[str]] = {1: [], 2: []}
    while min(map(len, shares.values())) < 4:
        vin = random_vin(rng)
        share = 1 if Shard(1, 2).owns(f"vehicles/{vin}/telemetry") else 2
        shares[share].append(vin)
    vins = set(shares[1] + shares[2])
    logs = {k: tmp_path / f"bridge-{k}.log" for k in shares}
    procs = {k: start_bridge(bridge_env(mosquitto_url, kafka_url,
                                        OWNERCARE_BRIDGE_SHARD=f"{k}/2"), logs[k])
             for k in shares}
    commands: Counter[bytes] = Counter()
    car, connect = make_client(mosquitto_url, f"cars-{random.randrange(10**9)}")
    car.on_message = lambda _c, _u, msg: commands.update([bytes(msg.payload)])
    car.connect(**connect)
    car.loop_start()
    try:
        car.subscribe([(f"vehicles/{shares[k][0]}/ota/command", 1) for k in shares])
        time.sleep(0.5)
        pub = Publisher(mosquitto_url)
        for seq in range(1, 101):
            for vin in sorted(vins):
                pub.publish(f"vehicles/{vin}/telemetry", telemetry(seq))
        pub.close()
        rows = read_topic(kafka_url, topics.VEHICLES,
                          lambda rows: len(records_in(rows, vins)) >= 100 * len(vins))
        got = records_in(rows, vins)
        assert sorted((r["id"], r["seq"]) for r in got) == sorted(
            (v, s) for v in vins for s in range(1, 101))
        for vin in vins:
            assert [r["seq"] for r in got if r["id"] == vin] == list(range(1, 101)), vin

        sent = {k: orjson.dumps({"action_id": f"a{k}", "type": "offer", "version": "2.0.0"})
                for k in shares}

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=kafka_url.removeprefix("kafka://"))
            await producer.start()
            for k, command in sent.items():
                await producer.send_and_wait(topics.OTA_COMMANDS, command,
                                             key=shares[k][0].encode())
            await producer.stop()

        asyncio.run(produce())
        deadline = time.monotonic() + 20
        while len(commands) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # time for a second copy, were both bridges to publish it
        assert commands == Counter(sent.values())
    finally:
        car.loop_stop()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {k: proc.wait(30) for k, proc in procs.items()}
    assert codes == {1: 0, 2: 0}
    # Each bridge forwarded exactly its own share (its last statistics line, at the stop).
    for k, log in logs.items():
        forwarded = re.findall(r"bridge_stats records=(\d+)", log.read_text())
        assert int(forwarded[-1]) == 100 * len(shares[k]), k
