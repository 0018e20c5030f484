"""When ``ownercare run`` restarts a crashed service, and when it gives up.

Pure: the caller says when a service crashed and how long it had been up; the policy answers
with a backoff to wait before restarting it, or a reason to stop the whole stack. A service
that crashes again at once waits twice as long each time (up to a ceiling), so a broken one
does not spin; one that stayed up a while starts over at the shortest wait; only a burst of
crashes (``crash_limit`` within ``window_s``) means it cannot run, and the stack stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Policy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # Up this long before crashing: the crash is not part of a streak, the wait starts over.
    stable_after_s: float = 30.0
    crash_limit: int = 5
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.crash_limit < 1 or self.window_s <= 0 or self.stable_after_s < 0:
            raise ValueError("need crash_limit >= 1, window_s > 0, stable_after_s >= 0")


@dataclass(frozen=True)
class Restart:
    backoff_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


@dataclass
class Crashes:
    """One service's crash history under a policy."""

    policy: Policy = field(default_factory=Policy)
    times_s: list[float] = field(default_factory=list)  # crashes within the window
    next_backoff_s: float | None = None
    restarts: int = 0

    def crashed(self, at_s: float, up_for_s: float, status: int | None = None) -> Restart | GiveUp:
        """The service crashed at ``at_s`` (monotonic seconds) after running ``up_for_s``."""
        p = self.policy
        self.times_s = [t for t in self.times_s if t > at_s - p.window_s]
        self.times_s.append(at_s)
        if len(self.times_s) >= p.crash_limit:
            return GiveUp(f"crashed {len(self.times_s)} times within {p.window_s:g} s "
                          f"(last exit status {status})")
        if self.next_backoff_s is None or up_for_s >= p.stable_after_s:
            self.next_backoff_s = p.initial_backoff_s
        backoff = self.next_backoff_s
        self.next_backoff_s = min(backoff * 2, p.max_backoff_s)
        self.restarts += 1
        return Restart(backoff)
