"""The one streaming interface every detector implements (after River's learn_one/score_one).

A detector is a pure object: its parameters are attributes named like its constructor
arguments, it keeps no per-asset data itself, and it never reads the clock. Per-asset state is a
small JSON-serialisable dict the caller owns (the worker keeps it in a changelogged Faust table),
which is what makes restarts, replays and back-tests reproduce the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a detector concluded from new evidence about one asset.

    ``active`` is whether the condition is present; an abstaining assessment
    (``abstain_reason`` set) says the inputs do not allow a conclusion and changes nothing.
    """

    active: bool
    severity: str = "info"
    title: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    predicted_failure_ts: int | None = None
    recommended_action: str = ""
    abstain_reason: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


Outcome = tuple[bool, Assessment | None]  # (state changed, assessment or None)


class Detector:
    """Base class: subclasses set ``name``/``version`` and implement ``update``."""

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "0"

    def new_state(self) -> dict[str, Any]:
        return {}

    def update(
        self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
    ) -> Outcome:
        raise NotImplementedError

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        return False, None

    def params(self) -> dict[str, Any]:
        """Constructor parameters and their current values (for evidence and docs)."""
        import inspect

        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self"}
