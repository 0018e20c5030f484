"""The one streaming interface every detector implements (after River's learn_one/score_one).

A detector is a pure object: its parameters are attributes named like its constructor
arguments, it keeps no per-asset data itself, it never reads the clock and it draws no random
numbers it was not seeded with. Per-asset state is a small JSON-serialisable dict the caller
owns (the worker keeps it in a changelogged Faust table with a JSON serializer), which is what
makes restarts, replays and back-tests reproduce the same results.

Contract (checked for every registered detector by ``tests/unit/test_detector_contract.py``):

* ``new_state()`` returns plain JSON (dict/list/str/int/float/bool/None), well under 16 KiB
  per asset however long the asset streams (bounded histories only).
* ``update(state, ts_ms, signals)`` and ``on_event(state, ts_ms, event)`` mutate ``state`` in
  place and return ``(state_changed, assessment)``. ``state_changed`` is True exactly when the
  state was mutated (the caller writes a changelog record only then); the assessment is None
  unless the detector has something *new* to say, so callers are not flooded per message.
* "Now" is ``ts_ms``, the event time of the message, never the wall clock.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a detector concluded from new evidence about one asset.

    ``active`` is whether the condition is present. An abstaining assessment
    (``abstain_reason`` set) says the inputs do not allow a conclusion: it carries the detector's
    previous ``active`` value unchanged and alarm hygiene ignores it. ``evidence`` holds plain
    JSON values (numbers, or null where a figure is not available) for care staff and audits;
    ``predicted_failure_ts`` is event-time epoch ms; ``recommended_action`` is written for a
    care agent talking to the owner.
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
    """Base class: subclasses set ``name``/``version`` and implement ``update``.

    Subclasses store every constructor argument as an attribute of the same name (River's
    convention), so ``params()`` and ``repr()`` describe the detector completely and a detector
    can be rebuilt from its parameters.
    """

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "0"

    def new_state(self) -> dict[str, Any]:
        return {}

    def update(
        self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
    ) -> Outcome:
        raise NotImplementedError

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        """Vehicle events (ignition, dtc, trip_end...); by default they change nothing."""
        return False, None

    def params(self) -> dict[str, Any]:
        """Constructor parameters and their current values (for evidence and docs)."""
        parameters = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in parameters
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
