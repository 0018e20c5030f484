"""The view writer (``diagnostics/view_writer.py``) against a real Tansu broker and a real
SQLite file: it writes, commits after writing, and the worker's handle replaces a dead one."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from api.store import Store
from diagnostics.view_writer import ViewConfig, ViewWriter, consume
from ingest.contract import encode_batch
from ingest.kafka import ensure_topics
from tests.integration.helpers import bootstrap_of
from tests.unit.test_charging import Charger, normal_session
from tests.unit.test_views_store import FL, T0, VIN, sessions, tele


def _config(kafka_url: str, tmp_path: Path) -> ViewConfig:
    tag = uuid.uuid4().hex[:8]  # the session's broker is shared: topics and group of our own
    return ViewConfig(kafka_bootstrap=bootstrap_of(kafka_url), group_id=f"views-{tag}",
                      database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", flush_s=0.3,
                      vehicle_topic=f"vehicles-{tag}", charger_topic=f"chargers-{tag}")


async def _produce(config: ViewConfig, topic: str, raws: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka_bootstrap)
    await producer.start()
    try:
        for raw in raws:
            await producer.send_and_wait(topic, raw, partition=0)
    finally:
        await producer.stop()


async def _committed(config: ViewConfig, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=config.kafka_bootstrap,
                                group_id=config.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


def _fl(store: Store) -> tuple[Any, Any] | None:
    vehicle = store.vehicle(VIN)
    signals = {s["path"]: s for s in vehicle["signals"]} if vehicle else {}
    return (signals[FL]["value"], signals[FL]["ts"]) if FL in signals else None


def _eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not written in time"
        time.sleep(0.1)


def test_it_writes_then_commits_and_a_restart_rereads_nothing(kafka_url: str,
                                                               tmp_path: Path) -> None:
    config = _config(kafka_url, tmp_path)
    store = Store(config.database_url)

    async def scenario() -> None:
        await ensure_topics(config.kafka_bootstrap, 1,
                            (config.vehicle_topic, config.charger_topic))
        await _produce(config, config.vehicle_topic,
                       [encode_batch([tele(T0 + 1, **{FL: 250.0})]),
                        encode_batch([tele(T0 + 2, **{FL: 240.0})])])
        await _produce(config, config.charger_topic,
                       [encode_batch(normal_session(Charger(), T0))])
        stopping = asyncio.Event()
        task = asyncio.create_task(consume(config, stopping))
        while _fl(store) is None or not sessions(store):
            assert not task.done(), task
            await asyncio.sleep(0.1)
        stopping.set()
        await task
        assert await _committed(config, config.vehicle_topic) == 2
        assert await _committed(config, config.charger_topic) == 1
        # A new consumer of the group starts after the committed records: an older reading
        # published now is the only thing it writes (and the newest-wins upsert ignores it).
        await _produce(config, config.vehicle_topic,
                       [encode_batch([tele(T0 + 3, **{FL: 230.0})])])
        stopping = asyncio.Event()
        task = asyncio.create_task(consume(config, stopping))
        while await _committed(config, config.vehicle_topic) != 3:
            assert not task.done(), task
            await asyncio.sleep(0.1)
        stopping.set()
        await task

    asyncio.run(scenario())
    assert _fl(store) == (230.0, T0 + 3)
    (session,) = sessions(store).values()
    assert session["end_status"] == "Finishing"
    # Each reading counted once: nothing was reread after the restart.
    from tests.unit.test_views_store import stored_daily
    assert stored_daily(store)[(VIN, "2026-01-01", "tire_pressure_row1_left_kpa")][:3] == (
        3, 230.0, 250.0)


def test_the_worker_replaces_a_dead_view_writer_and_stops_it(kafka_url: str,
                                                              tmp_path: Path) -> None:
    config = _config(kafka_url, tmp_path)
    store = Store(config.database_url)
    asyncio.run(ensure_topics(config.kafka_bootstrap, 1,
                              (config.vehicle_topic, config.charger_topic)))
    writer = ViewWriter(config)
    writer.start()
    try:
        first = writer.pid
        assert first is not None and first != os.getpid()
        asyncio.run(_produce(config, config.vehicle_topic,
                             [encode_batch([tele(T0 + 1, **{FL: 250.0})])]))
        _eventually(lambda: _fl(store) == (250.0, T0 + 1))
        os.kill(first, signal.SIGKILL)
        _eventually(lambda: not writer._process.is_alive())
        writer.ensure_running()
        assert writer.pid not in (None, first) and writer.restarts == 1
        asyncio.run(_produce(config, config.vehicle_topic,
                             [encode_batch([tele(T0 + 2, **{FL: 240.0})])]))
        _eventually(lambda: _fl(store) == (240.0, T0 + 2))
        process = writer._process
    finally:
        writer.stop()
    assert process.exitcode == 0  # SIGTERM: it wrote, committed and left, not killed
    assert writer.pid is None
