"""The view writer: telemetry into the API's views, from a child process of the worker.

What it writes, once per ``OWNERCARE_LATEST_FLUSH_S`` (coalesced): the latest value per signal
of every vehicle and charger (``GET /vehicles/{vin}``, ``/chargers/{id}``), the vehicles' daily
health indicators (``diagnostics/daily.py``), the chargers' charging sessions
(``diagnostics/charging.py``) and the cars' OTA status reports (``ota/store.py``).

Why a process of its own, with a Kafka consumer of its own
----------------------------------------------------------
At 10 000 vehicles a flush decodes, merges and upserts about 100 000 messages, roughly a
second and a half of CPU in one go. As a Faust agent with the write in a thread, it held the
detectors' GIL at every flush and set them back by seconds (``ownercare bench --vehicles 10000
--rate 1 --duration 120``: publish->alert p99 4.4 s; 0.98 s with the flush switched off). And
an agent that acknowledges its records only after the write must hold every record of the
interval in the worker: with the records shipped to a helper process, the worker's memory grew
with the interval (920 MiB at 10 s). This process reads the topics itself (consumer group
``<OWNERCARE_WORKER_APP_ID>-views``), merges each record as it arrives (memory follows the
fleet's size, not the interval) and runs on the other core.

Delivery: at least once. The consumer's offsets are committed only after the write, so a crash
of either process (or a rebalance) rereads the records since the last flush. Rereading is
harmless: the upserts keep the newest value per signal, sessions are keyed by their start;
daily aggregates count a reread reading again (``diagnostics/daily.py``).

Lifecycle: the worker starts this process with its agents, checks every few seconds that it is
alive (a dead one is logged and started again) and stops it on shutdown: the process then
writes what it has merged, commits and leaves its group. If the worker is killed outright, this
process notices within a second and exits without writing (its records are reread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api import views
from api.store import Store
from diagnostics.daily import DailyIndicators
from diagnostics.pipeline import LatestValues
from ingest import topics
from ingest.contract import decode_batch
from ota import store as ota_store

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0  # how often the child looks whether the worker is still there
STOP_TIMEOUT_S = 30.0  # a final flush at 10 000 vehicles takes a few seconds


@dataclass(frozen=True)
class ViewConfig:
    """What the child needs (plain values: it is pickled into a spawned process)."""

    kafka_bootstrap: str
    group_id: str
    database_url: str
    case_sla_hours: Mapping[str, float] = field(default_factory=dict)
    flush_s: float = 10.0
    fetch_max_wait_ms: int = 100
    log_level: str = "INFO"
    vehicle_topic: str = topics.VEHICLES
    charger_topic: str = topics.CHARGERS


class ViewWriter:
    """The worker's handle on the view writer process."""

    def __init__(self, config: ViewConfig) -> None:
        self.config = config
        self._process: Any = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        # spawn, not fork: the worker has threads (Kafka client, executors), and a forked copy
        # of their locks can deadlock the child.
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=run_child, args=(self.config, os.getpid()),
                                        name="ownercare-views", daemon=False)
        self._process.start()
        log.info("view_writer_started pid=%s group=%s", self._process.pid, self.config.group_id)

    def ensure_running(self) -> None:
        """Start the process again if it died (its unwritten records are reread)."""
        if self._process is not None and not self._process.is_alive():
            log.error("view_writer_died pid=%s exitcode=%s: starting a new one",
                      self._process.pid, self._process.exitcode)
            self.restarts += 1
            self.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask the process to write, commit and leave (SIGTERM); kill it after ``timeout_s``."""
        process, self._process = self._process, None
        if process is None or not process.is_alive():
            return
        process.terminate()
        process.join(timeout_s)
        if process.is_alive():
            log.error("view_writer_stop_timeout pid=%s: killed", process.pid)
            process.kill()
            process.join()


# ------------------------------------------------------------------------- the merging


class ViewBatch:
    """The views' changes of the records added since the last ``write``, merged on arrival."""

    def __init__(self, daily: DailyIndicators, vehicle_topic: str = topics.VEHICLES) -> None:
        self.daily = daily  # long-lived: it keeps each vehicle's key-off clock
        self.latest = LatestValues()
        self.charger_records: list[dict[str, Any]] = []
        self.ota_reports: list[dict[str, Any]] = []
        self.kafka_records = 0
        self.vehicle_topic = vehicle_topic

    def add(self, topic: str, raw: bytes) -> None:
        """One Kafka record (a bridge batch) of the vehicle or the charger topic."""
        records = decode(raw)
        self.kafka_records += 1
        self.latest.add(records)
        if topic == self.vehicle_topic:
            self.daily.add(records)
            self.ota_reports += [r for r in records if r["kind"] == "vehicle_ota_status"]
        else:
            self.charger_records.extend(records)

    def write(self, store: Store) -> None:
        """Latest values, daily indicators, charging sessions, OTA reports: a few statements."""
        rows = self.latest.drain()
        # Drained before any write: a failed write must not leave these readings pending in
        # memory, to be counted again with the reread records.
        daily_rows = self.daily.drain()
        if rows:
            store.upsert_signals(rows)
        if daily_rows:
            views.upsert_daily_indicators(store, daily_rows)
        if self.charger_records:
            views.track_charging_sessions(store, self.charger_records)
        if self.ota_reports:
            ota_store.apply_reports(store, self.ota_reports)


def decode(raw: bytes) -> list[dict[str, Any]]:
    try:
        return decode_batch(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        # Only the bridge writes these topics; a bad record is a bug or a foreign producer.
        log.error("record_batch_undecodable error=%s bytes=%s", exc, len(raw))
        return []


# ------------------------------------------------------------------------- the child process


def run_child(config: ViewConfig, parent: int) -> None:  # pragma: no cover - child process
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Ctrl-C reaches the whole process group: the worker stops first and then stops this
    # process (SIGTERM), so a flush is finished and committed, not interrupted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True,
                     name="views-parent-watch").start()
    asyncio.run(consume(config))


def _exit_with(parent: int) -> None:  # pragma: no cover - child process
    """A worker killed outright never stops this process: do not outlive it."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


async def consume(config: ViewConfig, stopping: asyncio.Event | None = None) -> None:
    """Read both telemetry topics and write the views every ``flush_s`` until SIGTERM (or
    ``stopping``), then write what is merged, commit and leave the group."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import CommitFailedError, KafkaError

    loop = asyncio.get_running_loop()
    stopping = stopping or asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
    store = Store(config.database_url, case_sla_hours=config.case_sla_hours)
    daily = DailyIndicators()
    consumer = AIOKafkaConsumer(
        config.vehicle_topic, config.charger_topic,
        bootstrap_servers=config.kafka_bootstrap, group_id=config.group_id,
        enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        # As the worker's Faust consumer: Tansu rebalances slowly when a member vanishes.
        session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
    await consumer.start()
    log.info("view_writer_consuming group=%s flush_s=%s", config.group_id, config.flush_s)
    try:
        while not stopping.is_set():
            batch = ViewBatch(daily, config.vehicle_topic)
            deadline = loop.time() + config.flush_s
            while not stopping.is_set() and (left := deadline - loop.time()) > 0:
                fetched = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000) + 1)
                for tp, messages in fetched.items():
                    for message in messages:
                        batch.add(tp.topic, message.value or b"")
            if batch.kafka_records == 0:
                continue
            # Off the event loop, so the consumer keeps its heartbeats while SQL runs.
            await asyncio.to_thread(batch.write, store)
            try:
                await consumer.commit()
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took partitions away mid-flush: their new owner rereads them.
                log.warning("view_writer_commit_failed error=%r", exc)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        store.close()
