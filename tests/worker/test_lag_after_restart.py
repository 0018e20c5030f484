"""The consumer-lag gauge tells the truth across a worker restart, against the embedded Kafka
(Tansu): while a killed worker is away its lag is exactly what was written after its last
commit, and once a restarted worker has processed everything the fleet kept sending it falls
to 0 on every partition.

A restarted Faust worker can skip records at first (its fetcher runs before it seeks to the
committed offsets); ``consume_with_catch_up`` applies them from Kafka, and Faust must be told,
or it never commits past them and the gauge stays up while every record is processed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.metrics import consumer_lag
from ingest import topics
from ingest.kafka import ensure_topics
from tests.stackkit import bootstrap_of, start_service, wait_for_log
from tests.worker.test_worker_restart import PARTITIONS, fleet_batches, produce, wait_for_commits

pytestmark = pytest.mark.integration
TRICKLE_S = 2.0


async def committed_offsets(kafka_url: str, group: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(kafka_url), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topics.VEHICLES, p))
                for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


def vehicle_lag(kafka_url: str, group: str) -> dict[int, int]:
    lag = asyncio.run(consumer_lag(bootstrap_of(kafka_url), group))
    return {p: n for (topic, p), n in lag.items() if topic == topics.VEHICLES}


def test_the_lag_gauge_follows_a_restarted_worker_to_zero(kafka_url: str,
                                                           tmp_path: Path) -> None:
    batches, _expected = fleet_batches(seed=23)
    asyncio.run(ensure_topics(bootstrap_of(kafka_url), PARTITIONS))
    group = f"lag-{os.getpid()}"
    env = {"OWNERCARE_KAFKA_URL": kafka_url, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.sqlite'}",
           "OWNERCARE_STATE_DIR": str(tmp_path), "OWNERCARE_WORKER_APP_ID": group}
    half = len(batches) // 2
    # While the worker is away a part of the rest arrives; the fleet goes on sending the
    # remainder, a batch every TRICKLE_S, once it is back (as a live fleet does).
    away, live = batches[half:half + 8], batches[half + 8:]
    assert len(live) * TRICKLE_S > 30  # past the restarted worker's rebalances
    first = start_service("worker", env, tmp_path / "worker1.log")
    try:
        asyncio.run(produce(kafka_url, batches[:half]))
        wait_for_log(tmp_path / "worker1.log", "alert_emitted", 120, first)
        asyncio.run(wait_for_commits(kafka_url, group))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    ends = asyncio.run(produce(kafka_url, away))
    committed = asyncio.run(committed_offsets(kafka_url, group))
    # Nobody consumes now: the gauge is exactly what was written after the last commit.
    truth = {p: end - (committed[p] or 0) for p, end in ends.items()}
    assert sum(truth.values()) > 0
    lag = vehicle_lag(kafka_url, group)
    assert {p: lag.get(p) for p in truth} == truth

    second = start_service("worker", env, tmp_path / "worker2.log")
    try:
        for batch in live:
            ends.update(asyncio.run(produce(kafka_url, [batch])))
            time.sleep(TRICKLE_S)
        deadline = time.monotonic() + 180
        lag = vehicle_lag(kafka_url, group)
        while time.monotonic() < deadline and any(lag.get(p) != 0 for p in ends):
            assert second.poll() is None, (tmp_path / "worker2.log").read_text()[-4000:]
            time.sleep(1)
            lag = vehicle_lag(kafka_url, group)
        assert {p: lag.get(p) for p in ends} == dict.fromkeys(ends, 0), (
            lag, asyncio.run(committed_offsets(kafka_url, group)), ends)
        after = asyncio.run(committed_offsets(kafka_url, group))
        assert {p: after[p] for p in ends} == ends  # processed and committed, all of it
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
