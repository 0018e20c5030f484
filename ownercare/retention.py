"""Retention for the embedded Kafka on disk: delete what is old and read by everyone.

Tansu 0.6's object-store engine keeps every record forever and answers DeleteRecords with a
panic (``dynostore.rs``: ``todo!()``), so ``ownercare run`` trims the log itself, in the files
the local S3 server keeps (``ownercare.embedded_s3``): one object per produced batch,
``.../topics/<topic>/partitions/<p>/records/<base offset>.batch``. Removing the oldest batch
files is what DeleteRecords would do: Tansu then reports the next batch's base offset as the
partition's start, and a fetch below it continues from there.

A batch goes when all of these hold:

* it is older than the retention window (its file's modification time, when Tansu wrote it:
  processing time is right here, this is operations, not a detector's event time);
* every consumer group that commits offsets on its topic had committed past its last record
  at least ``grace_s`` ago while this process watched. The grace covers the worker's restart
  design: a restarted worker replays source records from its table's checkpointed position,
  which may trail its committed offset by a checkpoint interval or two
  (``diagnostics/pipeline.py``); those records must still be there. After a restart of
  ``ownercare run`` nothing is trimmed until the grace has passed, however old the files are;
* it is not the partition's newest batch (the files are the partition's only record of how
  far it got).

Changelog topics (``*-changelog``) are trimmed only below what a group commits on them: a
table's newest value for a key may sit in an old batch, and Tansu cannot compact. The worker
rewrites every state it holds now and then and commits, as the offsets of a group of their own,
the offset below which each changelog partition holds only replaced records
(``worker/changelog_marks.py``); the same age and grace rules apply below it. A changelog no
group commits on is kept whole.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TopicPartition = tuple[str, int]
CHANGELOG_SUFFIX = "-changelog"


@dataclass(frozen=True)
class Batch:
    base: int  # offset of its first record
    path: Path
    mtime_s: float
    size: int


def expired(batches: Sequence[Batch], consumed: int | None, before_s: float) -> list[Batch]:
    """The batches of one partition (sorted by base offset) to delete: the longest prefix in
    which every batch was written at or before ``before_s`` and holds only records below
    ``consumed`` (the offset every reader has reached; None: no group reads the topic),
    never the newest batch."""
    gone: list[Batch] = []
    for batch, after in zip(batches, batches[1:], strict=False):
        if batch.mtime_s > before_s or (consumed is not None and after.base > consumed):
            break
        gone.append(batch)
    return gone


class SafeOffsets:
    """Committed offsets as they were at least ``grace_s`` ago (what may be trimmed now)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._samples: deque[tuple[float, dict[TopicPartition, int]]] = deque()

    def observe(self, now_s: float, committed: Mapping[TopicPartition, int]) -> None:
        self._samples.append((now_s, dict(committed)))

    def safe(self, now_s: float) -> dict[TopicPartition, int] | None:
        """The newest sample at least ``grace_s`` old (None: none is yet); older ones go."""
        cutoff = now_s - self.grace_s
        while len(self._samples) >= 2 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        if self._samples and self._samples[0][0] <= cutoff:
            return self._samples[0][1]
        return None


def cluster_dirs(bucket_dir: Path) -> Iterator[Path]:
    clusters = bucket_dir / "clusters"
    if clusters.is_dir():
        yield from (path for path in sorted(clusters.iterdir()) if path.is_dir())


def partitions(cluster: Path) -> Iterator[tuple[TopicPartition, Path]]:
    topics = cluster / "topics"
    if not topics.is_dir():
        return
    for topic in sorted(topics.iterdir()):
        parts = topic / "partitions"
        if not parts.is_dir():
            continue
        for part in sorted(parts.iterdir()):
            if part.name.isdigit():
                yield (topic.name, int(part.name)), part / "records"


def batches(records: Path) -> list[Batch]:
    found: list[Batch] = []
    try:
        entries = list(os.scandir(records))
    except FileNotFoundError:
        return found
    for entry in entries:
        stem, dot, suffix = entry.name.partition(".")
        if dot and suffix == "batch" and stem.isdigit():
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            found.append(Batch(int(stem), Path(entry.path), stat.st_mtime, stat.st_size))
    return sorted(found, key=lambda b: b.base)


def committed(cluster: Path) -> dict[TopicPartition, int]:
    """Per partition of every topic some group commits on: the lowest offset any such group
    committed (0 for a partition a group reading the topic never committed)."""
    readers: dict[str, list[dict[int, int]]] = {}
    groups = cluster / "groups" / "consumers"
    if groups.is_dir():
        for group in sorted(groups.iterdir()):
            offsets = group / "offsets"
            if not offsets.is_dir():
                continue
            for topic_dir in offsets.iterdir():
                readers.setdefault(topic_dir.name, []).append(
                    _group_offsets(topic_dir / "partitions"))
    low: dict[TopicPartition, int] = {}
    for (topic, part), _records in partitions(cluster):
        if topic in readers:
            low[(topic, part)] = min(group.get(part, 0) for group in readers[topic])
    return low


def _group_offsets(parts: Path) -> dict[int, int]:
    found: dict[int, int] = {}
    if not parts.is_dir():
        return found
    for path in parts.iterdir():
        stem, _, suffix = path.name.partition(".")
        if suffix != "json" or not stem.isdigit():
            continue
        try:
            offset = json.loads(path.read_text()).get("offset")
        except (OSError, ValueError):
            continue  # being replaced: the next sweep reads it
        if isinstance(offset, int):
            found[int(stem)] = offset
    return found


@dataclass
class Sweep:
    deleted: int = 0
    deleted_bytes: int = 0
    kept_bytes: int = 0


class Retention:
    """Trims the Tansu log under ``bucket_dir`` (``<state dir>/kafka/tansu``)."""

    def __init__(self, bucket_dir: Path, window_s: float, grace_s: float) -> None:
        self.bucket_dir = bucket_dir
        self.window_s = window_s
        self.grace_s = grace_s
        self.history: dict[Path, SafeOffsets] = {}

    def sweep(self, now_s: float) -> Sweep:
        result = Sweep()
        for cluster in cluster_dirs(self.bucket_dir):
            history = self.history.setdefault(cluster, SafeOffsets(self.grace_s))
            now = committed(cluster)
            history.observe(now_s, now)
            safe = history.safe(now_s)
            for tp, records in partitions(cluster):
                found = batches(records)
                gone: list[Batch] = []
                if safe is not None:
                    if tp in safe:
                        gone = expired(found, safe[tp], now_s - self.window_s)
                    elif tp not in now and not tp[0].endswith(CHANGELOG_SUFFIX):
                        # No group reads it (one that began lately: wait).
                        gone = expired(found, None, now_s - self.window_s)
                for batch in gone:
                    batch.path.unlink(missing_ok=True)
                result.deleted += len(gone)
                result.deleted_bytes += sum(b.size for b in gone)
                result.kept_bytes += sum(b.size for b in found[len(gone):])
        return result
