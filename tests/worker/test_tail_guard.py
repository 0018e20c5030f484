"""The tail guard seeks a partition back only when the agent is idle and the partition has
stayed behind its high watermark for a whole check (worker/tail_guard.py)."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from worker.tail_guard import TailGuard, refetch_from


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    """Faust's consumer as the guard sees it: assignment, fetched high watermarks, seek."""

    def __init__(self, highwaters: dict[TP, int | None]) -> None:
        self.highwaters = highwaters
        self._committed_offset: dict[TP, int] = {}
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@given(st.none() | st.integers(0, 100), st.none() | st.integers(0, 100),
       st.none() | st.integers(0, 100))
def test_refetch_starts_at_the_first_unapplied_offset_below_the_high_watermark(
    position: int | None, committed: int | None, highwater: int | None
) -> None:
    start = refetch_from(position, committed, highwater)
    # Nothing applied since the restart: the record at the committed offset is owed first.
    first_unapplied = (committed or 0) if position is None else position + 1
    if highwater is None or first_unapplied >= highwater:
        assert start is None
    else:
        assert start == first_unapplied


def test_a_partition_behind_twice_in_a_row_while_idle_is_sought_back() -> None:
    behind, done, other = TP("v", 4), TP("v", 0), TP("c", 4)
    consumer = Consumer({behind: 47, done: 47, other: 9})
    positions: dict[int, Any] = {4: 22, 0: 46}
    guard = TailGuard(consumer, "v", positions.get, "diagnose")

    async def checks() -> None:
        await guard.check()  # first sighting: the records may be on their way
        assert consumer.seeks == []
        guard.busy = True
        await guard.check()  # the agent is working: start over
        guard.busy = False
        await guard.check()
        assert consumer.seeks == []
        await guard.check()
        assert consumer.seeks == [(behind, 23)]
        positions[4] = 30  # progress since the last check: not sought again yet
        await guard.check()
        assert consumer.seeks == [(behind, 23)]
        positions[4] = 46
        await guard.check()
        await guard.check()
        assert consumer.seeks == [(behind, 23)]
        # A table with no position yet: the record at the committed offset is owed.
        consumer._committed_offset[behind] = 40
        del positions[4]
        await guard.check()
        await guard.check()
        assert consumer.seeks == [(behind, 23), (behind, 40)]

    asyncio.run(checks())
