"""When the OTA engine steps: on the fleet's event time, not on the wall clock.

The engine's times (offer expiry, retry backoff, soak, the gate's telemetry age) are event
time, so its steps are too: a step is due once the fleet's event time has moved ``step_ms``
past the previous step, whatever the wall clock did meanwhile. A fleet simulated at 3600×
therefore gets a step at every poll (half a simulated hour apart at two polls a second)
instead of one every ten simulated hours, and a real fleet one per ``step_ms``. An
operator's change (a campaign started, paused, resumed or canceled) makes a step due at
once, so a cancel reaches the cars even while the fleet is silent. The caller calls ``poll``
on a wall-clock cadence; that cadence only sets how soon a due step is noticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Mark = tuple[str, str]  # (campaign id, status) of a campaign the engine steps


@dataclass
class StepClock:
    step_ms: int
    last_at: int | None = None  # the fleet's event time at the previous step
    seen: frozenset[Mark] = field(default_factory=frozenset)  # campaigns at the last poll

    def __post_init__(self) -> None:
        if self.step_ms <= 0:
            raise ValueError(f"step_ms must be positive, got {self.step_ms}")

    def poll(self, event_now: int | None, marks: Iterable[Mark]) -> bool:
        """Whether to step now: there are campaigns to step and the fleet has reported, and
        either they changed since the previous poll (so a campaign paused at one poll and
        resumed at a later one is stepped at once) or the fleet's event time moved on by
        ``step_ms`` since the previous step (event time going backwards, a replay, steps at
        once too). A step due is taken by calling ``stepped``."""
        active = frozenset(marks)
        changed, self.seen = active != self.seen, active
        if not active or event_now is None:
            return False
        if changed or self.last_at is None:
            return True
        return not 0 <= event_now - self.last_at < self.step_ms

    def stepped(self, event_now: int) -> None:
        """Record a step taken at the fleet's event time ``event_now``."""
        self.last_at = event_now
