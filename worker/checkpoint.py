"""Detector state written to the changelog at checkpoints, not after every record.

Why: at 1 Hz a driving car changes its detector state with every message (the thermal
detector sums each reading into the drive's estimate), so writing each changed state after
each source record would send one changelog record per vehicle message: 10 000 records/s of
~2.5 kB at 10 000 vehicles, more than the embedded Kafka broker (Tansu) takes, and the worker
would stall on its producer buffer. The restart design (``diagnostics/pipeline.py``) lets the
changelog lag the source: the table's per-partition position says which source records the
changelog's states hold, and a restarted worker replays the rest from Kafka. So the worker
keeps its writes in the table's in-memory store (where the detectors read them) and sends them
to the changelog once per ``every_s`` per source partition: each dirty key once, with its
newest value, the partition's position last. Any prefix of that changelog still never claims
more than its states hold; a crash costs a replay of at most ``every_s`` of processing.

The schedule is processing time, not event time: it bounds how much a restart replays, it
does not decide anything a detector reports (the results are the same for any schedule:
``tests/worker/test_worker_restart.py``). ``every_s = 0`` writes after every record. The
worker's default (``OWNERCARE_STATE_CHECKPOINT_S``, 30 s) is Kafka Streams' commit interval
under at-least-once, where its record cache likewise sends each key's newest value per commit.

Every ``refresh_s`` a partition's checkpoint sends *every* key the worker holds for it, not only
the changed ones. Once those records are acknowledged, each record the partition held before
the first of them is superseded by a newer one of the same key, so everything below that
offset can go: :meth:`CheckpointedTable.refreshed` reports it (``worker/changelog_marks.py``
commits it where the embedded Kafka's retention reads it). Apache Kafka compacts changelogs
itself; Tansu cannot, and without this a changelog keeps every checkpoint ever written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from faust.serializers import codecs

from diagnostics.pipeline import POSITION_PREFIX

log = logging.getLogger(__name__)


class StagedWrites:
    """Which table keys each source partition has changed since its last checkpoint."""

    def __init__(self, every_s: float, clock: Callable[[], float]) -> None:
        if every_s < 0:
            raise ValueError(f"checkpoint interval must be >= 0 s, got {every_s}")
        self.every_s = every_s
        self.clock = clock
        self._dirty: dict[int, dict[str, None]] = {}
        self._last: dict[int, float] = {}

    def stage(self, partition: int, keys: Iterable[str]) -> bool:
        """Note ``keys`` as changed; True when the partition's checkpoint is due now."""
        dirty = self._dirty.setdefault(partition, {})
        for key in keys:
            dirty[key] = None
        now = self.clock()
        last = self._last.get(partition)
        if last is None:
            # A partition's first checkpoint comes after its own share of the interval, so
            # partitions that start together do not all checkpoint at once: each sends every
            # state it changed, and eight at once stalled the worker on Faust's producer
            # buffer for seconds at 10 000 vehicles.
            last = self._last[partition] = now - self.every_s * (1.0 - _spread(partition))
        return now - last >= self.every_s

    def take(self, partition: int) -> list[str]:
        """The partition's changed keys in write order (positions last); forgets them."""
        dirty = self._dirty.pop(partition, {})
        self._last[partition] = self.clock()
        # States first, then the partition's clocks, the position last: it vouches for them.
        return sorted(dirty, key=_write_rank)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns: their next owner replays from the changelog's
        position, so nothing staged here may be written for them later."""
        for partition in partitions:
            self._dirty.pop(partition, None)
            self._last.pop(partition, None)

    def pending(self) -> int:
        return sum(len(keys) for keys in self._dirty.values())


def _spread(partition: int) -> float:
    """A share of the interval in [0, 1) per partition, evenly spread for any partition count
    (the golden-ratio sequence); partition 0 checkpoints at its first record."""
    return (partition * 0.6180339887498949) % 1.0


def _failed(sent: Any) -> bool:
    return bool(sent.cancelled() or sent.exception() is not None)


def _write_rank(key: str) -> int:
    if key.startswith(POSITION_PREFIX):
        return 2
    return 1 if key.startswith("#") else 0


PositionCap = Callable[[int], "int | None"]


class CheckpointedTable:
    """A Faust table whose writes reach the changelog at checkpoints (see the module doc).

    ``write`` must be called while the agent processes a record of ``partition``: the
    changelog partition of a key is the source partition of the records that change it.

    ``cap``: the partition's last offset whose effects *outside* the table are durable too
    (None: none yet), for an agent whose records also feed something written elsewhere (the
    view writer). The changelog's position never passes it, so a restart replays whatever the
    outside effects may lack; the detectors drop the replayed records they already hold
    (``VehiclePipeline`` by seq/ts). The in-memory position is not capped: it says what the
    detectors hold. With no capped position to write yet, the checkpoint leaves the
    changelog's position where it was and writes it next time.

    ``refresh_s``: how often a partition's checkpoint rewrites all its keys (0: never).
    """

    def __init__(self, table: Any, every_s: float, clock: Callable[[], float],
                 cap: PositionCap | None = None, refresh_s: float = 0.0) -> None:
        if refresh_s < 0:
            raise ValueError(f"changelog refresh interval must be >= 0 s, got {refresh_s}")
        self.table = table
        self.staged = StagedWrites(every_s, clock)
        self.cap = cap
        self.refresh_s = refresh_s
        self.clock = clock
        # Which changelog partition holds each key: the ones this worker wrote, and (through
        # the recovery hook) the ones it read back.
        self.partition_of: dict[Any, int] = {}
        self._last_refresh: dict[int, float] = {}
        self._refreshing: dict[int, tuple[Any, Any]] = {}  # first and last record's futures
        self._note_recovered_partitions()

    def _note_recovered_partitions(self) -> None:
        apply = self.table.apply_changelog_batch

        def noting(batch: Iterable[Any]) -> None:
            events = list(batch)
            for event in events:
                # The JSON key serializer gives the key as the table holds it (a string).
                self.partition_of[event.key] = event.message.partition
            apply(events)

        self.table.apply_changelog_batch = noting

    def write(self, partition: int, writes: Mapping[str, Any]) -> int:
        """Apply ``writes`` in memory now; returns how many changelog records were sent."""
        data = self.table.data  # the in-memory store: setting it sends no changelog record
        for key, value in writes.items():
            data[key] = value
            self.partition_of[key] = partition
        if not self.staged.stage(partition, writes):
            return 0
        keys = self.staged.take(partition)
        refresh = self._refresh_due(partition)
        if refresh:
            keys = sorted(dict.fromkeys([*keys, *self._held(partition)]), key=_write_rank)
            log.info("changelog_refresh table=%s partition=%s keys=%s",
                     getattr(self.table, "name", "?"), partition, len(keys))
        sent: list[Any] = []
        for key in keys:
            value = data[key]
            if self.cap is not None and key.startswith(POSITION_PREFIX):
                durable = self.cap(partition)
                if durable is None:
                    self.staged.stage(partition, [key])  # nothing durable outside yet
                    refresh = False  # the position's old record is still the only one
                    continue
                # Durable beyond the detectors: the detectors' position is the bound. The
                # in-memory position stays the detectors' own (catch-up and redelivery read it).
                value = min(value, durable)
            # Serialized now: Faust would do it when its producer buffer drains, by which time
            # the detectors may have changed this very dict again, and the record would pair
            # a newer state with this checkpoint's older position and clock.
            frozen = codecs.dumps(self.table.value_serializer, value)
            sent.append(self.table.send_changelog(partition, key, frozen,
                                                  value_serializer="raw"))
        if refresh and sent:
            self._refreshing[partition] = (sent[0], sent[-1])
        return len(sent)

    def _refresh_due(self, partition: int) -> bool:
        if self.refresh_s <= 0:
            return False
        now = self.clock()
        last = self._last_refresh.get(partition)
        if last is None:  # spread like the checkpoints, so partitions refresh apart
            last = now - self.refresh_s * (1.0 - _spread(partition))
        if now - last < self.refresh_s:
            self._last_refresh[partition] = last
            return False
        self._last_refresh[partition] = now
        return True

    def _held(self, partition: int) -> list[Any]:
        data = self.table.data
        return [k for k, p in self.partition_of.items() if p == partition and k in data]

    def refreshed(self) -> dict[int, int]:
        """Per partition, the changelog offset below which every record is superseded (the
        first record of its newest refresh, once that refresh is acknowledged in full)."""
        marks: dict[int, int] = {}
        for partition, (first, last) in list(self._refreshing.items()):
            if not (first.done() and last.done()):
                continue
            if _failed(first) or _failed(last):
                del self._refreshing[partition]  # the next refresh tries again
                continue
            marks[partition] = int(first.result().offset)
        return marks

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked in a rebalance (see ``StagedWrites.forget``): their staged writes
        and their keys in memory go, so whoever owns them next -- another worker or this one
        again -- starts from the changelog alone, as after a restart.

        Why the keys too: a partition this worker keeps through a rebalance is recovered
        again from where its last recovery stopped, which re-reads this worker's own
        checkpoints over the newer states in memory. Keys a checkpoint wrote would go back to
        it while others -- the partition's position among them, when no checkpoint could
        write it yet -- kept their newer values: a position that vouches for states that are
        no longer there, records never replayed into them, and a sweep that finds a
        reporting car silent. From the changelog alone the table is a prefix of it, which the
        restart rules (``diagnostics/pipeline.py``) make whole again. The caller makes that
        recovery start at the changelog's beginning (``worker.agents.checkpointed``)."""
        lost = set(partitions)
        self.staged.forget(lost)
        data = self.table.data
        for key, partition in list(self.partition_of.items()):
            if partition in lost:
                data.pop(key, None)
                del self.partition_of[key]
        for partition in lost:
            self._last_refresh.pop(partition, None)
            self._refreshing.pop(partition, None)
