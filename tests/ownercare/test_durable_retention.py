"""Retention of the embedded Kafka on disk: old records go, unread ones never.

The rule (``expired``) is checked with hypothesis; then the real thing: Tansu on the local S3
server, records in several batches, one group's committed offset in the middle, the batch
files aged by a day, and a sweep. Kafka must then start the partitions where the sweep cut
them, serve every record a group has not read, and keep a changelog whole.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import given
from hypothesis import strategies as st

from ownercare import embedded, embedded_s3
from ownercare.embedded_kafka import EmbeddedKafka
from ownercare.retention import Batch, Retention, SafeOffsets, batches, expired, partitions

pytestmark = pytest.mark.integration  # the last two run Tansu and the S3 server

DAY_S = 86_400.0


@st.composite
def partition_batches(draw: st.DrawFn) -> list[Batch]:
    sizes = draw(st.lists(st.integers(1, 50), min_size=0, max_size=12))
    mtimes = draw(st.lists(st.floats(0, 1000), min_size=len(sizes), max_size=len(sizes)))
    found, base = [], 0
    for size, mtime in zip(sizes, sorted(mtimes), strict=True):
        found.append(Batch(base, Path(f"{base:020}.batch"), mtime, size))
        base += size
    return found


@given(partition_batches(), st.one_of(st.none(), st.integers(0, 700)), st.floats(0, 1000))
def test_expired_is_an_old_fully_read_prefix_never_the_newest(
    found: list[Batch], consumed: int | None, before_s: float
) -> None:
    gone = expired(found, consumed, before_s)
    assert gone == found[:len(gone)]  # a prefix: the log stays contiguous
    assert len(gone) < max(1, len(found))  # never the newest batch
    for batch, after in zip(gone, found[1:], strict=False):
        assert batch.mtime_s <= before_s
        if consumed is not None:
            assert after.base <= consumed  # every record in it was read
    if len(gone) + 1 < len(found):  # the next one stayed for a reason
        nxt, after = found[len(gone)], found[len(gone) + 1]
        assert nxt.mtime_s > before_s or (consumed is not None and after.base > consumed)


def test_safe_offsets_are_those_at_least_the_grace_old() -> None:
    history = SafeOffsets(grace_s=600)
    history.observe(0, {("t", 0): 5})
    assert history.safe(599) is None
    history.observe(300, {("t", 0): 9})
    history.observe(700, {("t", 0): 20})
    assert history.safe(600) == {("t", 0): 5}
    assert history.safe(900) == {("t", 0): 9}
    assert history.safe(1300) == {("t", 0): 20}


def test_a_missing_log_is_an_empty_one(tmp_path: Path) -> None:
    swept = Retention(tmp_path / "nothing", DAY_S, 0).sweep(time.time())
    assert (swept.deleted, swept.kept_bytes) == (0, 0)


# ----------------------------------------------------------------------------- real Tansu
TOPIC, UNREAD, CHANGELOG = "telemetry", "reports", "app-table-changelog"


async def fill(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in (TOPIC, UNREAD, CHANGELOG)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:  # one send_and_wait per record: one batch (one object) per record
        for topic in (TOPIC, UNREAD, CHANGELOG):
            for n in range(10):
                await producer.send_and_wait(topic, b"%d" % n, key=b"k%d" % (n % 2), partition=0)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def log_of(bootstrap: str, topic: str) -> tuple[int, list[int]]:
    """The partition's start offset and the offsets a read from its start gets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        start = (await consumer.beginning_offsets([tp]))[tp]
        consumer.assign([tp])
        consumer.seek(tp, 0)
        offsets: list[int] = []
        deadline = time.monotonic() + 30
        while (not offsets or offsets[-1] < 9) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                offsets += [r.offset for r in records]
        return start, offsets
    finally:
        await consumer.stop()


def age(records: Path, seconds: float) -> None:
    for path in records.iterdir():
        stat = path.stat()
        os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def test_retention_deletes_old_read_records_and_never_unread_ones(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    kafka = EmbeddedKafka(embedded.free_port(), "disk", tmp_path, logs, 0, retention_h=24,
                          retention_grace_s=0)
    kafka.start()
    try:
        bootstrap = f"127.0.0.1:{kafka.port}"
        asyncio.run(fill(bootstrap))
        asyncio.run(commit(bootstrap, "readers", 6))
        bucket = tmp_path / "kafka" / embedded_s3.BUCKET
        found = {tp[0]: records for tp, records in partitions(next(
            (bucket / "clusters").iterdir()))}
        assert len(batches(found[TOPIC])) == 10
        fresh = kafka.sweep()
        assert fresh.deleted == 0  # all younger than the window

        for records in found.values():
            age(records, 2 * DAY_S)
        swept = kafka.sweep()
        # telemetry: read up to 6 -> its first six batches go; reports: nobody reads it, so
        # all but its newest batch go; the changelog stays whole.
        assert swept.deleted == 6 + 9
        assert asyncio.run(log_of(bootstrap, TOPIC)) == (6, list(range(6, 10)))
        assert asyncio.run(log_of(bootstrap, UNREAD)) == (9, [9])
        assert asyncio.run(log_of(bootstrap, CHANGELOG)) == (0, list(range(10)))
        assert kafka.sweep().deleted == 0  # nothing read further since
    finally:
        kafka.stop()


def test_retention_waits_the_grace_before_trusting_a_commit(tmp_path: Path) -> None:
    """A restarted worker may replay from before its committed offset: nothing is trimmed
    below a commit younger than the grace, however old the files."""
    logs = tmp_path / "logs"
    logs.mkdir()
    kafka = EmbeddedKafka(embedded.free_port(), "disk", tmp_path, logs, 0, retention_h=24,
                          retention_grace_s=3600)
    kafka.start()
    try:
        bootstrap = f"127.0.0.1:{kafka.port}"
        asyncio.run(fill(bootstrap))
        asyncio.run(commit(bootstrap, "readers", 6))
        bucket = tmp_path / "kafka" / embedded_s3.BUCKET
        for _tp, records in partitions(next((bucket / "clusters").iterdir())):
            age(records, 2 * DAY_S)
        assert kafka.sweep().deleted == 0
        assert asyncio.run(log_of(bootstrap, TOPIC)) == (0, list(range(10)))
    finally:
        kafka.stop()
