"""Kafka helpers shared by the bridge, the worker and the tools: topic creation, partitioning."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from ingest import topics

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1 << 17)  # a fleet's VINs repeat every second; murmur2 is pure Python
def partition_for(asset_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``asset_id``.

    The bridge packs records of many vehicles into one Kafka record per partition; using the
    same murmur2 hash as a keyed producer keeps every VIN on "its" partition, so Faust table
    state (changelogged by the partition of the event being processed) stays co-partitioned.
    """
    return int(murmur2(asset_id.encode()) & 0x7FFFFFFF) % partitions


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
    """Create the ownercare topics with ``partitions`` partitions when they do not exist
    (those of ``topics.SINGLE_PARTITION`` with one)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # Another service may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, num_partitions=1 if n in topics.SINGLE_PARTITION else partitions,
                              replication_factor=1) for n in missing]
                )
            log.info("kafka_topics_created names=%s partitions=%s", missing, partitions)
    finally:
        await admin.close()


async def read_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int, timeout_s: float = 60.0
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield ``(offset, value)`` of the records of one partition from ``start`` up to ``end``.

    ``end`` is exclusive and must be an offset the caller has seen (a record that exists), so
    the read stops on the records themselves and never asks for the broker's high watermark
    (Tansu's memory engine reports it short of the last batch). Records already deleted by
    retention are skipped. Raises TimeoutError when the range cannot be read in ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        if max(start, first) >= end:
            return
        consumer.seek(tp, max(start, first))
        deadline = time.monotonic() + timeout_s
        while True:
            fetched = await consumer.getmany(tp, timeout_ms=500)
            for message in fetched.get(tp, []):
                if message.offset >= end:
                    return
                yield message.offset, message.value or b""
            # The position also moves past offsets that hold no record (control batches).
            position = await consumer.position(tp)
            if position >= end:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}[{partition}] offsets {position}..{end - 1} "
                                   f"not readable in {timeout_s:g} s")
    finally:
        await consumer.stop()
