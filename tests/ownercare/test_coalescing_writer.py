"""The embedded MQTT broker's CoalescingWriter: one socket write per connection per loop turn,
bytes in the order amqtt wrote them, nothing lost at close."""

from __future__ import annotations

import asyncio

from ownercare.embedded_mqtt import CoalescingWriter


class RecordingWriter:
    """What amqtt's StreamWriterAdapter offers the handler, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.is_closed = False
        self.closed_after: int | None = None

    def write(self, data: bytes) -> None:
        assert not self.is_closed
        self.writes.append(data)

    async def drain(self) -> None:
        return None

    async def close(self) -> None:
        self.is_closed = True
        self.closed_after = len(self.writes)

    def get_peer_info(self) -> tuple[str, int]:
        return ("127.0.0.1", 1883)


def test_packets_of_one_turn_leave_in_one_write_in_order() -> None:
    async def scenario() -> list[bytes]:
        inner = RecordingWriter()
        writer = CoalescingWriter(inner)
        for packet in (b"PUBACK1", b"PUBLISH2", b"PUBACK3"):
            writer.write(packet)
            await writer.drain()  # amqtt drains after each packet; this must not split them
        assert inner.writes == []  # nothing sent until the turn ends
        await asyncio.sleep(0)
        writer.write(b"PUBLISH4")
        await asyncio.sleep(0)
        return inner.writes

    assert asyncio.run(scenario()) == [b"PUBACK1PUBLISH2PUBACK3", b"PUBLISH4"]


def test_close_sends_what_is_pending_first() -> None:
    async def scenario() -> RecordingWriter:
        inner = RecordingWriter()
        writer = CoalescingWriter(inner)
        writer.write(b"CONNACK")
        await writer.close()
        await asyncio.sleep(0)  # the scheduled flush finds the writer closed: no second write
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes == [b"CONNACK"]
    assert inner.closed_after == 1


def test_nothing_is_written_once_the_connection_closed() -> None:
    async def scenario() -> RecordingWriter:
        inner = RecordingWriter()
        writer = CoalescingWriter(inner)
        writer.write(b"PUBLISH1")
        inner.is_closed = True  # amqtt closed the raw writer itself
        writer.write(b"PUBLISH2")
        await asyncio.sleep(0)
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes == []
    assert CoalescingWriter(inner).get_peer_info() == ("127.0.0.1", 1883)
