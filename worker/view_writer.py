"""The view writer: telemetry into the API's views, in a child process of the worker.

What it writes, once per ``OWNERCARE_LATEST_FLUSH_S`` (coalesced): the latest value per signal
of every vehicle and charger (``GET /vehicles/{vin}``, ``/chargers/{id}``), the vehicles' daily
health indicators (``diagnostics/daily.py``), the chargers' charging sessions
(``diagnostics/charging.py``), the cars' OTA status reports (``storage/ota.py``) and their
answers to remote commands (``storage/commands.py``). The daily trend of every numeric signal
goes out once per ``OWNERCARE_TREND_FLUSH_S`` (a minute): it is one row per vehicle and signal
(200 000 at 10 000 cars) however long its readings gather, and writing it every ten seconds
cost more CPU than all the rest of the views together.

Why a process
-------------
At 10 000 vehicles a flush decodes, merges and upserts about 100 000 messages, roughly a
second and a half of CPU in one go. As a Faust agent with the write in a thread it held the
detectors' GIL at every flush and set them back by seconds (``ownercare bench --vehicles 10000
--rate 1 --duration 120``: publish->alert p99 4.4 s; 0.98 s with the flush switched off). The
child has its own interpreter, so decoding, merging and writing run on the other core.

How records get there, and why nothing is lost
----------------------------------------------
The detecting agents (``diagnose`` for vehicles, ``charger-silence`` for chargers) hand each
Kafka record's raw bytes to ``add`` as they process it; every ``SHIP_EVERY_S`` the bytes
gathered go to the child, which decodes and merges them at once, and every ``flush_s`` the
child writes. The worker holds no records for the interval, and the records come from the
detectors' own consumer (a second consumer of the topics doubled the embedded broker's work:
at 10 000 vehicles Tansu went from 0.2 to 0.55 of a core over 5 minutes and the pipeline fell
behind).

While the child writes, it merges nothing, and the worker gathers on; a worker working off a
backlog processes several times the live rate, so a long write would let it gather without
bound. Past ``backlog_bytes`` of gathered record bytes the agent that adds therefore waits in
``keep_up`` until they are shipped, that is until the write in progress is done. The
detectors then go at the views' pace, their consumer stops fetching once its buffer is full,
and the backlog waits in Kafka rather than in memory. The child's own share grows with what
it merges between two writes: the message rate, which is at most the detectors', times
``flush_s``. (Writing early instead, to bound that too, made the agents wait for every write:
``docs/benchmarks.md``.)

Delivery is at least once through the detectors' checkpoints: ``durable(topic, partition)`` is
the last offset whose view effects are written, and the agents' tables never checkpoint a
position beyond it (``CheckpointedTable(cap=...)``). A restarted worker replays from that
position; the views get the records again (upserts keep the newest value, sessions and OTA
reports are idempotent, daily aggregates count a replayed reading again, see
``diagnostics/daily.py``) and the detectors drop those they already hold. If the child dies,
a new one starts and the worker reads the records since the last durable offsets back from
Kafka into it (as the detectors' catch-up does), so a lost child loses nothing either.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from diagnostics.daily import DailyIndicators
from diagnostics.pipeline import LatestValues
from ingest import topics
from ingest.contract import decode_batch
from storage import commands as command_store
from storage import ota as ota_store
from storage import views
from storage.store import Store

log = logging.getLogger(__name__)

SHIP_EVERY_S = 0.5  # how often gathered records go to the child (bytes; a pipe write)
PARENT_CHECK_S = 1.0  # how often the child looks whether the worker is still there
ReadRange = Callable[[str, int, int, int], AsyncIterator[tuple[int, bytes]]]


@dataclass(frozen=True)
class ViewConfig:
    """What the child needs (plain values: it is pickled into a spawned process)."""

    database_url: str
    case_sla_hours: Mapping[str, float] = field(default_factory=dict)
    flush_s: float = 10.0
    vehicle_topic: str = topics.VEHICLES  # any other topic's records are the chargers'


class ViewWriter:
    """The worker's side: gathers raw records, ships them, asks for writes, tracks what is
    durable. Runs on the worker's event loop; the child is one ``ProcessPoolExecutor`` worker
    (tasks run one at a time, in the order they were sent)."""

    def __init__(self, config: ViewConfig, read_range: ReadRange,
                 backlog_bytes: int = 64 << 20) -> None:
        if backlog_bytes <= 0:
            raise ValueError(f"view writer backlog must be > 0 bytes, got {backlog_bytes}")
        self.config = config
        self.read_range = read_range  # (topic, partition, start, end) -> (offset, raw)...
        self.backlog_bytes = backlog_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._gathered: list[tuple[str, bytes]] = []
        self._gathered_bytes = 0
        self.waits = 0  # times ``keep_up`` made an agent wait
        self._added: dict[tuple[str, int], int] = {}  # newest offset given to add()
        self._shipped: dict[tuple[str, int], int] = {}  # newest offset sent to the child
        self._durable: dict[tuple[str, int], int] = {}  # newest offset written by the child
        self.pid: int | None = None
        self.restarts = 0

    def add(self, topic: str, partition: int, offset: int, raw: bytes) -> None:
        """A record the agent just processed (cheap: kept until the next ship)."""
        self._gathered.append((topic, raw))
        self._gathered_bytes += len(raw)
        key = (topic, partition)
        if offset > self._added.get(key, -1):
            self._added[key] = offset

    def gathered_bytes(self) -> int:
        """Record bytes added and not shipped to the child yet."""
        return self._gathered_bytes

    async def keep_up(self) -> None:
        """Called by an agent after ``add``: past the backlog bound, ship now and wait for it
        (behind the child's write in progress, if there is one)."""
        if self._gathered_bytes < self.backlog_bytes:
            return
        self.waits += 1
        await self.ship()

    def durable(self, topic: str, partition: int) -> int | None:
        return self._durable.get((topic, partition))

    async def start(self) -> None:
        async with self._lock:
            self.pid = await self._run(os.getpid)

    async def ship(self) -> None:
        """Send what was gathered to the child (it merges it at once)."""
        async with self._lock:
            await self._ship()

    async def flush(self, trends: bool = False) -> None:
        """Ship, then have the child write (with ``trends``, the per-signal daily trends
        too); what was shipped before is durable after. The signal trends merged since the
        last trend write are not: a crash loses them (at most ``OWNERCARE_TREND_FLUSH_S`` of
        readings in a day's trend). Holding the durable offsets back to trend writes instead
        would make every restart replay up to that much, and the detectors' checkpoints wait
        for it."""
        async with self._lock:
            await self._ship()
            shipped = dict(self._shipped)
            try:
                await self._run(_child_write, trends)
            except BrokenProcessPool:
                raise
            except Exception:
                # The database refused the write (away, locked for too long). The child's
                # failed batch is gone: read its records back from Kafka for the next flush.
                await self._reread()
                raise
            self._durable.update(shipped)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _ship(self) -> None:
        if not self._gathered:
            return
        chunk, self._gathered = self._gathered, []
        self._gathered_bytes = 0
        added = dict(self._added)
        await self._run(_child_add, chunk)
        self._shipped.update(added)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._started(), fn, *args)
        except BrokenProcessPool:
            # The child died (killed, out of memory) with what it had merged: a new one gets
            # every record since the last write back from Kafka, then this call again.
            log.error("view_writer_died pid=%s: starting a new one and rereading", self.pid)
            self._pool = None
            self.restarts += 1
            self.pid = await loop.run_in_executor(self._started(), os.getpid)
            await self._reread()
            return await loop.run_in_executor(self._started(), fn, *args)

    async def _reread(self) -> None:
        """Give the child every record since the last durable offsets again. The signal
        trends it still holds include those records: they go first, or the reread ones
        would count twice (the readings merged before them are lost with them)."""
        loop = asyncio.get_running_loop()
        pool = self._started()
        await loop.run_in_executor(pool, _child_forget_trends)
        for (topic, partition), last in sorted(self._shipped.items()):
            start = self._durable.get((topic, partition), -1) + 1
            chunk: list[tuple[str, bytes]] = []
            async for _offset, raw in self.read_range(topic, partition, start, last + 1):
                chunk.append((topic, raw))
                if len(chunk) >= 1000:
                    await loop.run_in_executor(pool, _child_add, chunk)
                    chunk = []
            if chunk:
                await loop.run_in_executor(pool, _child_add, chunk)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the worker has threads (Kafka client, executors), and a forked
            # copy of their locks can deadlock the child.
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start, initargs=(self.config, os.getpid()))
        return self._pool


# ------------------------------------------------------------------------- the merging


class ViewBatch:
    """The views' changes of the records added since the last ``write``, merged on arrival."""

    def __init__(self, daily: DailyIndicators, vehicle_topic: str = topics.VEHICLES) -> None:
        self.daily = daily  # long-lived: it keeps each vehicle's key-off clock
        self.latest = LatestValues()
        self.charger_records: list[dict[str, Any]] = []
        self.ota_reports: list[dict[str, Any]] = []
        self.command_reports: list[dict[str, Any]] = []
        self.vehicle_topic = vehicle_topic

    def add(self, topic: str, raw: bytes) -> None:
        """One Kafka record (a bridge batch) of the vehicle or the charger topic."""
        records = decode(raw)
        self.latest.add(records)
        if topic == self.vehicle_topic:
            self.daily.add(records)
            self.ota_reports += [r for r in records if r["kind"] == "vehicle_ota_status"]
            self.command_reports += [r for r in records
                                     if r["kind"] == "vehicle_command_result"]
        else:
            self.charger_records.extend(records)

    def write(self, store: Store, trends: bool = True) -> None:
        """Latest values, daily indicators (with ``trends``, every signal's too), charging
        sessions, OTA reports: a few statements."""
        rows = self.latest.drain()
        # Drained before any write: a failed write must not leave these readings pending in
        # memory, to be counted again with the reread records.
        daily_rows = self.daily.drain(signals=trends)
        # OTA reports before the telemetry: a car's newer telemetry in the store then means
        # its earlier reports are there too (what the OTA engine expires an offer on).
        if self.ota_reports:
            ota_store.apply_reports(store, self.ota_reports)
        if self.command_reports:
            command_store.apply_reports(store, self.command_reports)
        if rows:
            store.upsert_signals(rows)
        if daily_rows:
            views.upsert_daily_indicators(store, daily_rows)
        if self.charger_records:
            views.track_charging_sessions(store, self.charger_records)


def decode(raw: bytes) -> list[dict[str, Any]]:
    try:
        return decode_batch(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        # Only the bridge writes these topics; a bad record is a bug or a foreign producer.
        log.error("record_batch_undecodable error=%s bytes=%s", exc, len(raw))
        return []


# ------------------------------------------------------------------------- in the child

_store: Store | None = None
_batch: ViewBatch | None = None


def _child_start(config: ViewConfig, parent: int) -> None:  # pragma: no cover - child
    global _store, _batch
    # Ctrl-C reaches the whole process group: the worker stops first and then shuts this
    # process down, so a write in progress is finished, not interrupted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True,
                     name="view-writer-parent").start()
    _store = Store(config.database_url, case_sla_hours=config.case_sla_hours)
    _batch = ViewBatch(DailyIndicators(), config.vehicle_topic)


def _exit_with(parent: int) -> None:  # pragma: no cover - runs in the child
    """A worker killed outright never shuts its pool down, and a pool process waiting for
    work does not notice: do not outlive the worker (what was merged is replayed)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _child_add(chunk: list[tuple[str, bytes]]) -> int:  # pragma: no cover - child
    assert _batch is not None, "the child was not started"
    for topic, raw in chunk:
        _batch.add(topic, raw)
    return os.getpid()


def _child_write(trends: bool) -> int:  # pragma: no cover - child
    global _batch
    assert _store is not None, "the child was not started"
    assert _batch is not None, "the child was not started"
    batch, _batch = _batch, ViewBatch(_batch.daily, _batch.vehicle_topic)
    batch.write(_store, trends)
    return os.getpid()


def _child_forget_trends() -> int:  # pragma: no cover - child
    assert _batch is not None, "the child was not started"
    _batch.daily.forget_signal_trends()
    return os.getpid()
