"""Tell Faust's consumer which source offsets the worker applied without Faust delivering them.

Faust commits a partition's offset only up to its first unacknowledged offset: it counts the
records its stream delivered (acked), plus the ranges it noticed it skipped (its "gaps").
After a restart or a rebalance, the first record Faust delivers for a partition can be
beyond the committed offset without Faust recording the skipped range as a gap (seen against
the embedded Tansu: committed 31, first delivered 48). The worker still applies the skipped
records: ``consume_with_catch_up`` replays whatever the partition's table lacks from Kafka.
But Faust then waits forever for acks of offsets it never delivered, the committed offset
stays where it was however many records are processed, and the consumer-lag gauge (end
minus committed) stays up, while a restart would replay everything since.

So once the record at ``offset`` is applied, when it does not directly follow the previous
one this worker applied on its partition, everything below it is known applied (the
catch-up guarantees it) and is handed to Faust as a gap: it then commits past it. Faust
clamps the range to after its committed offset, so nothing it already committed moves back.
"""

from __future__ import annotations

from typing import Any


def gap_before(last: int | None, offset: int) -> tuple[int, int] | None:
    """The range (inclusive) to hand to Faust once ``offset`` is applied, ``last`` being the
    previous offset applied through the stream on its partition (None: none yet); None when
    ``offset`` directly follows it or nothing lies below it."""
    if offset <= 0 or (last is not None and offset == last + 1):
        return None
    return (0 if last is None or last >= offset else last + 1), offset - 1


class AppliedOffsets:
    """Per (topic, partition), the last offset applied through the stream (module doc)."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer  # a faust Consumer; Any: ``_add_gap`` is not in its type
        self.last: dict[tuple[str, int], int] = {}

    async def applied(self, tp: Any, offset: int) -> None:
        """The record at ``offset`` of ``tp`` (a faust TP) and every one before it are
        applied."""
        key = (tp.topic, tp.partition)
        gap = gap_before(self.last.get(key), offset)
        self.last[key] = offset
        if gap is not None:
            await self.consumer._add_gap(tp, *gap)
