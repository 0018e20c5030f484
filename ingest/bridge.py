"""The MQTT -> Kafka bridge (and Kafka -> MQTT for OTA commands).

Threads and ordering:

* paho's network thread receives PUBLISH packets, validates them against the contract
  (pure, cheap) and appends (record, mid, qos) to a hand-off list the asyncio loop polls.
* the collector packs everything that arrived within ``linger_ms`` (or ``batch_max`` records)
  into one Kafka record per (topic, partition) -- the micro-batch that lets the worker amortise
  its per-event cost -- and queues the flush.
* the flusher produces each flush and, only after Kafka acknowledged every record of it,
  sends the MQTT PUBACKs in the order the PUBLISH packets arrived (MQTT 3.1.1 §4.6). A crash
  before that point leaves the messages unacknowledged in the broker's persistent session,
  so they are redelivered: at least once, and consumers drop duplicates by ``seq``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from config.settings import BridgeSettings, mask_url
from ingest import contract, service_metrics, topics
from ingest.catalogue import PATH_RE, Catalogue
from ingest.kafka import ensure_topics, partition_for, wait_for_kafka
from ingest.mqtt import BatchedIoClient, make_client
from ingest.shard import Shard

log = logging.getLogger(__name__)

# A Kafka record stays well below the default 1 MiB request limit.
MAX_BATCH_BYTES = 512 * 1024
STATS_EVERY_S = 30.0
HANDOFF_POLL_S = 0.005


class BridgeError(RuntimeError):
    """A broker stayed unreachable past the configured limit; the bridge must exit."""


@dataclass(slots=True)
class Inbound:
    topic: str  # Kafka topic
    partition: int
    record: dict[str, Any] | None  # canonical record, or None for a dead letter
    dead_letter: bytes | None
    size: int
    mid: int
    qos: int
    signal_letters: tuple[bytes, ...] = ()  # bad signals left out of ``record``


@dataclass
class Flush:
    groups: dict[tuple[str, int], list[list[dict[str, Any]]]] = field(default_factory=dict)
    dead_letters: list[bytes] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    _sizes: dict[tuple[str, int], int] = field(default_factory=dict)
    count: int = 0

    def add(self, item: Inbound) -> None:
        self.count += 1
        self.acks.append((item.mid, item.qos))
        self.dead_letters.extend(item.signal_letters)
        if item.record is None:
            if item.dead_letter is not None:
                self.dead_letters.append(item.dead_letter)
            return
        key = (item.topic, item.partition)
        chunks = self.groups.setdefault(key, [[]])
        if self._sizes.get(key, 0) + item.size > MAX_BATCH_BYTES and chunks[-1]:
            chunks.append([])
            self._sizes[key] = 0
        chunks[-1].append(item.record)
        self._sizes[key] = self._sizes.get(key, 0) + item.size


class Bridge:
    def __init__(self, settings: BridgeSettings,
                 catalogue: Catalogue | None = None) -> None:
        self.settings = settings
        self.stats: Counter[str] = Counter()
        self.dead_letter_reasons: Counter[str] = Counter()
        self.dead_letter_signals: Counter[tuple[str, str]] = Counter()  # (reason, path label)
        self._unknown_path_labels: set[str] = set()
        self.catalogue = catalogue or contract.CATALOGUE
        self._checker = contract.SignalChecker(self.catalogue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flushes: asyncio.Queue[Flush] | None = None
        self._partitions: dict[str, int] = {}
        self._in_flight = 0
        self._in_flight_cv = threading.Condition()
        self._handoff: list[Inbound] = []  # paho thread -> event loop, guarded by the above
        self._connected = threading.Event()
        self._disconnected_since: float | None = time.monotonic()
        self._last_mqtt_error = "not connected yet"
        self._stopping = asyncio.Event()
        self._client: BatchedIoClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._max_future_skew_ms = settings.max_future_skew_ms
        self._shard = Shard(*settings.shard)
        if settings.mqtt_shared_group:
            log.warning("shared_subscription group=%s: the broker must hand one device's "
                        "messages to one bridge (Mosquitto hands them out in turn and reorders "
                        "them; use OWNERCARE_BRIDGE_SHARD)", settings.mqtt_shared_group)
        if self._max_future_skew_ms is None:
            log.warning("future_ts_check_off reason=OWNERCARE_BRIDGE_MAX_FUTURE_SKEW_S=0 (records "
                        "with any ts ahead of the wall clock are forwarded)")

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Run until ``stop()``; raise BridgeError when a broker stays unreachable."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._flushes = asyncio.Queue(maxsize=4)
        await wait_for_kafka(s.kafka_bootstrap, s.broker_give_up_s)
        await ensure_topics(s.kafka_bootstrap, s.partitions)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            linger_ms=0,  # we batch ourselves
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=15000,
        )
        await self._producer.start()
        try:
            for name in (topics.VEHICLES, topics.CHARGERS):
                self._partitions[name] = len(await self._producer.partitions_for(name))
            self._start_mqtt()
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(self._collect(), name="collect"),
                asyncio.create_task(self._flush_loop(), name="flush"),
                asyncio.create_task(self._watchdog(), name="watchdog"),
                asyncio.create_task(self._forward_ota_commands(), name="ota"),
                asyncio.create_task(self._stats_loop(), name="stats"),
            ]
            stop: asyncio.Task[Any] = asyncio.create_task(self._stopping.wait(), name="stop")
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if task is not stop and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self._stop_mqtt()
            await self._producer.stop()
            self._log_stats()

    def stop(self) -> None:
        self._stopping.set()

    # ---------------------------------------------------------------- MQTT side (paho thread)

    def _start_mqtt(self) -> None:
        s = self.settings
        client, connect = make_client(
            s.mqtt_url, s.mqtt_client_id, s.mqtt_protocol, persistent=True, manual_ack=True,
            receive_maximum=s.bridge_max_in_flight, batched_io=True,
        )
        assert isinstance(client, BatchedIoClient)
        client.max_inflight_messages_set(100)  # OTA commands we publish
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._client = client
        log.info("mqtt_connecting url=%s protocol=%s client_id=%s shard=%s",
                 mask_url(s.mqtt_url), s.mqtt_protocol, s.mqtt_client_id, self._shard)
        client.connect_async(**connect)
        client.loop_start()

    def _stop_mqtt(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            with self._in_flight_cv:
                self._in_flight = 0
                self._in_flight_cv.notify_all()

    def _subscriptions(self) -> list[tuple[str, int]]:
        group = self.settings.mqtt_shared_group
        prefix = f"$share/{group}/" if group else ""
        return [(prefix + t, 1) for t in contract.INBOUND_SUBSCRIPTIONS]

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._last_mqtt_error = f"connection refused: {reason}"
            log.error("mqtt_connect_refused reason=%s", reason)
            return
        self._connected.set()
        self._disconnected_since = None
        client.subscribe(self._subscriptions())
        log.info("mqtt_connected session_present=%s", getattr(flags, "session_present", None))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if self._disconnected_since is None:
            self._disconnected_since = time.monotonic()
        self._last_mqtt_error = f"disconnected: {reason}"
        log.warning("mqtt_disconnected reason=%s", reason)

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        self._last_mqtt_error = "TCP connection failed"
        log.warning("mqtt_connect_failed url=%s", mask_url(self.settings.mqtt_url))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if contract.is_outbound(msg.topic) or not self._shard.owns(msg.topic):
            # An OTA command (ours or another bridge's) seen through vehicles/#, or another
            # shard's device: acknowledge it in order with the rest, forward nothing.
            item = Inbound("", -1, None, None, 0, msg.mid, msg.qos)
        else:
            item = self._classify(msg.topic, msg.payload, msg.mid, msg.qos)
        # Backpressure: hold paho's thread (and so the socket) while too much is unacknowledged.
        with self._in_flight_cv:
            while (self._in_flight >= self.settings.bridge_max_in_flight
                   and not self._stopping.is_set()):
                self._in_flight_cv.wait(0.5)
            self._in_flight += 1
            self._handoff.append(item)

    def _classify(self, mqtt_topic: str, payload: bytes | bytearray, mid: int, qos: int,
                  ) -> Inbound:
        received_ms = int(time.time() * 1000)
        rejected: list[contract.SignalRejection] = []
        try:
            record = contract.validate(mqtt_topic, payload, self.settings.max_payload_bytes,
                                       checker=self._checker, rejected=rejected)
            contract.check_not_future(record, received_ms, self._max_future_skew_ms)
        except contract.ContractError as exc:
            letter = orjson.dumps({
                "topic": mqtt_topic,
                "reason": exc.reason.value,
                "detail": exc.detail,
                "payload_b64": base64.b64encode(payload).decode(),
                "payload_bytes": len(payload),
                "qos": qos,
                "received_ms": received_ms,  # transport metadata, not event time
            })
            return Inbound(topics.DEAD_LETTER, -1, None, letter, len(letter), mid, qos)
        letters = signal_letters(mqtt_topic, record, rejected, payload, qos, received_ms
                                 ) if rejected else ()
        if record["kind"] == "vehicle_telemetry" and not record["data"]["signals"]:
            return Inbound(topics.DEAD_LETTER, -1, None, None, 0, mid, qos, letters)
        kind = contract.Kind(record["kind"])
        kafka_topic = topics.VEHICLES if kind in contract.VEHICLE_KINDS else topics.CHARGERS
        partition = partition_for(record["id"], self._partitions[kafka_topic])
        return Inbound(kafka_topic, partition, record, None, len(payload), mid, qos, letters)

    # ---------------------------------------------------------------- Kafka side (asyncio)

    def _take_handoff(self) -> list[Inbound]:
        with self._in_flight_cv:
            items, self._handoff = self._handoff, []
        return items

    async def _collect(self) -> None:
        """Pack what paho received into flushes of at most ``batch_max`` messages.

        The event loop polls the hand-off list every HANDOFF_POLL_S instead of being woken
        per message: at fleet rates the wake-ups (a syscall each) cost more than validating
        the messages, and 5 ms is small next to the linger.
        """
        assert self._flushes is not None
        assert self._loop is not None
        linger = self.settings.bridge_linger_ms / 1000
        batch_max = self.settings.bridge_batch_max
        flush = Flush()
        deadline = 0.0
        while True:
            for item in self._take_handoff():
                if flush.count == 0:
                    deadline = self._loop.time() + linger
                flush.add(item)
                if flush.count >= batch_max:
                    await self._flushes.put(flush)
                    flush = Flush()
            if flush.count and self._loop.time() >= deadline:
                await self._flushes.put(flush)
                flush = Flush()
            await asyncio.sleep(HANDOFF_POLL_S)

    async def _flush_loop(self) -> None:
        assert self._flushes is not None
        assert self._client is not None
        while True:
            flush = await self._flushes.get()
            await self._produce(flush)
            self._client.ack_many(flush.acks)
            with self._in_flight_cv:
                self._in_flight -= len(flush.acks)
                self._in_flight_cv.notify_all()
            self.stats["acked"] += len(flush.acks)
            self.stats["flushes"] += 1

    async def _produce(self, flush: Flush) -> None:
        """Produce a flush, retrying with backoff; give up after ``broker_give_up_s``."""
        assert self._producer is not None
        first_failure: float | None = None
        delay = 0.2
        while True:
            try:
                futures = []
                for (name, partition), chunks in flush.groups.items():
                    for chunk in chunks:
                        key = chunk[0]["id"].encode() if len(chunk) == 1 else None
                        futures.append(await self._producer.send(
                            name, contract.encode_batch(chunk), key=key, partition=partition))
                for letter in flush.dead_letters:
                    futures.append(await self._producer.send(
                        topics.DEAD_LETTER, letter, key=None))
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:
                now = time.monotonic()
                first_failure = first_failure or now
                if now - first_failure > self.settings.broker_give_up_s:
                    raise BridgeError(
                        f"Kafka at {self.settings.kafka_bootstrap} did not accept writes for "
                        f"{self.settings.broker_give_up_s:.0f} s: {exc}") from exc
                log.warning("kafka_produce_failed retry_in=%.1fs error=%s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        records = sum(len(c) for chunks in flush.groups.values() for c in chunks)
        self.stats["records"] += records
        self.stats["kafka_records"] += sum(len(c) for c in flush.groups.values())
        self.stats["dead_letters"] += len(flush.dead_letters)
        for letter in flush.dead_letters:
            doc = orjson.loads(letter)
            self.dead_letter_reasons[doc["reason"]] += 1
            if "path" in doc:
                self.dead_letter_signals[(doc["reason"], self._path_label(doc["path"]))] += 1

    def _signal_counts(self) -> dict[tuple[str, str], int]:
        """Per (reason, path) dead-lettered signals; every reason a signal can have is there
        under path="_other" from the start, 0 until it happens, so rate() works at once."""
        counts = dict(self.dead_letter_signals)
        for reason in SIGNAL_REASONS:
            counts.setdefault((reason, service_metrics.OTHER_PATH), 0)
        return counts

    def _path_label(self, path: str) -> str:
        """``path`` as a metric label: bounded however many paths devices invent."""
        if path in self._checker.signals or path in self._unknown_path_labels:
            return path
        if (len(self._unknown_path_labels) < service_metrics.UNKNOWN_PATH_LABELS
                and len(path) <= 128 and PATH_RE.fullmatch(path)):
            self._unknown_path_labels.add(path)
            return path
        return service_metrics.OTHER_PATH

    async def _watchdog(self) -> None:
        limit = self.settings.broker_give_up_s
        while True:
            await asyncio.sleep(0.5)
            since = self._disconnected_since
            if since is not None and time.monotonic() - since > limit:
                raise BridgeError(
                    f"MQTT broker {mask_url(self.settings.mqtt_url)} unreachable for "
                    f"{limit:.0f} s ({self._last_mqtt_error})")

    async def _forward_ota_commands(self) -> None:
        """Kafka ``ownercare.ota.commands`` -> MQTT ``vehicles/{vin}/ota/command`` and
        ``ownercare.remote.commands`` -> ``vehicles/{vin}/commands`` (QoS 1).

        The offset is committed only after the broker acknowledged the publish.
        """
        consumer = AIOKafkaConsumer(
            topics.OTA_COMMANDS,
            topics.REMOTE_COMMANDS,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"{self.settings.mqtt_client_id}-ota",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            async for msg in consumer:
                await self._publish_command(msg.key, msg.value, msg.topic)
                await consumer.commit()
        finally:
            await consumer.stop()

    async def _publish_command(self, key: bytes | None, value: bytes | None,
                               kafka_topic: str = topics.OTA_COMMANDS) -> None:
        assert self._client is not None
        vin = (key or b"").decode(errors="replace")
        if not contract.VIN_RE.fullmatch(vin) or not value:
            log.error("ota_command_dropped reason=bad key or empty value key=%r", vin)
            self.stats["ota_commands_invalid"] += 1
            return
        mqtt_topic = (contract.remote_command_topic(vin) if kafka_topic == topics.REMOTE_COMMANDS
                      else contract.ota_command_topic(vin))
        if not self._shard.owns(mqtt_topic):
            return  # the bridge of the car's shard publishes it
        while True:
            await asyncio.to_thread(self._connected.wait)
            info = self._client.publish(mqtt_topic, value, qos=1)
            await asyncio.to_thread(info.wait_for_publish, 30)
            if info.is_published():
                remote = kafka_topic == topics.REMOTE_COMMANDS
                self.stats["remote_commands" if remote else "ota_commands"] += 1
                return
            log.warning("ota_command_retry vin=%s rc=%s", vin, info.rc)
            await asyncio.sleep(1)

    async def _stats_loop(self) -> None:
        instance = service_metrics.instance_id()
        next_log = time.monotonic() + STATS_EVERY_S
        while True:
            await asyncio.sleep(service_metrics.REPORT_EVERY_S)
            await self._report_metrics(instance)
            if time.monotonic() >= next_log:
                next_log += STATS_EVERY_S
                self._log_stats()

    def metrics_samples(self) -> list[service_metrics.Sample]:
        """The bridge's counters for GET /metrics (cumulative since this process started)."""
        m = service_metrics
        return [
            m.BRIDGE_MESSAGES.sample(self.stats["records"]),
            m.BRIDGE_KAFKA_RECORDS.sample(self.stats["kafka_records"]),
            m.BRIDGE_MESSAGES_ACKED.sample(self.stats["acked"]),
            *(m.BRIDGE_DEAD_LETTERS.sample(self.dead_letter_reasons[reason.value], reason.value)
              for reason in contract.Reason),
            *(m.BRIDGE_DEAD_LETTER_SIGNALS.sample(count, reason, path)
              for (reason, path), count in sorted(self._signal_counts().items())),
            m.BRIDGE_OTA_COMMANDS.sample(self.stats["ota_commands"]),
            m.BRIDGE_OTA_COMMANDS_DROPPED.sample(self.stats["ota_commands_invalid"]),
            m.BRIDGE_MESSAGES_IN_FLIGHT.sample(self._in_flight),
            m.BRIDGE_MQTT_CONNECTED.sample(float(self._connected.is_set())),
        ]

    async def _report_metrics(self, instance: str) -> None:
        assert self._producer is not None
        report = service_metrics.Report("bridge", instance, int(time.time() * 1000),
                                        self.metrics_samples())
        try:
            await self._producer.send(topics.SERVICE_METRICS, service_metrics.encode(report),
                                      key=instance.encode())
        except KafkaError as exc:  # metrics must never stop the bridge
            log.warning("metrics_report_failed error=%r", exc)

    def _log_stats(self) -> None:
        log.info("bridge_stats records=%s kafka_records=%s dead_letters=%s acked=%s in_flight=%s "
                 "reasons=%s signals=%s", self.stats["records"], self.stats["kafka_records"],
                 self.stats["dead_letters"], self.stats["acked"], self._in_flight,
                 dict(self.dead_letter_reasons),
                 {f"{reason}:{path}": n for (reason, path), n in self.dead_letter_signals.items()})


# Bad signals of one message dead-lettered one by one; the rest share one letter.
MAX_SIGNAL_LETTERS = 16
MAX_LETTER_VALUE_BYTES = 256
# A small message rides along in each of its signal letters (the context an operator needs
# to read one); a larger one only in the letter past MAX_SIGNAL_LETTERS, if any.
MAX_LETTER_PAYLOAD_BYTES = 1024
SIGNAL_REASONS = tuple(r.value for r in (
    contract.Reason.UNKNOWN_SIGNAL, contract.Reason.WRONG_TYPE, contract.Reason.NOT_FINITE,
    contract.Reason.OUT_OF_RANGE, contract.Reason.BAD_VALUE))


def signal_letters(mqtt_topic: str, record: dict[str, Any],
                   rejected: list[contract.SignalRejection], payload: bytes | bytearray,
                   qos: int, received_ms: int) -> tuple[bytes, ...]:
    """One dead letter per rejected signal, with its path, reason and (small) value.

    A payload above MAX_LETTER_PAYLOAD_BYTES goes only into the letter for the signals past
    MAX_SIGNAL_LETTERS, so a message's letters stay within a small multiple of its own size.
    """
    base: dict[str, Any] = {"topic": mqtt_topic, "id": record["id"], "ts": record["ts"],
                            "seq": record["seq"], "payload_bytes": len(payload), "qos": qos,
                            "received_ms": received_ms}
    if len(payload) <= MAX_LETTER_PAYLOAD_BYTES:
        base["payload_b64"] = base64.b64encode(payload).decode()
    letters = []
    for bad in rejected[:MAX_SIGNAL_LETTERS]:
        try:
            value: bytes | None = orjson.dumps(bad.value)
        except (TypeError, orjson.JSONEncodeError):
            value = None
        letter = {**base, "reason": bad.reason.value, "detail": bad.detail,
                  "path": bad.path[:256]}
        if value is not None and len(value) <= MAX_LETTER_VALUE_BYTES:
            letter["value"] = orjson.Fragment(value)
        else:
            letter["value_omitted"] = True
        letters.append(orjson.dumps(letter))
    rest = rejected[MAX_SIGNAL_LETTERS:]
    if rest:
        counts = Counter(bad.reason.value for bad in rest)
        letters.append(orjson.dumps({
            **base, "reason": contract.Reason.SIGNALS_OMITTED.value, "path": "_more",
            "detail": f"{len(rest)} more bad signals ("
                      + ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())) + ")",
            "payload_b64": base64.b64encode(payload).decode()}))
    return tuple(letters)


async def run_bridge(settings: BridgeSettings, catalogue: Catalogue | None = None) -> int:
    """Run the bridge until SIGINT/SIGTERM; return the process exit code."""
    import signal

    bridge = Bridge(settings, catalogue)
    log.info("bridge_catalogue vss=%s signals=%d overlays=%s", bridge.catalogue.release,
             len(bridge.catalogue), ",".join(bridge.catalogue.overlays) or "-")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, bridge.stop)
    try:
        await bridge.run()
    except (BridgeError, ConnectionError) as exc:
        log.error("bridge_exit reason=%s", exc)
        return 1
    return 0
