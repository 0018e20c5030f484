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

from typing import Any

import faust

from config.settings import WorkerSettings
from diagnostics.generic_signals import GenericSignals
from diagnostics.pipeline import POSITION_PREFIX


class Generic:
    """The generic pipeline and its table, for ``diagnose``'s record step."""

    def __init__(self, app: faust.App, settings: WorkerSettings, checkpointed: Any,
                 source_topic: str) -> None:
        self.table = app.Table("generic-diagnostics", default=None,
                               partitions=settings.partitions,
                               schema=faust.Schema(key_serializer="json",
                                                   value_serializer="json"))
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
