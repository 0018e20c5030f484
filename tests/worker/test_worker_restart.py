"""A worker killed mid-stream loses no alert and duplicates none (the delivery rules of
docs/architecture.md).

The fleet's records go straight to Kafka (as the bridge would write them); the Faust worker
is SIGKILLed halfway and restarted with the same app id, so it resumes from its committed
offsets and restores the detector state from the table's changelog. The alerts in the
database must be exactly those of an uninterrupted run of the same pipeline.

The recovered table can be older than the committed offsets (Tansu's memory engine reports a
changelog high watermark short of the last batch, and Faust's recovery stops there), so a
second test gives a worker committed offsets its table knows nothing of: it must replay the gap.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from diagnostics.pipeline import VehiclePipeline
from ingest import topics
from ingest.contract import encode_batch, validate
from ingest.kafka import ensure_topics, partition_for
from simulators.fleet import Fleet
from storage.alert_contract import record_of
from storage.store import Store
from tests.conftest import SHARED_PARTITIONS
from tests.stackkit import bootstrap_of, start_service, wait_for_log
from vocab.eventtime import DAY_MS

pytestmark = pytest.mark.integration
PARTITIONS = SHARED_PARTITIONS  # the ownercare topics on the shared broker (conftest)


def fleet_batches(seed: int) -> tuple[list[list[dict[str, Any]]], dict[str, tuple[Any, ...]]]:
    """Record batches, and the final alerts (by id) an uninterrupted run produces."""
    fleet = Fleet(12, 0, seed=seed, faults={"weak_12v": 3}, drive_interval_s=300,
                  parked_interval_s=3600)
    records = [validate(t, p) for _, t, p in fleet.messages(fleet.start_ms + 25 * DAY_MS)]
    pipeline, states = VehiclePipeline(), {}
    expected: dict[str, tuple[Any, ...]] = {}
    for record in records:
        for alert in pipeline.process([record], states)[0]:
            expected[alert["id"]] = summary(alert)
    batches, current = [], []
    for record in records:
        current.append(record)
        if len(current) == 200:
            batches.append(current)
            current = []
    batches.append(current)
    return batches, expected


async def wait_for_commits(kafka_url: str, group: str, within_s: float = 30) -> None:
    # A consumer that is given partitions by hand never joins the group: it only reads the
    # group's committed offsets, without triggering a rebalance of the worker.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(kafka_url), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.VEHICLES, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            committed = [await consumer.committed(tp) for tp in partitions]
            # Nothing to commit on a partition that never received a record.
            if all((c or 0) >= ends[tp] for c, tp in zip(committed, partitions, strict=True)):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the first worker did not commit the first half in time: "
                             f"{committed} vs {[ends[tp] for tp in partitions]}")
    finally:
        await consumer.stop()


def summary(alert: dict[str, Any]) -> tuple[Any, ...]:
    return (alert["asset_id"], alert["status"], alert["severity"], alert["first_seen"],
            alert["last_seen"], alert["predicted_failure_ts"])


async def produce(kafka_url: str, batches: list[list[dict[str, Any]]]) -> dict[int, int]:
    """Write the batches as the bridge would; return the next offset of each partition used."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(kafka_url), acks="all")
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for batch in batches:
            by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for record in batch:
                by_partition[partition_for(record["id"], PARTITIONS)].append(record)
            for partition, chunk in by_partition.items():
                sent = await producer.send_and_wait(topics.VEHICLES, encode_batch(chunk),
                                                    partition=partition)
                ends[partition] = sent.offset + 1
    finally:
        await producer.stop()
    return ends


async def commit_offsets(kafka_url: str, group: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (as if a worker had processed them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(kafka_url), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topics.VEHICLES, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
        for tp, offset in tps.items():
            assert await consumer.committed(tp) == offset
    finally:
        await consumer.stop()


def assert_settles_to(store: Store, fleet_vins: set[str],
                      expected: dict[str, tuple[Any, ...]]) -> None:
    """The stored alerts of this fleet become ``expected`` and stay so."""

    def stored() -> dict[str, tuple[Any, ...]]:
        # Other tests share the broker (and its alerts topic); look at this fleet only.
        rows, _ = store.list_alerts(limit=500)
        return {row["id"]: summary(record_of(row)) for row in rows
                if row["asset_id"] in fleet_vins}

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and stored() != expected:
        time.sleep(1)
    assert stored() == expected
    time.sleep(3)  # nothing more arrives afterwards
    assert stored() == expected


def test_killed_worker_resumes_without_losing_or_duplicating_alerts(
    kafka_url: str, tmp_path: Path
) -> None:
    batches, expected = fleet_batches(seed=21)
    assert len({asset for asset, *_ in expected.values()}) == 3
    asyncio.run(ensure_topics(bootstrap_of(kafka_url), PARTITIONS))
    db = tmp_path / "alerts.sqlite"
    env = {"OWNERCARE_KAFKA_URL": kafka_url, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_DATABASE_URL": f"sqlite:///{db}", "OWNERCARE_STATE_DIR": str(tmp_path),
           "OWNERCARE_WORKER_APP_ID": f"restart-{os.getpid()}"}
    half = len(batches) // 2
    first = start_service("worker", env, tmp_path / "worker1.log")
    try:
        asyncio.run(produce(kafka_url, batches[:half]))
        # Once it has processed and committed the whole first half, kill it without any chance
        # to clean up: the second worker must continue from the changelogged detector state
        # (starting over with empty state would give different alerts).
        wait_for_log(tmp_path / "worker1.log", "alert_emitted", 120, first)
        asyncio.run(wait_for_commits(kafka_url, env["OWNERCARE_WORKER_APP_ID"]))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    asyncio.run(produce(kafka_url, batches[half:]))
    second = start_service("worker", env, tmp_path / "worker2.log")
    try:
        fleet_vins = {record["id"] for batch in batches for record in batch}
        assert_settles_to(Store(f"sqlite:///{db}"), fleet_vins, expected)
        assert "alert_emitted" in (tmp_path / "worker2.log").read_text()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)


def test_worker_whose_table_is_older_than_its_offsets_replays_the_gap(
    kafka_url: str, tmp_path: Path
) -> None:
    """The extreme of a short recovery: offsets committed past the first half, a table that
    holds nothing of it. The worker must replay the first half before going on, and end with
    exactly the alerts of an uninterrupted run (starting from the offsets with empty state
    would open the alerts late, with other ids, or not at all)."""
    batches, expected = fleet_batches(seed=22)
    fleet_vins = {record["id"] for batch in batches for record in batch}
    assert len({asset for asset, *_ in expected.values()}) == 3
    asyncio.run(ensure_topics(bootstrap_of(kafka_url), PARTITIONS))
    app_id = f"behind-{os.getpid()}"
    db = tmp_path / "alerts.sqlite"
    env = {"OWNERCARE_KAFKA_URL": kafka_url, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_DATABASE_URL": f"sqlite:///{db}", "OWNERCARE_STATE_DIR": str(tmp_path),
           "OWNERCARE_WORKER_APP_ID": app_id}
    half = len(batches) // 2
    asyncio.run(commit_offsets(kafka_url, app_id, asyncio.run(produce(kafka_url,
                                                                      batches[:half]))))
    asyncio.run(produce(kafka_url, batches[half:]))
    worker = start_service("worker", env, tmp_path / "worker.log")
    try:
        assert_settles_to(Store(f"sqlite:///{db}"), fleet_vins, expected)
        assert "diagnose_catch_up" in (tmp_path / "worker.log").read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
