"""Which bridge of a sharded set forwards a device's messages.

Every bridge of a set of n subscribes to every device topic and forwards only the assets of
its own share, acknowledging the others' messages unread. One asset's messages therefore all
pass through one bridge, in the order the broker received them, which a ``$share`` group on
Mosquitto (it hands messages to the members in turn) does not keep. The share is the murmur2
hash of the asset id that Kafka partitions by, so with n dividing the partition count each
partition has one writer.
"""

from __future__ import annotations

from ingest.kafka import partition_for


def topic_asset(topic: str) -> str:
    """The asset id of ``<kind>/<id>/...``; "" for a topic without one (dead-lettered later)."""
    parts = topic.split("/", 2)
    return parts[1] if len(parts) > 2 else ""


class Shard:
    """Share ``index`` (1-based) of ``count``."""

    def __init__(self, index: int, count: int) -> None:
        if not 1 <= index <= count:
            raise ValueError(f"shard {index}/{count}: needs 1 <= index <= count")
        self.index = index
        self.count = count

    def owns(self, topic: str) -> bool:
        """Whether this bridge forwards the message: exactly one share of n owns any topic
        (a topic without an asset id belongs to the first, which dead-letters it)."""
        if self.count == 1:
            return True
        asset = topic_asset(topic)
        if not asset:
            return self.index == 1
        return partition_for(asset, self.count) == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
