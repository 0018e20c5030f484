"""The generic detector on every numeric signal of every car, inside the ``diagnose`` agent.

On when ``OWNERCARE_GENERIC_DETECTOR`` is set. Its states live in their own changelogged
table, ``generic-diagnostics``: many small keys (one per car and signal,
``diagnostics/generic_signals.py``) written only when a signal is sampled (one value per signal
per 5 minutes of event time), so they never ride along with the vehicle states that change
on every message. It runs in the ``diagnose`` agent rather than in an agent of its own: one
consumer of the vehicle records, whose catch-up after a restart starts at the older of the two
tables' positions. Replaying records a table already holds changes nothing: the vehicle
pipeline drops them by ``seq``, the generic one samples by event time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TP, EventT

from config.settings import WorkerSettings
from diagnostics.generic_signals import GenericSignals
from diagnostics.pipeline import POSITION_PREFIX


class VouchedTable(faust.Table):  # type: ignore[type-arg]
    """A table that restores a changelog record only once a position record of its
    partition follows it.

    Why: a restored changelog can end inside a checkpoint -- Faust stops reading at the high
    watermark Tansu reports short of the end (docs/operations.md), and a worker killed while it
    sends a checkpoint leaves the changelog itself there. A vehicle state is one key, which the
    vehicle pipeline can take at any checkpoint, but one car's generic state is several keys
    that hold together (its sample clock and events, each signal's history, the fleet
    counts): its signal keys from one checkpoint and its own key from the next make the replay
    skip samples the signal states never had (seen: a ``signal_drift`` opening a day early
    after a restart). The partition's position is written last in each checkpoint
    (``worker/checkpoint.py``) and vouches for the records before it, so what follows the last
    one is left out: the table is then exactly as at that checkpoint, and the records after
    its position are replayed from the source (``consume_with_catch_up``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unvouched: dict[int, list[EventT[Any]]] = {}

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]]) -> None:
        vouched: list[EventT[Any]] = []
        for event in batch:
            pending = self._unvouched.setdefault(event.message.partition, [])
            pending.append(event)
            if str(event.key).startswith(POSITION_PREFIX):
                vouched += pending
                pending.clear()
        super().apply_changelog_batch(vouched)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP],
                           newly_assigned: set[TP], generation_id: int = 0) -> None:
        # The in-memory store's recovery reads every changelog again from its start. What no
        # position followed (a checkpoint cut short) is never taken.
        self._unvouched.clear()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


class Generic:
    """The generic pipeline and its table, for ``diagnose``'s record step."""

    def __init__(self, app: faust.App, settings: WorkerSettings, checkpointed: Any,
                 source_topic: str) -> None:
        self.table = VouchedTable(
            app, name="generic-diagnostics", default=None, beacon=app.tables.beacon,
            partitions=settings.partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"))
        app.tables.add(self.table)
        self.pipeline = GenericSignals()
        self.states = checkpointed(app, self.table, source_topic, settings)

    def process(self, partition: int, offset: int, records: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return self.pipeline.process_source(self.table, partition, offset, records)

    def write(self, partition: int, writes: dict[str, Any]) -> int:
        return int(self.states.write(partition, writes))


class Positions:
    """The older of two tables' source positions: where ``diagnose``'s catch-up starts."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def get(self, key: str) -> int | None:
        if not key.startswith(POSITION_PREFIX):
            raise KeyError(key)
        a, b = self.first.get(key), self.second.get(key)
        return None if a is None or b is None else min(int(a), int(b))
