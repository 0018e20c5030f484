"""Kafka helpers shared by the bridge, the worker and the tools: topic creation, partitioning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from ingest import topics

log = logging.getLogger(__name__)


def partition_for(asset_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``asset_id``.

    The bridge packs records of many vehicles into one Kafka record per partition; using the
    same murmur2 hash as a keyed producer keeps every VIN on "its" partition, so Faust table
    state (changelogged by the partition of the event being processed) stays co-partitioned.
    """
    return (murmur2(asset_id.encode()) & 0x7FFFFFFF) % partitions


async def wait_for_kafka(bootstrap: str, give_up_s: float) -> None:
    """Wait until the Kafka cluster answers metadata requests; raise after ``give_up_s``."""
    deadline = time.monotonic() + give_up_s
    delay = 0.2
    while True:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise ConnectionError(
                    f"Kafka at {bootstrap} unreachable for {give_up_s:.0f} s: {exc}"
                ) from exc
            log.warning("kafka_unreachable bootstrap=%s retry_in=%.1fs error=%s",
                        bootstrap, delay, exc)
        finally:
            await client.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def ensure_topics(
    bootstrap: str, partitions: int, names: tuple[str, ...] = topics.ALL
) -> None:
    """Create the ownercare topics with ``partitions`` partitions when they do not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # Another service may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
                )
            log.info("kafka_topics_created names=%s partitions=%s", missing, partitions)
    finally:
        await admin.close()
