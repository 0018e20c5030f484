"""``GET /metrics``: the whole service in the Prometheus text format, from one endpoint.

* the bridge's and the worker's counters (ingest, dead letters by reason, detector records),
  read back from the ``ownercare.service-metrics`` topic each process reports to
  (see ``ingest.service_metrics``), labelled ``service`` and ``replica`` (the reporting
  process; Prometheus keeps ``instance`` for the scrape target, the API replica);
* the worker's consumer lag per topic and partition, asked of Kafka at scrape time (so it
  shows a stalled or dead worker, which could not report it itself);
* what the database knows: alerts by type, severity and status;
* under ``ownercare run``, how often it restarted each crashed service (``supervisor.json``
  in the state dir, which only ``ownercare run`` writes).

These series are the same on every API replica (they come from Kafka and the database);
dashboards aggregate them with ``max without (instance)`` before summing. The HTTP metrics
(``api.http_metrics``) and the webhook dispatcher's counters are each replica's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ingest import service_metrics, topics
from storage.models import alerts
from storage.store import Store

log = logging.getLogger(__name__)

PREFIX = "ownercare_"
STALE_AFTER_S = 120.0  # a process silent this long is gone: its series disappear
BACKLOG = 50  # reports per partition read at start-up (the newest; older ones are stale)
LAG_TOPICS = (topics.VEHICLES, topics.CHARGERS, topics.ALERTS)
KAFKA_TIMEOUT_S = 3.0


class ServiceReports:
    """The newest report of every (service, instance), kept current by a Kafka consumer."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.time) -> None:
        self.bootstrap = bootstrap
        self.clock = clock
        self.latest: dict[tuple[str, str], service_metrics.Report] = {}
        self.rejected = 0

    def add(self, raw: bytes) -> None:
        try:
            report = service_metrics.decode(raw)
        except ValueError as exc:
            self.rejected += 1
            log.warning("service_report_rejected error=%s", exc)
            return
        key = (report.service, report.instance)
        held = self.latest.get(key)
        if held is None or report.sent_at_ms >= held.sent_at_ms:
            self.latest[key] = report

    def current(self) -> list[service_metrics.Report]:
        horizon_ms = (self.clock() - STALE_AFTER_S) * 1000
        return [r for r in self.latest.values() if r.sent_at_ms >= horizon_ms]

    async def follow(self) -> None:
        """Read the topic for ever (reconnecting); cancel to stop."""
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False)
            try:
                await consumer.start()
                partitions = consumer.partitions_for_topic(topics.SERVICE_METRICS) or set()
                if not partitions:  # not created yet: the first bridge or worker creates it
                    await asyncio.sleep(5)
                    continue
                tps = [TopicPartition(topics.SERVICE_METRICS, p) for p in sorted(partitions)]
                consumer.assign(tps)
                ends = await consumer.end_offsets(tps)
                starts = await consumer.beginning_offsets(tps)
                for tp in tps:
                    consumer.seek(tp, max(starts[tp], ends[tp] - BACKLOG))
                while True:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for messages in batch.values():
                        for message in messages:
                            if message.value:
                                self.add(message.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: /metrics serves what it has meanwhile
                log.warning("service_reports_reconnect error=%r", exc)
                await asyncio.sleep(2)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()


async def consumer_lag(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """End offset minus committed offset of ``group``, per (topic, partition) it committed.

    Asks the group coordinator for committed offsets without joining the group.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, max_partition_fetch_bytes=1024,
                                fetch_max_wait_ms=100)
    try:
        await consumer.start()
        tps = [TopicPartition(t, p) for t in LAG_TOPICS
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        committed = {tp: c for tp in tps if (c := await consumer.committed(tp)) is not None}
        ends = await fetched_highwaters(consumer, committed)
        return {(tp.topic, tp.partition): max(0, ends[tp] - offset)
                for tp, offset in committed.items() if tp in ends}
    finally:
        await consumer.stop()


async def fetched_highwaters(consumer: AIOKafkaConsumer, at: dict[TopicPartition, int],
                             within_s: float = 5.0) -> dict[TopicPartition, int]:
    """Each partition's high watermark as a Fetch from offset ``at[tp]`` reports it.

    Not ListOffsets (``end_offsets``): Tansu 0.6 answers it with one past the *first* offset
    of the batch it wrote last, short by the rest of that batch (on an S3 store with
    whole-second object times, thousands of records short); its Fetch responses carry the
    true high watermark.
    """
    if not at:
        return {}
    consumer.assign(list(at))
    for tp, offset in at.items():
        consumer.seek(tp, offset)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(consumer.highwater(tp) is not None for tp in at):
            break
        await consumer.getmany(timeout_ms=200, max_records=1)
    return {tp: high for tp in at if (high := consumer.highwater(tp)) is not None}


def supervisor_status(state_dir: Path) -> dict[str, dict[str, int | None]]:
    """``ownercare run``'s record of each service: restarts, last_exit_status,
    last_restart_wall_ms, pid. Empty when the file is absent (not under ``ownercare run``)
    or unreadable: it is replaced atomically, so unreadable means not ours."""
    try:
        raw = json.loads((state_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    fields = ("restarts", "last_exit_status", "last_restart_wall_ms", "pid")
    status: dict[str, dict[str, int | None]] = {}
    for service, entry in raw.items():
        if isinstance(entry, dict) and isinstance(entry.get("restarts"), int):
            status[str(service)] = {f: v if isinstance(v := entry.get(f), int) else None
                                    for f in fields}
    return status


def restart_metrics(state_dir: Path) -> list[Metric]:
    family = CounterMetricFamily(PREFIX + "service_restarts",
                                 "times `ownercare run` restarted a crashed service",
                                 labels=["service"])
    for service, entry in sorted(supervisor_status(state_dir).items()):
        family.add_metric([service], float(entry["restarts"] or 0))
    return [family]


def alert_counts(store: Store) -> list[tuple[str, str, str, int]]:
    query = (select(alerts.c.type, alerts.c.severity, alerts.c.status, func.count())
             .group_by(alerts.c.type, alerts.c.severity, alerts.c.status))
    with store.engine.connect() as conn:
        return [(t, sev, st, int(n)) for t, sev, st, n in conn.execute(query)]


class Snapshot(Collector):
    """One scrape's figures, gathered beforehand (collect() itself must not block)."""

    def __init__(self, reports: list[service_metrics.Report],
                 lag: dict[tuple[str, int], int] | None, group: str,
                 alert_rows: list[tuple[str, str, str, int]], now_s: float,
                 extra: list[Metric] | None = None) -> None:
        self.reports, self.lag, self.group = reports, lag, group
        self.alert_rows, self.now_s, self.extra = alert_rows, now_s, extra or []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Any] = {}
        for report in sorted(self.reports, key=lambda r: (r.service, r.instance)):
            for sample in report.samples:
                name = PREFIX + sample.name
                label_names = ["service", "replica", *(k for k, _ in sample.labels)]
                family = families.get(name)
                if family is None:
                    cls = CounterMetricFamily if sample.kind == "counter" else GaugeMetricFamily
                    family = families[name] = cls(name, sample.help or sample.name,
                                                  labels=label_names)
                family.add_metric([report.service, report.instance,
                                   *(v for _, v in sample.labels)], sample.value)
        yield from families.values()
        age = GaugeMetricFamily(PREFIX + "service_report_age_seconds",
                                "seconds since each process last reported its counters",
                                labels=["service", "replica"])
        for report in self.reports:
            age.add_metric([report.service, report.instance],
                           max(0.0, self.now_s - report.sent_at_ms / 1000))
        yield age
        up = GaugeMetricFamily(PREFIX + "kafka_lag_available",
                               "1 when Kafka answered the consumer-lag query of this scrape")
        up.add_metric([], 0.0 if self.lag is None else 1.0)
        yield up
        lag = GaugeMetricFamily(PREFIX + "consumer_lag_records",
                                "records not yet processed by the worker's consumer group",
                                labels=["group", "topic", "partition"])
        for (topic, partition), n in sorted((self.lag or {}).items()):
            lag.add_metric([self.group, topic, str(partition)], n)
        yield lag
        alert_family = GaugeMetricFamily(PREFIX + "alerts", "alerts in the database",
                                         labels=["type", "severity", "status"])
        for alert_type, severity, status, n in sorted(self.alert_rows):
            alert_family.add_metric([alert_type, severity, status], n)
        yield alert_family
        yield from self.extra
