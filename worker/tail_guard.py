"""Re-read a partition's records that Faust read but never handed to the agent.

Why: Faust (faust-streaming 0.15) can lose source records while a worker finishes its table
recovery. It resumes the source partitions and then seeks them to their committed offsets;
records fetched in between are counted as read (its per-partition read offset moves past
them) and never reach the agent's stream, and after the seek it drops the refetched copies
as already read. Seen against the embedded Tansu after a restart: a partition's
``_read_offset`` and fetch position at its end (47), its committed offset at 23, and not one of
records 23..46 applied; the more work the agent does while Faust seeks (a catch-up replay,
heavier with the generic detector's table), the more records it loses.

``consume_with_catch_up`` fills a hole *below* a record that Faust does deliver (it replays the
gap from Kafka), so a hole at the end of a partition has nothing to trigger that: with no
newer record the worker stops short of the stream's end, with no error. So while the agent is
idle, a partition whose high watermark (the one the fetches report, which Tansu gets right) is
past the last offset the agent applied, and stays so for a whole check interval, is sought
back to its first unapplied offset: Faust delivers those records again. A record already
applied that comes again changes nothing (the pipelines drop it by ``seq``/event time), so a
seek that was not needed costs a re-read, never a result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0


def refetch_from(position: int | None, committed: int | None, highwater: int | None
                 ) -> int | None:
    """The first offset to read again, or None when nothing is missing.

    ``position``: the partition's last applied offset (None: the table holds none);
    ``committed``: the group's committed offset (None: none); ``highwater``: the offset after
    the partition's last record (None: not fetched yet). A table without a position has
    applied nothing since the restart: the record at the committed offset is the one Faust
    owes it (the catch-up then replays what lies below), so the guard never replays more than
    that catch-up would.
    """
    if highwater is None:
        return None
    first_unapplied = (committed or 0) if position is None else position + 1
    return first_unapplied if first_unapplied < highwater else None


class TailGuard:
    """Watches one agent's source partitions (see the module doc)."""

    def __init__(self, consumer: Any, topic: str, position: Callable[[int], int | None],
                 name: str) -> None:
        self.consumer = consumer  # a faust Consumer
        self.topic = topic
        self.position = position
        self.name = name
        self.busy = False  # the agent holds a record it has not applied yet
        self._suspect: dict[int, int] = {}  # partition -> first unapplied offset last check

    async def run(self, every_s: float = CHECK_EVERY_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.check()
            except Exception as exc:  # a rebalance took the partition: check again later
                self._suspect.clear()
                log.warning("%s_refetch_failed error=%r", self.name, exc)

    async def check(self) -> None:
        """One check; seeks a partition the second time in a row it is found behind."""
        if self.busy:
            self._suspect.clear()  # the agent is working: its position moves
            return
        suspect: dict[int, int] = {}
        for tp in self.consumer.assignment():
            if tp.topic != self.topic:
                continue
            # Faust's committed offsets, as it read them at its seek and moved them since.
            committed = self.consumer._committed_offset.get(tp)
            start = refetch_from(self.position(tp.partition), committed,
                                 self.consumer.highwater(tp))
            if start is None:
                continue
            if self._suspect.get(tp.partition) != start:
                suspect[tp.partition] = start  # first sighting: it may be on its way
                continue
            log.warning("%s_refetch partition=%s from=%s highwater=%s", self.name,
                        tp.partition, start, self.consumer.highwater(tp))
            await self.consumer.seek(tp, start)
        self._suspect = suspect
