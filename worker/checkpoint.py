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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from diagnostics.pipeline import POSITION_PREFIX


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


def _write_rank(key: str) -> int:
    if key.startswith(POSITION_PREFIX):
        return 2
    return 1 if key.startswith("#") else 0


PositionCap = Callable[[int], "int | None"]


class CheckpointedTable:
    """A Faust table whose writes reach the changelog at checkpoints (see the module doc).

    ``write`` must be called while the agent processes a record of ``partition``: Faust sends
    a table's changelog records to the partition of the event being processed.

    ``cap``: the partition's last offset whose effects *outside* the table are durable too
    (None: none yet), for an agent whose records also feed something written elsewhere (the
    view writer). The changelog's position never passes it, so a restart replays whatever the
    outside effects may lack; the detectors drop the replayed records they already hold
    (``VehiclePipeline`` by seq/ts). The in-memory position is not capped: it says what the
    detectors hold. With no capped position to write yet, the checkpoint leaves the
    changelog's position where it was and writes it next time.
    """

    def __init__(self, table: Any, every_s: float, clock: Callable[[], float],
                 cap: PositionCap | None = None) -> None:
        self.table = table
        self.staged = StagedWrites(every_s, clock)
        self.cap = cap

    def write(self, partition: int, writes: Mapping[str, Any]) -> int:
        """Apply ``writes`` in memory now; returns how many changelog records were sent."""
        data = self.table.data  # the in-memory store: setting it sends no changelog record
        for key, value in writes.items():
            data[key] = value
        if not self.staged.stage(partition, writes):
            return 0
        keys = self.staged.take(partition)
        sent = 0
        for key in keys:
            value = data[key]
            if self.cap is not None and key.startswith(POSITION_PREFIX):
                durable = self.cap(partition)
                if durable is None:
                    self.staged.stage(partition, [key])  # nothing durable outside yet
                    continue
                if durable < value:
                    # Faust's ``table[key] = v`` sets memory too: put the true position back.
                    self.table[key] = durable
                    data[key] = value
                    sent += 1
                    continue
            self.table[key] = value  # the changelog record (and the same value in memory)
            sent += 1
        return sent
