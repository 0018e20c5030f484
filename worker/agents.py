"""The Faust app of ``ownercare worker``: thin agents around the pure pipeline.

* ``diagnose``: vehicle record batches -> detectors (state in the changelogged table
  ``vehicle-diagnostics``) -> alert upserts on ``ownercare.alerts``. Alerts are delivered
  before the states that produced them are written, and the table also records the last
  applied offset per partition: a restarted worker whose recovered table is older than its
  committed offset replays the gap first (see ``diagnostics/pipeline.py``).
* ``diagnose-charger``: charger record batches -> charger detectors (state in the changelogged
  table ``charger-diagnostics``, same delivery order, positions and catch-up as ``diagnose``)
  -> alert upserts; and every charging session that finished -> ``ownercare.charging-outcomes``
  (sent, like the alerts, before the states that record them). ``diagnose`` sends the cars'
  own accounts of their public sessions there too (``attribution.car_accounts``).
* ``attribute-charging``: the fleet's session outcomes (one partition), held until both
  streams have passed them and taken in event-time order (``diagnostics/attribution_order.py``:
  both producers send clock ticks after their items) -> charging-fault attribution
  (``diagnostics/attribution.py``, state in ``charging-attribution``, same rules) ->
  ``charger_fault`` / ``charging_inlet_fault`` alert upserts.
* not an agent: the view writer (``worker/view_writer.py``), a child process that gets
  the records ``diagnose`` and ``charger-silence`` process and writes the newest value per
  signal for the API's views, the daily health indicators, the charging sessions and the OTA
  reports; those agents' checkpoints wait for its writes.
* ``charger-silence``: charger record batches -> the charger detector that sweeps, silence
  (``charger_silent``, ``diagnostics/charger_silence.py``; state, sweep clocks and positions
  in the changelogged table ``charger-silence``, same delivery order and catch-up as
  ``diagnose``). Vehicle silence runs inside ``diagnose``: its sweeps follow each
  partition's event time (``diagnostics/pipeline.py``).
* ``alert-sink``: alert upserts -> database (idempotent by alert id).

The four stateful agents write their tables at checkpoints (``worker/checkpoint.py``,
``OWNERCARE_STATE_CHECKPOINT_S``): in memory at once, to the changelog once per interval and
partition, the position last; a restarted worker replays the records after it.

Progress counters (records, newest event time processed, detector state size) are logged every
30 s and served as JSON at ``/ownercare/stats/`` on the Faust web port when it is enabled;
``ownercare bench`` reads them there.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import faust
import orjson
from faust.types import TP

from config.settings import WorkerSettings
from diagnostics.attribution import car_accounts
from diagnostics.attribution_order import CAR, CHARGER, ClockTicks, OrderedAttribution
from diagnostics.charger_pipeline import ChargerPipeline
from diagnostics.charger_silence import ChargerSilencePipeline
from diagnostics.pipeline import (
    VehiclePipeline,
    catch_up_from,
    position_key,
)
from ingest import service_metrics, topics
from ingest.kafka import read_range
from storage.store import Store
from worker.applied_offsets import AppliedOffsets
from worker.changelog_marks import ChangelogMarks
from worker.checkpoint import CheckpointedTable, PositionCap
from worker.generic import Generic, Positions
from worker.tail_guard import TailGuard
from worker.view_writer import SHIP_EVERY_S, ViewConfig, ViewWriter
from worker.view_writer import decode as _decode

log = logging.getLogger(__name__)

# Tansu (embedded) rebalances slowly when a member vanishes; fail over faster. A dead worker's
# partitions (and the leadership: OTA steps, remote commands) move once the session expired.
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_S = 1.0


def create_app(settings: WorkerSettings, store: Store | None = None) -> faust.App:
    store = store or Store(settings.effective_database_url, case_sla_hours=settings.case_sla)
    limit_fetch_wait(settings.kafka_fetch_max_wait_ms)
    partitions = settings.partitions
    app = faust.App(
        settings.worker_app_id,
        broker=settings.kafka_url,
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Faust's local data (table metadata) goes with the rest of the state, not into CWD.
        datadir=str(settings.state_dir / "faust"),
        web_enabled=settings.worker_web_port > 0,
        web_port=settings.worker_web_port or 6066,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S,
        # Faust's check compares the changelog offset a worker has read (a standby's, or an
        # active partition it keeps) with ListOffsets(latest), which Tansu answers short of
        # the end (docs/operations.md): every rebalance that kept a partition would crash
        # the worker. It guards local RocksDB files against deleted topics; the tables are in
        # memory, and a recovery that stops short is replayed from Kafka (catch_up_from).
        recovery_consistency_check=False,
        # Counted in Kafka records, each a bridge batch of up to 500 messages of about 1 kB:
        # Faust's 4 096 would let a worker behind its topics hold over 2 GB of full ones.
        stream_buffer_maxsize=settings.worker_buffer_records,
        table_standby_replicas=settings.worker_standby_replicas,
    )
    vehicles = app.topic(topics.VEHICLES, partitions=partitions)
    chargers = app.topic(topics.CHARGERS, partitions=partitions)
    alerts = app.topic(topics.ALERTS, partitions=partitions)
    table = app.Table(
        "vehicle-diagnostics",
        default=None,
        partitions=partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )
    # Charger silence keeps its own table (the charger pipeline's is ``charger-diagnostics``):
    # its states have their own shape and the table holds its sweep clocks.
    silence_table = app.Table(
        "charger-silence",
        default=None,
        partitions=partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )
    pipeline = VehiclePipeline()
    charger_silence = ChargerSilencePipeline()
    # Latest values, daily indicators, charging sessions and OTA reports: the records these
    # two agents process go to a child process that writes them (``worker/view_writer.py``);
    # their tables never checkpoint a position beyond what it has written.
    writer = ViewWriter(
        ViewConfig(store.url, store.case_sla_hours, settings.latest_flush_s),
        lambda topic, partition, start, end: read_range(settings.kafka_bootstrap, topic,
                                                        partition, start, end),
        backlog_bytes=int(settings.view_backlog_mib * (1 << 20)))
    marks = changelog_marks(app, settings)
    vehicle_states = checkpointed(app, table, topics.VEHICLES, settings, marks,
                                  cap=functools.partial(writer.durable, topics.VEHICLES))
    silence_states = checkpointed(app, silence_table, topics.CHARGERS, settings, marks,
                                  cap=functools.partial(writer.durable, topics.CHARGERS))
    stats = WorkerStats()

    deliver = alert_sender(alerts, stats)

    generic = Generic(app, settings, functools.partial(checkpointed, marks=marks),
                      topics.VEHICLES) \
        if settings.generic_detector else None

    # The fleet's charging-session outcomes, one partition (internal=True: the worker declares
    # the topic itself if the bridge has not created it yet).
    outcomes_topic = app.topic(topics.CHARGING_OUTCOMES, partitions=1, internal=True,
                               key_serializer="raw", value_serializer="raw")

    car_ticks = ClockTicks(CAR)

    async def apply(partition: int, offset: int, raw: bytes) -> None:
        records = _decode(raw)
        stats.count(records)
        writer.add(topics.VEHICLES, partition, offset, raw)
        await writer.keep_up()
        new_alerts, writes = pipeline.process_source(table, partition, offset, records)
        generic_writes: dict[str, Any] = {}
        if generic is not None:
            more, generic_writes = generic.process(partition, offset, records)
            new_alerts += more
        await deliver(new_alerts)
        # Sent before the states, like the alerts; the attributor recognises a redelivered
        # account by the car and the time. The clock tick after them says how far this
        # partition's stream has come (the attributor orders its inputs by event time).
        tick = car_ticks.after(partition, records)
        for item in [*car_accounts(records), *([tick] if tick else [])]:
            await outcomes_topic.send(key=b"fleet", value=orjson.dumps(item), partition=0)
        # Changed vehicle states, the sweep clock, then the partition's position: in memory
        # now, to the changelog at the partition's next checkpoint.
        stats.state_writes += vehicle_states.write(partition, writes)
        if generic is not None:
            stats.generic_state_writes += generic.write(partition, generic_writes)

    async def apply_charger(partition: int, offset: int, raw: bytes) -> None:
        writer.add(topics.CHARGERS, partition, offset, raw)
        await writer.keep_up()
        new_alerts, writes = charger_silence.process_source(silence_table, partition, offset,
                                                            _decode(raw))
        await deliver(new_alerts)
        silence_states.write(partition, writes)

    @app.agent(vehicles, name="diagnose")
    async def diagnose(stream: faust.StreamT[bytes]) -> None:
        positions = table if generic is None else Positions(table, generic.table)
        await consume_with_catch_up(stream, positions, settings.kafka_bootstrap,
                                    topics.VEHICLES, apply, "diagnose")

    @app.agent(chargers, name="charger-silence")
    async def charger_diagnose(stream: faust.StreamT[bytes]) -> None:
        await consume_with_catch_up(stream, silence_table, settings.kafka_bootstrap,
                                    topics.CHARGERS, apply_charger, "charger")

    _install_charger_agents(app, settings, chargers, outcomes_topic, alerts, stats, marks)

    @app.timer(SHIP_EVERY_S)  # type: ignore[untyped-decorator]
    async def ship_views() -> None:
        await writer.ship()

    # Signal trends go with every n-th flush (see worker/view_writer.py for why).
    trend_every = max(1, round(settings.trend_flush_s / settings.latest_flush_s))
    flushes = itertools.count(1)

    @app.timer(settings.latest_flush_s)  # type: ignore[untyped-decorator]
    async def flush_views() -> None:
        try:
            await writer.flush(trends=next(flushes) % trend_every == 0)
        except Exception as exc:  # the database away: the records are reread, try again
            log.warning("view_write_failed error=%r", exc)

    @app.task  # type: ignore[untyped-decorator]
    async def start_view_writer() -> None:
        await writer.start()  # a database it cannot open shows now, not at the first flush

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_view_writer(_app: Any, **_kwargs: Any) -> None:
        # The agents have stopped: what they processed is written, then the child ends.
        await writer.flush(trends=True)
        await asyncio.to_thread(writer.close)

    @app.agent(alerts, name="alert-sink")
    async def alert_sink(stream: faust.StreamT[bytes]) -> None:
        async for raws in stream.take(200, within=0.05):  # an alert should not wait long
            await asyncio.to_thread(_persist_alerts, store, raws)

    @app.timer(STATS_EVERY_S)  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("worker_stats %s", " ".join(
            f"{k}={v}" for k, v in stats.snapshot(table, pipeline).items()))

    if settings.ota_signing_key:
        _install_ota(app, settings, store, writer, stats)
    else:
        log.info("ota_off reason=OWNERCARE_OTA_SIGNING_KEY is not set (no campaigns run)")

    metrics_topic = app.topic(topics.SERVICE_METRICS, partitions=partitions)
    instance = service_metrics.instance_id()

    @app.timer(service_metrics.REPORT_EVERY_S)  # type: ignore[untyped-decorator]
    async def report_metrics() -> None:
        report = service_metrics.Report("worker", instance, int(time.time() * 1000),
                                        metrics_samples(stats.snapshot(table, pipeline)))
        try:
            await metrics_topic.send(key=instance.encode(), value=service_metrics.encode(report))
        except Exception as exc:  # metrics must never stop the detectors
            log.warning("metrics_report_failed error=%r", exc)

    @app.page("/ownercare/stats/")
    async def stats_page(web: Any, _request: Any) -> Any:
        # The view writer's pid: ``ownercare bench`` counts its CPU and memory as the worker's.
        return web.json({**stats.snapshot(table, pipeline), "view_writer_pid": writer.pid,
                         "view_writer_waits": writer.waits})

    return app


def _install_charger_agents(app: faust.App, settings: WorkerSettings, chargers: Any,
                            outcomes_topic: Any, alerts: Any, stats: WorkerStats,
                            marks: ChangelogMarks) -> None:
    """The charger pipeline and the fleet's charging-fault attribution (see module doc)."""
    json_schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    charger_table = app.Table("charger-diagnostics", default=None,
                              partitions=settings.partitions, schema=json_schema)
    attribution_table = app.Table("charging-attribution", default=None, partitions=1,
                                  schema=json_schema)
    pipeline = ChargerPipeline()
    attribution = OrderedAttribution()
    charger_ticks = ClockTicks(CHARGER)
    charger_states = checkpointed(app, charger_table, topics.CHARGERS, settings, marks)
    attribution_states = checkpointed(app, attribution_table, topics.CHARGING_OUTCOMES,
                                      settings, marks)

    emit = alert_sender(alerts, stats)

    async def apply_chargers(partition: int, offset: int, raw: bytes) -> None:
        records = _decode(raw)
        new_alerts, writes, outcomes = pipeline.process_source(
            charger_table, partition, offset, records)
        await emit(new_alerts)
        # Outcomes, like alerts, are delivered before the states that say they were sent (a
        # redelivered outcome is recognised by its session id), then this stream's clock.
        tick = charger_ticks.after(partition, records)
        for item in [*outcomes, *([tick] if tick else [])]:
            await outcomes_topic.send(key=b"fleet", value=orjson.dumps(item), partition=0)
        charger_states.write(partition, writes)

    async def apply_outcome(partition: int, offset: int, raw: bytes) -> None:
        try:
            outcome = orjson.loads(raw)
        except ValueError as exc:
            log.error("charging_outcome_undecodable error=%s bytes=%s", exc, len(raw))
            outcome = None
        new_alerts, writes = attribution.process_source(
            attribution_table, partition, offset, [outcome] if outcome else [])
        await emit(new_alerts)
        attribution_states.write(partition, writes)

    @app.agent(chargers, name="diagnose-charger")
    async def diagnose_charger(stream: faust.StreamT[bytes]) -> None:
        await consume_with_catch_up(stream, charger_table, settings.kafka_bootstrap,
                                    topics.CHARGERS, apply_chargers, "diagnose_charger")

    @app.agent(outcomes_topic, name="attribute-charging")
    async def attribute_charging(stream: faust.StreamT[bytes]) -> None:
        await consume_with_catch_up(stream, attribution_table, settings.kafka_bootstrap,
                                    topics.CHARGING_OUTCOMES, apply_outcome,
                                    "attribute_charging")


Apply = Callable[[int, int, bytes], Awaitable[None]]


def checkpointed(app: faust.App, table: Any, source_topic: str, settings: WorkerSettings,
                 marks: ChangelogMarks, cap: PositionCap | None = None) -> CheckpointedTable:
    """``table`` written at checkpoints (``worker/checkpoint.py``), per partition of
    ``source_topic``, and refreshed whole every ``OWNERCARE_CHANGELOG_REFRESH_S`` (its marks
    committed by the app's ``ChangelogMarks``); what was staged for a partition this worker
    loses is dropped."""
    states = CheckpointedTable(table, settings.state_checkpoint_s, time.monotonic, cap,
                               settings.changelog_refresh_s)
    changelog = table.changelog_topic.get_topic_name()
    marks.watch(changelog, states)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(_app: Any, revoked: Any, **_kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == source_topic}
        states.forget(lost)
        # Faust recovers a partition it keeps from where it last stopped reading; with its
        # keys gone from memory (``CheckpointedTable.forget``), it must read from the start.
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        for partition in lost:
            recovery.active_offsets.pop(TP(changelog, partition), None)
            recovery.standby_offsets.pop(TP(changelog, partition), None)

    return states


def changelog_marks(app: faust.App, settings: WorkerSettings) -> ChangelogMarks:
    """The app's committer of changelog marks (``worker/changelog_marks.py``)."""
    marks = ChangelogMarks(settings.kafka_bootstrap, settings.worker_app_id)

    @app.timer(MARKS_EVERY_S)  # type: ignore[untyped-decorator]
    async def commit_changelog_marks() -> None:
        try:
            await marks.commit()
        except Exception as exc:  # trimming waits for the next try; detection goes on
            log.warning("changelog_marks_failed error=%r", exc)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_changelog_marks(_app: Any, **_kwargs: Any) -> None:
        await marks.stop()

    return marks


async def consume_with_catch_up(stream: Any, table: Any, bootstrap: str, topic: str,
                                apply: Apply, name: str) -> None:
    """Apply each source record, first replaying what the recovered ``table`` lacks.

    The table records the last source offset whose effects it holds (``position_key``); when
    a restarted worker's recovered table is behind its committed offset, the gap is replayed
    from Kafka before the record (see ``diagnostics/pipeline.py``). Every agent that keeps
    detector state in a changelogged table consumes through this. Offsets applied without
    Faust delivering them are handed to its consumer, so it commits past them
    (``worker/applied_offsets.py``). Records Faust read and never delivered at the end of a
    partition, which no later record would reveal, are read again (``worker/tail_guard.py``).
    """
    applied = AppliedOffsets(stream.app.consumer)
    guard = TailGuard(stream.app.consumer, topic,
                      lambda partition: table.get(position_key(partition)), name)
    watching = asyncio.ensure_future(guard.run())
    try:
        async for event in stream.events():
            guard.busy = True
            partition, offset = event.message.partition, event.message.offset
            start = catch_up_from(table.get(position_key(partition)), offset)
            if start is not None:
                log.warning("%s_catch_up partition=%s from=%s to=%s", name, partition, start,
                            offset - 1)
                async for gap_offset, gap_raw in read_range(bootstrap, topic, partition,
                                                            start, offset):
                    await apply(partition, gap_offset, gap_raw)
            await apply(partition, offset, event.value)
            await applied.applied(event.message.tp, offset)
            guard.busy = False
    finally:
        watching.cancel()


def alert_sender(alerts: Any, stats: WorkerStats) -> Callable[[list[dict[str, Any]]],
                                                              Awaitable[None]]:
    """Send alert upserts, awaiting each delivery: callers write the state that says
    "emitted" only after it, so a worker killed in between re-emits the alert (same id)."""
    async def deliver(new_alerts: list[dict[str, Any]]) -> None:
        stats.alerts += len(new_alerts)
        for alert in new_alerts:
            await alerts.send(key=alert["id"].encode(), value=orjson.dumps(alert))
            log.info("alert_emitted id=%s asset=%s/%s type=%s severity=%s status=%s",
                     alert["id"], alert["asset_kind"], alert["asset_id"], alert["type"],
                     alert["severity"], alert["status"])
    return deliver


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Cap how long the worker's Kafka fetches wait for data.

    faust-streaming 0.15 hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka
    answers a waiting fetch as soon as data arrives, but Tansu (the embedded broker) holds it
    for the whole wait, which puts up to 1.5 s on every hop (vehicle batch -> detectors ->
    alert -> sink). There is no Faust setting for it, so the consumer Faust creates is
    adjusted before it starts.
    """
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    original = getattr(thread_cls, "_ownercare_original_create", None)
    if original is None:
        original = thread_cls._create_worker_consumer
        thread_cls._ownercare_original_create = original  # type: ignore[attr-defined]

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # aiokafka changed: say so, loudly
            raise RuntimeError("aiokafka's consumer has no _fetch_max_wait_ms any more; "
                               "update worker.agents.limit_fetch_wait")
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    thread_cls._create_worker_consumer = create  # type: ignore[method-assign]


STATS_EVERY_S = 30.0
MARKS_EVERY_S = 10.0
STATE_SAMPLE = 256  # vehicles whose serialised state is measured for the average


@dataclass
class WorkerStats:
    """What the diagnose agent has done since start (counters, not domain logic)."""

    batches: int = 0
    records: int = 0
    alerts: int = 0
    state_writes: int = 0  # vehicle-table changelog records sent (checkpoints)
    generic_state_writes: int = 0  # generic-diagnostics changelog records sent
    last_event_ts: int = 0  # newest event time seen: how far behind the fleet the worker is

    def count(self, records: list[dict[str, Any]]) -> None:
        self.batches += 1
        self.records += len(records)
        for r in records:
            if r["ts"] > self.last_event_ts:
                self.last_event_ts = r["ts"]

    def snapshot(self, table: Any, pipeline: VehiclePipeline) -> dict[str, Any]:
        # Vehicle states only: the table also holds a position and a sweep clock per partition.
        vins = [k for k in table if not str(k).startswith("#")]
        values: Iterable[Any] = (table[k] for k in itertools.islice(vins, STATE_SAMPLE))
        sizes = [len(orjson.dumps(v)) for v in values if v is not None]
        return {
            **asdict(self),
            "duplicates": pipeline.duplicates,
            "vehicles": len(vins),
            "state_bytes_mean": round(sum(sizes) / len(sizes), 1) if sizes else 0.0,
            "state_bytes_max": max(sizes, default=0),
        }


def _install_ota(app: faust.App, settings: WorkerSettings, store: Store, writer: ViewWriter,
                 stats: WorkerStats) -> None:
    """The OTA engine on a timer. Only the leader worker steps campaigns, so a fleet of
    workers sends each offer once. The timer only polls: a step is due when the fleet's event
    time has moved on by ``OWNERCARE_OTA_STEP_S`` (``ota.timing``), however fast the fleet's
    clock runs against the wall clock."""
    from worker import command_dispatch
    from worker.ota_runner import OtaRunner, load_signing_key

    key = load_signing_key(settings.ota_signing_key)
    runner = OtaRunner(store, key, settings.ota_step_s)
    command_dispatch.install(app, settings, store, key, writer)  # remote commands: same key
    commands = app.topic(topics.OTA_COMMANDS, partitions=settings.partitions)
    worker_id = service_metrics.instance_id()

    @app.timer(settings.ota_poll_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def ota_step() -> None:
        # Offers are saved before they are sent: a crash in between leaves an "offered"
        # action whose offer expires unanswered and is retried (never a duplicate install).
        try:
            if not await asyncio.to_thread(runner.step_due, stats.last_event_ts or None):
                return
            began_ms = time.time_ns() // 1_000_000
            # Everything this worker has read goes to the store first: the gate then judges
            # the cars' latest state, and their answers to offers are folded in.
            await writer.flush()
            out = await asyncio.to_thread(runner.step_all)
        except Exception as exc:  # the database away: try again next tick
            log.warning("ota_step_failed error=%r", exc)
            return
        for vin, value in out:
            await commands.send(key=vin.encode(), value=value)
        # Which process stepped, and over which wall-clock span: what shows that one worker
        # of the group steps at a time, and how long a new leader took to take over.
        log.info("ota_step worker=%s began_ms=%d ended_ms=%d commands=%d", worker_id,
                 began_ms, time.time_ns() // 1_000_000, len(out))
        if out:
            log.info("ota_commands_sent count=%s", len(out))


def metrics_samples(snapshot: dict[str, Any]) -> list[service_metrics.Sample]:
    """The worker's counters for GET /metrics (cumulative since this process started)."""
    m = service_metrics
    return [
        m.WORKER_RECORDS.sample(snapshot["records"]),
        m.WORKER_KAFKA_RECORDS.sample(snapshot["batches"]),
        m.WORKER_ALERT_CHANGES.sample(snapshot["alerts"]),
        m.WORKER_STATE_WRITES.sample(snapshot["state_writes"]),
        m.WORKER_DUPLICATE_RECORDS.sample(snapshot["duplicates"]),
        m.WORKER_VEHICLES.sample(snapshot["vehicles"]),
        m.WORKER_VEHICLE_STATE_MEAN_BYTES.sample(snapshot["state_bytes_mean"]),
        m.WORKER_VEHICLE_STATE_MAX_BYTES.sample(snapshot["state_bytes_max"]),
        m.WORKER_LAST_EVENT_TIMESTAMP.sample(snapshot["last_event_ts"] / 1000),
    ]


def _persist_alerts(store: Store, raws: list[bytes]) -> None:
    for raw in raws:
        try:
            change = store.upsert_alert(orjson.loads(raw))
        except ValueError as exc:
            log.error("alert_rejected error=%s", exc)
            continue
        if change:
            log.debug("alert_stored change=%s", change)
