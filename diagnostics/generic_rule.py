"""When do the generic detector's score events become evidence of a fault? (pure, event time)

``GenericScorer`` (``generic.py``) marks an *event*: one value unusual for its signal. On a
healthy car that happens about once a vehicle-day across its signals (a cold morning, a long
trip, a new road), so an event alone is not an alert. A failing part looks different:

* **repeated**: it keeps taking its signal somewhere new, day after day (a tyre losing air
  sets a new lowest pressure on every drive; a weakening coolant pump a new highest coolant
  temperature), while a healthy car's new extremes thin out as its range is learned;
* **in one direction**: a drift, not noise on both sides;
* **alone**: a change of the car's situation (weather, a trip to the mountains, a heat wave)
  moves several of its signals together (air, tyre and pack temperatures and the tyre
  pressures in a cold snap), a failing part moves its own. An event with an event of
  another signal of the same car within ``shared_ms`` is explained by that common cause.

* **going somewhere**: noise sets a new extreme now and then by a hair; a drift moves the
  signal on by a good part of its range. The isolated events' values must have moved, first
  to last, by at least ``travel`` times the signal's range as it was at the first.

So the rule keeps, per vehicle, the recent *directional* events (a score of at least the
caller's threshold, high or low: which side of the middle of the signal's range so far the
value lies), and a signal is *anomalous* when it has isolated events in one direction on at
least ``days`` distinct event-time days within ``window_ms`` that travelled far enough. An
event counts as isolated only once ``shared_ms`` has passed after it with no event of
another signal (so a rule decision never changes when later data arrives: deterministic
across replays and restarts).

* **the car's own**: a change of the weather moves the same signal of the other cars too.
  The caller may mark an event as shared with the fleet (a sixth field, true, set once it has
  settled: ``GenericSignals`` does so when another car had an event of the same signal in the
  same direction within about ``shared_ms``); a shared event is never isolated.

State: ``{"ev": [[ts, signal, direction, value, range(, shared)], ...]}``, oldest first,
bounded by ``max_events`` and by age (``window_ms + shared_ms``), plain JSON.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from vocab.eventtime import DAY_MS, HOUR_MS


@dataclass(frozen=True, slots=True)
class EventRule:
    days: int = 3  # distinct days with an isolated event in one direction
    window_ms: int = 10 * DAY_MS  # ... within this long
    shared_ms: int = 12 * HOUR_MS  # an event of another signal this close explains it
    travel: float = 0.5  # first to last event, in ranges of the signal at the first
    max_events: int = 32  # events kept per vehicle (the oldest go first)

    def __post_init__(self) -> None:
        if not (self.days >= 1 and self.window_ms > 0 and self.shared_ms >= 0
                and self.travel >= 0 and self.max_events >= self.days):
            raise ValueError("need days >= 1, window_ms > 0, shared_ms >= 0, travel >= 0 and "
                             "max_events >= days")

    def new_state(self) -> dict[str, Any]:
        return {"ev": []}

    def note(self, state: dict[str, Any], ts_ms: int, signal: str, direction: int,
             value: float = 0.0, span: float = 0.0) -> None:
        """Record a directional event (``direction`` +1: high, -1: low) of ``value``, the
        signal's range being ``span`` wide before it."""
        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {direction!r}")
        events: list[list[Any]] = state["ev"]
        events.append([int(ts_ms), signal, direction, round(float(value), 4),
                       round(float(span), 4)])
        # In event-time order even if a late sample arrives (ties keep arrival order).
        events.sort(key=lambda e: int(e[0]))
        del events[: max(0, len(events) - self.max_events)]

    def forget(self, state: dict[str, Any], now_ms: int) -> bool:
        """Drop events too old to matter at ``now_ms``; True when any was dropped."""
        events: list[list[Any]] = state["ev"]
        horizon = now_ms - self.window_ms - self.shared_ms
        keep = [e for e in events if int(e[0]) >= horizon]
        if len(keep) == len(events):
            return False
        state["ev"] = keep
        return True

    def anomalous(self, state: dict[str, Any], now_ms: int,
                  holding: Collection[str] = ()) -> dict[str, dict[str, Any]]:
        """The signals with evidence at ``now_ms``: signal -> {"direction", "days", "first",
        "last", "travel"} (event times of the oldest and newest isolated event that count, and
        how far the value moved between them, in ranges of the signal at the first).

        ``holding``: signals found anomalous before; they stay so while they have any isolated
        event in the window (hysteresis: a drift that pauses for a day is still the same
        drift, and its alert does not resolve and reopen)."""
        events: list[list[Any]] = state["ev"]
        settled = now_ms - self.shared_ms
        since = now_ms - self.window_ms - self.shared_ms
        found: dict[str, dict[str, Any]] = {}
        isolated: dict[tuple[str, int], list[list[Any]]] = {}
        for event in events:
            ts, signal, direction = int(event[0]), event[1], int(event[2])
            if ts > settled or ts < since or (len(event) > 5 and event[5]):
                continue
            if any(other[1] != signal and abs(int(other[0]) - ts) <= self.shared_ms
                   for other in events):
                continue
            isolated.setdefault((signal, direction), []).append(event)
        for (signal, direction), chosen in sorted(isolated.items()):
            days = len({int(e[0]) // DAY_MS for e in chosen})
            first, last = chosen[0], chosen[-1]
            span = float(first[4])
            moved = direction * (float(last[3]) - float(first[3]))
            travel = moved / span if span > 0 else 0.0
            held = signal in holding
            if (held or (days >= self.days and travel >= self.travel)) and (
                    signal not in found or days > found[signal]["days"]):
                found[signal] = {"direction": direction, "days": days, "first": int(first[0]),
                                 "last": int(last[0]), "travel": round(travel, 3)}
        return found
