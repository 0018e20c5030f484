"""Generic anomalies on the numeric signals no specific detector covers (``StreamingScorer``).

Why it matters
--------------
The specific detectors know their physics (12 V resting voltage, tyre pressures, cell spread,
coolant rise...). A car reports more than they read, and a sensor or a system can misbehave in
ways nobody wrote a model for. This detector runs the generic online scorer of
``diagnostics/streaming.py`` (exponentially weighted mean and variance in event time, score in
[0, 1]) on a documented list of such signals and raises one ``signal_anomaly`` alert per car
when a signal stays far out of its own recent range.

Signals (``DEFAULT_SIGNALS``: path -> (half-life in samples, smallest standard deviation))
--------------------------------------------------------------------------------------------
* ``Vehicle.Powertrain.TractionBattery.StateOfHealth`` (5000 samples, 1.0 %): the BMS's
  capacity estimate moves by tenths of a percent a month; a jump of many percent is a BMS
  recalibration after a fault or a damaged pack. The floor keeps ordinary recalibration
  steps (a percent or two) from scoring.
* ``Vehicle.Powertrain.TractionBattery.Temperature.Average`` (1500 samples, 4.0 °C): the
  pack temperature follows the weather and warms on drives; weeks of history make both part
  of its normal range, so only a pack far hotter (or colder) than on any recent drive scores
  (a failing pack cooling or heating circuit, a sensor fault). The coolant loop is the
  thermal detector's; this only watches the pack itself.

Explained by the surroundings (``DEFAULT_EXPLAINED_BY``: path -> (reference path, margin))
-----------------------------------------------------------------------------------------
A parked pack takes the air's temperature, so a deep cold snap puts it colder than on any
drive of the last weeks: unusual for the model, normal for physics. A scored value that lies
between the model's mean and the reference signal of the same message (the pack temperature
and ``Vehicle.Exterior.AirTemperature``, margin 3 °C) scores 0; the model still learns it.
Without the reference in the message the value scores as usual. A pack far colder than the
air (a sensor fault), or hotter than usual, is not explained.

Memory counts samples, not hours: these signals come only while the car is awake, and in
event time a night parked would make the model forget the day's drives and learn the next
morning's first reading as heavily as an hour of driving. So each scored sample advances the
scorer's clock by one ``min_gap_s`` and the half-life is a number of samples (``1500`` at one
a minute is about three weeks of a car driven 80 minutes a day).

Persistence and hysteresis
--------------------------
One sample per signal is scored (and learned) at most every ``min_gap_s`` (a car at 1 Hz costs
a state write a minute, not a second). A signal becomes anomalous when its score stays at or
above ``enter_score`` for ``persist_n`` scored samples in a row spanning at least ``persist_s``
of event time (one odd reading, or the first minutes of a drive in a cold snap, is not an
anomaly), and clears after ``persist_n`` samples in a row below ``exit_score``. The alert is
active while any signal is anomalous. Assessments are returned only when that set changes.

Evidence: ``signal`` (the most anomalous active signal), its ``value``, the model's ``mean``
and ``std`` before the value, its ``score``, and ``signals`` (every anomalous signal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from diagnostics.base import Assessment, Detector, Outcome
from diagnostics.signals import AMBIENT, PACK, STATE_OF_HEALTH
from diagnostics.streaming import StreamingScorer
from vocab.eventtime import MINUTE_MS

DEFAULT_SIGNALS: dict[str, tuple[float, float]] = {
    STATE_OF_HEALTH: (5000.0, 1.0),
    PACK: (1500.0, 4.0),
}
# Unusual values the car's surroundings explain: path -> (reference path, margin). A pack
# colder than on any recent drive, yet no colder than the air around it (within the margin),
# is a pack cold-soaked in a cold snap, not a fault: a healthy car's pack can read -18 or
# -24 °C on the morning drive of a deep cold snap, and without this rule each such morning
# would be a false alert. Only a value between the model's mean and the reference is
# explained; a pack far colder than the air (a sensor fault) or hotter than usual still scores.
DEFAULT_EXPLAINED_BY: dict[str, tuple[str, float]] = {
    PACK: (AMBIENT, 3.0),
}
SAMPLE_MS = MINUTE_MS  # the scorer's clock step per sample (only its ratio to the half-life counts)
ACTION = (
    "No call needed yet: a signal of this car has left its usual range for a while and no "
    "specific diagnosis covers it. Look at the signal's history in the vehicle view; if it "
    "persists, or comes with other alerts or an owner complaint, book a workshop check of "
    "that system.")


class SignalAnomaly(Detector):
    name: ClassVar[str] = "signal_anomaly"
    version: ClassVar[str] = "1.1.0"

    def __init__(self, signals: Mapping[str, tuple[float, float]] | None = None,
                 warmup: int = 60, free_z: float = 2.0, enter_score: float = 0.95,
                 exit_score: float = 0.5, persist_n: int = 10, persist_s: float = 1800.0,
                 min_gap_s: float = 60.0,
                 explained_by: Mapping[str, tuple[str, float]] | None = None) -> None:
        table = {path: (float(h), float(s)) for path, (h, s)
                 in (DEFAULT_SIGNALS if signals is None else signals).items()}
        if not table or any(h <= 0 or s <= 0 for h, s in table.values()):
            raise ValueError("signals must map each path to (half-life samples > 0, "
                             "smallest std > 0)")
        if not (0 < exit_score < enter_score <= 1 and persist_n >= 1 and persist_s >= 0
                and min_gap_s >= 0 and warmup >= 1):
            raise ValueError("need 0 < exit_score < enter_score <= 1, persist_n >= 1, "
                             "persist_s >= 0, min_gap_s >= 0 and warmup >= 1")
        explained = {path: (str(ref), float(margin)) for path, (ref, margin)
                     in (DEFAULT_EXPLAINED_BY if explained_by is None else explained_by).items()}
        if any(margin < 0 or not math.isfinite(margin) for _, margin in explained.values()):
            raise ValueError("explained_by margins must be finite and >= 0")
        self.signals = table
        self.explained_by = explained
        self.warmup = warmup
        self.free_z = free_z
        self.enter_score = enter_score
        self.exit_score = exit_score
        self.persist_n = persist_n
        self.persist_s = persist_s
        self.min_gap_s = min_gap_s
        self._scorers = {path: StreamingScorer(half_life_s=h * SAMPLE_MS / 1000, warmup=warmup,
                                               free_z=free_z, min_std=s, rel_std=0.0)
                         for path, (h, s) in table.items()}

    def new_state(self) -> dict[str, Any]:
        # per signal: m = scorer state (on the sample clock), t = event time of the last scored
        # sample, run = [first ts, count] of the current high (or, when anomalous, low) run
        return {"sig": {}, "active": {}}

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
               ) -> Outcome:
        changed, transition = False, False
        for path, scorer in self._scorers.items():
            value = signals.get(path)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            entry = state["sig"].get(path)
            if entry is None:
                entry = state["sig"][path] = {"m": scorer.new_state(), "t": None, "run": None}
            model = entry["m"]
            if entry["t"] is not None and ts_ms - entry["t"] < self.min_gap_s * 1000:
                continue  # too soon after the last scored sample (or a late one)
            entry["t"] = ts_ms
            mean, std = float(model["mean"]), scorer.scale(model)
            score = scorer.score_one(model, (int(model["n"]) + 1) * SAMPLE_MS, float(value))
            if self._explained(path, float(value), mean, signals):
                score = 0.0  # learned as usual, but not unusual: the surroundings explain it
            changed = True
            transition |= self._follow(state, entry, path, ts_ms, float(value), mean, std,
                                       score)
        if not transition:
            return changed, None
        return True, self._assess(state)

    def _explained(self, path: str, value: float, mean: float,
                   signals: Mapping[str, object]) -> bool:
        """Whether ``value`` lies between the model's mean and the reference signal of the
        same message (within the margin): e.g. a pack no colder than the air around it."""
        rule = self.explained_by.get(path)
        if rule is None:
            return False
        ref = signals.get(rule[0])
        if isinstance(ref, bool) or not isinstance(ref, int | float) or not math.isfinite(ref):
            return False
        return ((value - mean) * (ref - mean) > 0
                and abs(value - mean) <= abs(ref - mean) + rule[1])

    def _follow(self, state: dict[str, Any], entry: dict[str, Any], path: str, ts: int,
                value: float, mean: float, std: float, score: float) -> bool:
        """Track the run of high (or, while anomalous, low) scores; True on a transition."""
        active = path in state["active"]
        beyond = score < self.exit_score if active else score >= self.enter_score
        if not beyond:
            entry["run"] = None
            return False
        run = entry["run"] = [entry["run"][0], entry["run"][1] + 1] if entry["run"] else [ts, 1]
        if run[1] < self.persist_n or ts - run[0] < self.persist_s * 1000:
            return False
        entry["run"] = None
        if active:
            del state["active"][path]
        else:
            state["active"][path] = {"value": round(value, 3), "mean": round(mean, 3),
                                     "std": round(std, 3), "score": round(score, 3)}
        return True

    def _assess(self, state: dict[str, Any]) -> Assessment:
        active = state["active"]
        if not active:
            return Assessment(active=False, title="Signals back in their usual range",
                              evidence={"signals": []})
        path = max(sorted(active), key=lambda p: float(active[p]["score"]))
        worst = active[path]
        short = path.removeprefix("Vehicle.")
        return Assessment(
            active=True, severity="info", title=f"Unusual {short}",
            evidence={"signal": path, "value": worst["value"], "mean": worst["mean"],
                      "std": worst["std"], "score": worst["score"], "signals": sorted(active)},
            recommended_action=ACTION)
