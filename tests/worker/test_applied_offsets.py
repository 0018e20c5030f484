"""Which offsets the worker hands to Faust as applied (``worker.applied_offsets``)."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from worker.applied_offsets import AppliedOffsets, gap_before


def test_the_first_record_after_a_restart_covers_everything_below_it() -> None:
    assert gap_before(None, 48) == (0, 47)  # Faust clamps it to after its committed offset
    assert gap_before(None, 0) is None


def test_consecutive_records_need_nothing_and_a_skip_is_handed_over() -> None:
    assert gap_before(47, 48) is None
    assert gap_before(31, 48) == (32, 47)
    assert gap_before(60, 48) == (0, 47)  # redelivered from further back: all below applied


@given(last=st.one_of(st.none(), st.integers(0, 2**40)), offset=st.integers(0, 2**40))
def test_the_range_is_exactly_what_lies_between(last: int | None, offset: int) -> None:
    gap = gap_before(last, offset)
    if gap is None:
        assert offset == 0 or last == offset - 1
        return
    begin, end = gap
    assert 0 <= begin <= end == offset - 1
    if last is not None and last < offset:
        assert begin == last + 1  # never below what the stream itself delivered


def test_faust_commits_past_the_skipped_records_only_once_told() -> None:
    """A real Faust consumer's commit bookkeeping (in memory, no broker needed), in the state
    a restart left it: committed 31, records 48-62 delivered and acked, 31-47 applied by the
    catch-up. Faust alone would never commit past 31; told, it commits up to 63."""
    async def check() -> None:
        app = faust.App("applied-offsets-test", broker="kafka://127.0.0.1:9",
                        store="memory://")
        consumer = app.consumer
        tp = TP("ownercare.vehicles", 4)
        consumer._committed_offset[tp] = 31
        for offset in range(48, 63):  # what Consumer.ack records for each delivered record
            consumer._acked[tp].append(offset)
            consumer._acked_index[tp].add(offset)
        assert consumer._new_offset(tp) is None  # stuck: it waits for acks of 32-47
        await AppliedOffsets(consumer).applied(tp, 48)
        assert consumer._new_offset(tp) == 63

    asyncio.run(check())
