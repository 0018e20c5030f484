"""The telemetry archive: canonical records from Kafka -> InfluxDB (influxdb-client).

Every valid vehicle and charger record becomes one point, stamped with its event time:

* measurement ``vehicle``: tags ``vin`` and ``model`` (once the vehicle has reported
  ``Vehicle.VehicleIdentification.Model``, which cars send when they wake; until then, and
  after an archive restart until the next wake-up, points carry only ``vin``), one field per
  VSS signal named after its path without
  the ``Vehicle.`` root (``LowVoltageBattery.CurrentVoltage``, units as in the VSS catalogue),
  every signal the bridge accepted, standard or private; numbers are float fields (integer
  VSS types too), list-valued signals (cell voltages) are not archived as fields.
* measurement ``vehicle_event``: tags ``vin``, ``type``; the event's fields.
* measurement ``charger``: tags ``charger_id``, ``connector``; OCPP status / error code and the
  MeterValues measurands as fields.
* measurement ``alert``: tags ``asset_id``, ``type``, ``severity``, ``status``; annotation
  fields ``title`` and ``id``, stamped with the alert's last_seen.

Delivery: the consumer commits its Kafka offsets only after InfluxDB accepted the whole batch;
while InfluxDB is down it retries with backoff and reads nothing more (the batch in hand is
the bounded buffer), so an outage delays the archive and loses nothing. A redelivered batch
rewrites the same points (same series, same timestamp), which InfluxDB treats as one point.
Detection never waits for the archive: it is its own consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from config.settings import ArchiveSettings, mask_url
from ingest import topics
from ingest.contract import decode_batch

log = logging.getLogger(__name__)
STATS_EVERY_S = 30.0


MODEL = "Vehicle.VehicleIdentification.Model"


def points_for_record(record: dict[str, Any], models: dict[str, str] | None = None
                      ) -> Iterator[Point]:
    """Points for one canonical record; ``models`` (VIN -> model, learned from the records
    that report it) adds the ``model`` tag once a vehicle has told us its model."""
    kind, asset, ts, data = record["kind"], record["id"], record["ts"], record["data"]
    models = {} if models is None else models
    if kind == "vehicle_telemetry":
        if isinstance(data["signals"].get(MODEL), str):
            models[asset] = data["signals"][MODEL]
        point = Point("vehicle").tag("vin", asset).time(ts, WritePrecision.MS)
        if asset in models:
            point.tag("model", models[asset])
        fields = 0
        for path, value in data["signals"].items():
            if isinstance(value, list) or path == MODEL:
                continue
            if type(value) is int:
                # One field type per signal whatever the catalogue says: InfluxDB refuses a
                # batch whose field changes type (an overlay or a VSS release moving a signal
                # between integer and float types would stop the archive).
                value = float(value)
            point.field(path.removeprefix("Vehicle."), value)
            fields += 1
        if fields:
            yield point
    elif kind == "vehicle_event":
        point = (Point("vehicle_event").tag("vin", asset).tag("type", data["type"])
                 .time(ts, WritePrecision.MS).field("seq", record["seq"]))
        for name, value in data.items():
            if name != "type":
                point.field(name, value)
        yield point
    elif kind == "charger_status":
        yield (Point("charger").tag("charger_id", asset).tag("connector", data["connectorId"])
               .field("status", data["status"]).field("errorCode", data["errorCode"])
               .time(ts, WritePrecision.MS))
    elif kind == "charger_meter":
        point = (Point("charger").tag("charger_id", asset).tag("connector", data["connectorId"])
                 .time(ts, WritePrecision.MS))
        for name, value in data["measurands"].items():
            point.field(name, value)
        yield point


def point_for_alert(alert: dict[str, Any]) -> Point:
    point: Point = (Point("alert").tag("asset_id", alert["asset_id"]).tag("type", alert["type"])
            .tag("severity", alert["severity"]).tag("status", alert["status"])
            .field("title", alert["title"]).field("id", alert["id"])
            .time(alert["last_seen"], WritePrecision.MS))
    return point


def points_for_messages(messages: Iterable[tuple[str, bytes]],
                        models: dict[str, str] | None = None) -> list[Point]:
    points: list[Point] = []
    for topic, value in messages:
        try:
            if topic == topics.ALERTS:
                points.append(point_for_alert(orjson.loads(value)))
            else:
                for record in decode_batch(value):
                    points.extend(points_for_record(record, models))
        except (ValueError, KeyError, TypeError) as exc:
            # Only ownercare writes these topics; a record it cannot read is logged, not
            # retried forever (it would block the archive).
            log.error("archive_record_unreadable topic=%s error=%s", topic, exc)
    return points


class Archive:
    def __init__(self, settings: ArchiveSettings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self.points_written = 0
        self.lag = 0
        # VIN -> model as reported by the vehicles; bounded by the fleet size.
        self.models: dict[str, str] = {}

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            topics.VEHICLES, topics.CHARGERS, topics.ALERTS,
            bootstrap_servers=s.kafka_bootstrap, group_id=s.archive_group,
            enable_auto_commit=False, auto_offset_reset="earliest",
        )
        client = InfluxDBClientAsync(url=s.influx_url, token=s.influx_token.get_secret_value(),
                                     org=s.influx_org, timeout=10_000)
        write_api = client.write_api()
        log.info("archive_started influx=%s bucket=%s", mask_url(s.influx_url), s.influx_bucket)
        next_stats = time.monotonic() + STATS_EVERY_S
        try:
            await consumer.start()
            while not self.stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=s.archive_batch_max)
                messages = [(m.topic, m.value) for msgs in batches.values() for m in msgs
                            if m.value is not None]
                if messages:
                    points = points_for_messages(messages, self.models)
                    if not await self._write(write_api, points):
                        break  # stopping during an outage: offsets stay uncommitted
                    await consumer.commit()
                    self.points_written += len(points)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + STATS_EVERY_S
                    self.lag = await self._lag(consumer)
                    log.info("archive_stats points_written=%s lag_records=%s",
                             self.points_written, self.lag)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            await client.close()

    async def _write(self, write_api: Any, points: list[Point]) -> bool:
        """Write until InfluxDB accepts; False if asked to stop first."""
        delay = 0.5
        while True:
            try:
                if points:
                    await write_api.write(bucket=self.settings.influx_bucket,
                                          record=points, write_precision=WritePrecision.MS)
                return True
            except Exception as exc:  # the client raises many kinds; all mean "not written"
                log.warning("archive_write_failed points=%s retry_in=%.1fs error=%s",
                            len(points), delay, str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return False
            delay = min(delay * 2, self.settings.archive_retry_max_s)

    @staticmethod
    async def _lag(consumer: AIOKafkaConsumer) -> int:
        partitions: set[TopicPartition] = consumer.assignment()
        if not partitions:
            return 0
        ends = await consumer.end_offsets(list(partitions))
        lag = 0
        for tp in partitions:
            with contextlib.suppress(Exception):
                lag += max(0, ends[tp] - await consumer.position(tp))
        return lag


async def run_archive(settings: ArchiveSettings) -> int:
    import signal

    if not settings.influx_url:
        log.error("archive_off reason=OWNERCARE_INFLUX_URL is not set")
        return 2
    archive = Archive(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, archive.stopping.set)
    await archive.run()
    return 0
