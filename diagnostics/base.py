"""The one streaming interface every detector implements (after River's learn_one/score_one).

A detector is a pure object: its parameters are attributes named like its constructor
arguments, it keeps no per-asset data itself, it never reads the clock and it draws no random
numbers it was not seeded with. Per-asset state is a small JSON-serialisable dict the caller
owns (the worker keeps it in a changelogged Faust table with a JSON serializer), which is what
makes restarts, replays and back-tests reproduce the same results.

Contract (checked for every detector in ``diagnostics.registry``, of every asset kind, by
``tests/diagnostics/test_detector_contract.py``):

* ``new_state()`` returns plain JSON (dict/list/str/int/float/bool/None), well under 16 KiB
  per asset however long the asset streams (bounded histories only).
* ``update(state, ts_ms, signals)`` and ``on_event(state, ts_ms, event)`` mutate ``state`` in
  place and return ``(state_changed, assessment)``. ``state_changed`` is True exactly when the
  state was mutated (the caller writes a changelog record only then); the assessment is None
  unless the detector has something *new* to say, so callers are not flooded per message.
* "Now" is ``ts_ms``, the event time of the message, never the wall clock.

Optional capability, sweeps (``Detector.sweeps``, False by default): a detector that can tell
something from the *absence* of messages (silence) sets ``sweeps = True`` and overrides
``sweep(state, ts_ms)``, which has the same ``(state_changed, assessment)`` contract. The
pipelines ask such a detector about every asset of a partition whenever the event time of the
fleet passes a sweep boundary (``diagnostics/silence.py``), the boundary being ``ts_ms``; the
default ``sweep`` changes nothing and says nothing, and pipelines only call it on detectors
that declare the capability.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vocab.eventtime import DAY_MS, HOUR_MS
from vocab.severity import SEVERITIES


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


def first_silence(state: dict[str, Any], last_data_ts: int, ts_ms: int, stale_days: float
                  ) -> float | None:
    """Days without usable data since ``last_data_ts``, the first time they pass
    ``stale_days``; None otherwise. Once per silence: this sets ``state["stale"]`` and the
    detector clears it with its next sample, so a car parked for a month abstains once."""
    if state["stale"]:
        return None
    silent_days = (ts_ms - last_data_ts) / DAY_MS
    if silent_days <= stale_days:
        return None
    state["stale"] = True
    return silent_days


def data_missing(state: dict[str, Any], title: str, evidence: dict[str, Any], reason: str,
                 silent_days: float, key: str = "days_since_sample") -> Assessment:
    """A trend detector's abstention when its data stopped: the alert stays as it was
    (``state["active"]``), the evidence says for how long."""
    evidence[key] = round(silent_days, 2)
    return Assessment(active=state["active"], title=title, evidence=evidence,
                      abstain_reason=reason)


def push_sample(state: dict[str, Any], sample: list[Any], max_history: int) -> None:
    """Append a trend sample, keep the newest ``max_history``, and end a silence."""
    hist: list[list[Any]] = state["hist"]
    hist.append(sample)
    del hist[: max(0, len(hist) - max_history)]
    state["stale"] = False


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """How alarm hygiene (``diagnostics.alerting``) treats one detector's assessments.

    * ``hold_off_ms``: a condition that comes back within this long after its alert resolved
      reopens that same alert (same id) instead of raising a new one. 0 turns reopening off.
    * ``flap_opens`` / ``flap_window_ms``: an alert opened or reopened this many times within
      the window is *flapping* (``evidence.flapping``); 0 turns flapping detection off.
    * ``flap_recovery_ms``: a flapping alert resolves only once the condition has stayed
      clear this long (event time; checked on every later message of the asset).
    * ``min_persistence_ms``: a condition must stay active this long before its alert is
      raised (``first_seen`` is when it was first seen). 0, the default, raises at once.
    """

    hold_off_ms: int = 6 * HOUR_MS
    flap_opens: int = 3
    flap_window_ms: int = 24 * HOUR_MS
    flap_recovery_ms: int = 12 * HOUR_MS
    min_persistence_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("hold_off_ms", "flap_opens", "flap_window_ms", "flap_recovery_ms",
                     "min_persistence_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AlarmPolicy.{name} must be a non-negative integer, "
                                 f"got {value!r}")
        if self.flap_opens == 1:
            raise ValueError("AlarmPolicy.flap_opens=1 would call every alert flapping; use 0 "
                             "(off) or at least 2")


DEFAULT_ALARM_POLICY = AlarmPolicy()


class Detector:
    """Base class: subclasses set ``name``/``version`` and implement ``update``.

    Subclasses store every constructor argument as an attribute of the same name (River's
    convention), so ``params()`` and ``repr()`` describe the detector completely and a detector
    can be rebuilt from its parameters.
    """

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "0"
    # Alarm hygiene for this detector's alerts (hold-off, flapping, minimum persistence).
    alarm_policy: ClassVar[AlarmPolicy] = DEFAULT_ALARM_POLICY
    # The optional sweep capability (see the module docstring): True means ``sweep`` is
    # overridden and the pipelines call it at every sweep boundary.
    sweeps: ClassVar[bool] = False

    def new_state(self) -> dict[str, Any]:
        return {}

    def update(
        self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
    ) -> Outcome:
        raise NotImplementedError

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        """Vehicle events (ignition, dtc, trip_end...); by default they change nothing."""
        return False, None

    def sweep(self, state: dict[str, Any], ts_ms: int) -> Outcome:
        """Asked at a sweep boundary ``ts_ms`` with no message of the asset (only when
        ``sweeps`` is True); by default it changes nothing and says nothing."""
        return False, None

    def sweep_times(self, state: Mapping[str, Any], since_ms: int, upto_ms: int,
                    interval_ms: int) -> list[int]:
        """The boundaries in (``since_ms``, ``upto_ms``] to sweep at, in order, when the clock
        passed several at once (a batch spanning hours of event time, a replay). Sweeping at
        each of them gives what sweeping every boundary as it passed would have given, so the
        alerts do not depend on how the records were batched. By default every boundary; a
        detector that knows where its answer can change returns only those (and ``upto_ms``).
        """
        return list(range(since_ms + interval_ms, upto_ms + 1, interval_ms))  # both boundaries

    def params(self) -> dict[str, Any]:
        """Constructor parameters and their current values (for evidence and docs)."""
        parameters = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in parameters
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
