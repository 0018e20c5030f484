"""The charging attribution's inputs in event-time order, whatever order they arrive in.

The attribution (``diagnostics/attribution.py``) hears of a session twice over: from the
charger pipeline (the charger's report) and from the car (its own account of a public
session). The two come from different streams -- in the worker, from different agents that
each run at their own pace and restart from their own positions -- so the order in which one
session's two accounts, or a session and the car's next one elsewhere, meet depends on which
agent was ahead. The rules read windows of sessions, so that order would change what is
decided and when: a car's account could briefly stand for a session its charger reports
later, and an alert could open a day earlier or later after a worker restart.

``OrderedAttribution`` removes the race. Every input is held until both streams have passed
its event time, then released to the attribution in event-time order (ties: the charger's
report first, then the car's accounts, then by session). Each stream's progress is its clock,
from the ``clock`` ticks its producers send per source partition as their records go by
(``clock_tick``), so a stream with no session for a while still moves on: the oldest of its
partitions' clocks, because with several workers (or a bridge restarting with its shard of
the fleet) one partition's cars can run hours behind another's. Without ticks (a caller
feeding sessions alone) a stream's clock is the newest event time of its inputs.
``hold_ms`` allows for the disorder within a partition (its devices running a little apart).
A stream or partition that has fallen silent (``max_wait_ms``, a week, behind the newest: a
fleet whose chargers have all stopped reporting, a partition whose every car went quiet) is
not waited for; a week because a restarted worker's agents catch up on their backlogs at very
different speeds (a replay at 15 000x puts one stream days ahead of the other for a while).
Until then, a quiet partition delays the attribution's alerts by as long as it is quiet. An
input that arrives after its time has been released (a stream further behind than that, or a
redelivery after a restart) goes in at once; the attribution recognises redeliveries.

State: one JSON value, ``ORDER_KEY``, among the attribution's asset states (in the worker, in
the same changelogged table): the clocks, the release mark and the inputs held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from diagnostics.attribution import CAR_CHARGE, AssetState, ChargingAttribution, TableOverlay
from diagnostics.pipeline import table_writes
from vocab.eventtime import DAY_MS, HOUR_MS

ORDER_KEY = "order"
CLOCK = "clock"
CAR = "car"
CHARGER = "charger"
TICK_MS = 5 * 60_000  # a stream's clock moves on in steps of at least this much event time


def clock_tick(source: str, ts: int, partition: int | None = None) -> dict[str, Any]:
    """An input saying ``source``'s stream (its ``partition``, when given) has reached event
    time ``ts``."""
    tick: dict[str, Any] = {"kind": CLOCK, "source": source, "ts": int(ts)}
    if partition is not None:
        tick["partition"] = int(partition)
    return tick


class ClockTicks:
    """The ``clock`` ticks a producer sends after the records it has read: one per source
    partition each time its newest event time has moved ``TICK_MS`` on. In memory only: after
    a restart the first batch ticks again, and a repeated tick changes nothing."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.last: dict[int, int] = {}

    def after(self, partition: int, records: Iterable[Mapping[str, Any]]
              ) -> dict[str, Any] | None:
        newest = max((int(r["ts"]) for r in records), default=None)
        last = self.last.get(partition)
        if newest is None or (last is not None and newest < last + TICK_MS):
            return None
        self.last[partition] = newest
        return clock_tick(self.source, newest, partition)


def source_of(item: Mapping[str, Any]) -> str:
    """Which stream an input came from: a car's account or the charger pipeline's report."""
    if item.get("kind") == CLOCK:
        return str(item["source"])
    return CAR if item.get("kind") == CAR_CHARGE else CHARGER


def _sort_key(item: Mapping[str, Any]) -> list[Any]:
    rank = 0 if source_of(item) == CHARGER else 1 if item.get("event") == "end" else 2
    # Equal keys are the same session told twice (a redelivery): their order does not matter.
    name = item.get("session_id") or f"{item.get('vin')}@{item.get('charger_id')}"
    return [int(item["ts"]), rank, str(name)]


def new_order_state() -> dict[str, Any]:
    return {"clocks": {}, "released": None, "held": []}


class OrderedAttribution:
    """``ChargingAttribution`` fed in event-time order (see the module docstring)."""

    def __init__(self, attribution: ChargingAttribution | None = None,
                 hold_ms: int = 2 * HOUR_MS, max_wait_ms: int = 7 * DAY_MS) -> None:
        if hold_ms < 0 or max_wait_ms <= hold_ms:
            raise ValueError("need hold_ms >= 0 and max_wait_ms > hold_ms")
        self.attribution = attribution or ChargingAttribution()
        self.hold_ms = hold_ms
        self.max_wait_ms = max_wait_ms

    def process(self, items: Iterable[Mapping[str, Any]],
                states: MutableMapping[str, AssetState]
                ) -> tuple[list[dict[str, Any]], set[str]]:
        """Take ``items`` (session reports, car accounts, clock ticks); return the alert
        upserts of what became due and the keys of the states that changed."""
        order = states.get(ORDER_KEY) or new_order_state()
        released = order["released"]
        late: list[Mapping[str, Any]] = []
        changed = {ORDER_KEY}
        for item in items:
            source, ts = source_of(item), int(item["ts"])
            clocks = order["clocks"]
            key = source if item.get("partition") is None else f"{source}:{item['partition']}"
            clocks[key] = max(ts, clocks.get(key, ts))
            if item.get("kind") == CLOCK:
                continue
            if released is not None and ts <= released:
                late.append(item)
            else:
                order["held"].append([_sort_key(item), dict(item)])
        due = self._due(order)
        states[ORDER_KEY] = order
        alerts: list[dict[str, Any]] = []
        for item in [*late, *due]:
            more, touched = self.attribution.process([item], states)
            alerts += more
            changed |= touched
        return alerts, changed

    def flush(self, states: MutableMapping[str, AssetState]
              ) -> tuple[list[dict[str, Any]], set[str]]:
        """Release everything held (the end of a finite stream)."""
        order = states.get(ORDER_KEY)
        if not order or not order["held"]:
            return [], set()
        held = sorted(order["held"], key=lambda entry: entry[0])
        order["held"] = []
        order["released"] = max(order["released"] or held[-1][0][0], held[-1][0][0])
        states[ORDER_KEY] = order
        alerts, changed = self.attribution.process([entry[1] for entry in held], states)
        return alerts, changed | {ORDER_KEY}

    def process_source(self, states: Mapping[str, Any], partition: int, offset: int,
                       items: Iterable[Mapping[str, Any]]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """As ``ChargingAttribution.process_source``: (alert upserts, table writes)."""
        local = TableOverlay(states)
        alerts, changed = self.process(items, local)
        return alerts, table_writes(states, local, changed, partition, offset)

    def watermark(self, clocks: Mapping[str, int]) -> int | None:
        """The event time both streams have passed, less ``hold_ms``; a stream more than
        ``max_wait_ms`` behind the newest is not waited for."""
        streams = self.stream_clocks(clocks)
        if not streams:
            return None
        return self._oldest_waited_for(streams.values()) - self.hold_ms

    def stream_clocks(self, clocks: Mapping[str, int]) -> dict[str, int]:
        """Each stream's clock: the oldest of its partitions' (``source:partition`` keys)
        not ``max_wait_ms`` behind its newest, or else its inputs' (the ``source`` key)."""
        partitions: dict[str, list[int]] = {}
        streams: dict[str, int] = {}
        for key, ts in clocks.items():
            source, _, partition = key.partition(":")
            if partition:
                partitions.setdefault(source, []).append(ts)
            else:
                streams[source] = ts
        for source, values in partitions.items():
            streams[source] = self._oldest_waited_for(values)
        return streams

    def _oldest_waited_for(self, clocks: Iterable[int]) -> int:
        values = list(clocks)
        newest = max(values)
        return min(c for c in values if c >= newest - self.max_wait_ms)

    def _due(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        mark = self.watermark(order["clocks"])
        if mark is None or not order["held"]:
            return []
        if order["released"] is not None:
            mark = max(mark, order["released"])  # the mark never moves back
        order["held"].sort(key=lambda entry: entry[0])
        count = 0
        while count < len(order["held"]) and order["held"][count][0][0] <= mark:
            count += 1
        due = [entry[1] for entry in order["held"][:count]]
        order["held"] = order["held"][count:]
        order["released"] = mark
        return due
