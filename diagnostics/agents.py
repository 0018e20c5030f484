"""The Faust app of ``ownercare worker``: thin agents around the pure pipeline.

* ``diagnose``: vehicle record batches -> detectors (state in the changelogged table
  ``vehicle-diagnostics``) -> alert upserts on ``ownercare.alerts``. Alerts are delivered
  before the states that produced them are written, and the table also records the last
  applied offset per partition: a restarted worker whose recovered table is older than its
  committed offset replays the gap first (see ``diagnostics/pipeline.py``).
* ``latest-vehicle`` / ``latest-charger``: newest value per signal into the database for
  the API's vehicle view (coalesced per batch, written off the event loop).
* ``alert-sink``: alert upserts -> database (idempotent by alert id).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson

from api.store import Store
from diagnostics.pipeline import (
    VehiclePipeline,
    catch_up_from,
    latest_signal_rows,
    position_key,
)
from ingest import topics
from ingest.contract import decode_batch
from ingest.kafka import read_range
from ownercare.settings import WorkerSettings

log = logging.getLogger(__name__)


def create_app(settings: WorkerSettings, store: Store | None = None) -> faust.App:
    store = store or Store(settings.effective_database_url)
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
        # Tansu (embedded) rebalances slowly when a member vanishes; fail over faster.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
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
    pipeline = VehiclePipeline()

    async def apply(partition: int, offset: int, raw: bytes) -> None:
        new_alerts, writes = pipeline.process_source(table, partition, offset, _decode(raw))
        for alert in new_alerts:
            # Await delivery before the state that says "emitted" is written: a worker killed
            # in between re-emits the alert (same id) instead of losing it.
            await alerts.send(key=alert["id"].encode(), value=orjson.dumps(alert))
            log.info("alert_emitted id=%s vin=%s type=%s severity=%s status=%s",
                     alert["id"], alert["asset_id"], alert["type"], alert["severity"],
                     alert["status"])
        # Changed vehicle states, then the partition's position: one changelog record each.
        for key, value in writes.items():
            table[key] = value

    @app.agent(vehicles, name="diagnose")
    async def diagnose(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            partition, offset = event.message.partition, event.message.offset
            start = catch_up_from(table.get(position_key(partition)), offset)
            if start is not None:
                # The recovered table is older than the committed offset: replay the gap.
                log.warning("diagnose_catch_up partition=%s from=%s to=%s", partition, start,
                            offset - 1)
                async for gap_offset, gap_raw in read_range(
                        settings.kafka_bootstrap, topics.VEHICLES, partition, start, offset):
                    await apply(partition, gap_offset, gap_raw)
            await apply(partition, offset, event.value)

    async def store_latest(stream: faust.StreamT[bytes]) -> None:
        async for raws in stream.take(64, within=0.5):
            rows = latest_signal_rows(r for raw in raws for r in _decode(raw))
            if rows:
                await asyncio.to_thread(store.upsert_signals, rows)

    app.agent(vehicles, name="latest-vehicle")(store_latest)
    app.agent(chargers, name="latest-charger")(store_latest)

    @app.agent(alerts, name="alert-sink")
    async def alert_sink(stream: faust.StreamT[bytes]) -> None:
        async for raws in stream.take(200, within=0.2):
            await asyncio.to_thread(_persist_alerts, store, raws)

    return app


def _decode(raw: bytes) -> list[dict[str, Any]]:
    try:
        return decode_batch(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        # Only the bridge writes these topics; a bad record is a bug or a foreign producer.
        log.error("record_batch_undecodable error=%s bytes=%s", exc, len(raw))
        return []


def _persist_alerts(store: Store, raws: list[bytes]) -> None:
    for raw in raws:
        try:
            change = store.upsert_alert(orjson.loads(raw))
        except ValueError as exc:
            log.error("alert_rejected error=%s", exc)
            continue
        if change:
            log.debug("alert_stored change=%s", change)
