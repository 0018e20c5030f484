"""Traction-battery cell imbalance: one cell drifting away from the pack, trending over days.

Why it matters
--------------
A traction battery is ~90-110 cells in series; the pack is only as good as its weakest cell.
A cell with an internal micro-short self-discharges and drifts below the others. Passive
balancing can hide a slow drift for a while, but once the spread between the highest and the
lowest cell reaches the BMS limit the BMS derates the car (less power, less usable range) and
raises a warning: a workshop visit that could have been planned weeks earlier.

Physical model (the constructor defaults; the fleet simulator follows the same model)
------------------------------------------------------------------------------------
* The BMS reports ``CellVoltage.Min/Max`` and the ids of those cells. At rest, at 25 °C and
  mid state of charge, a healthy pack's spread is 8-16 mV.
* The spread is only comparable at comparable conditions, and the healthy look-alikes are
  exactly the others: under load (driving) and while charging, cell resistances differ, so the
  spread jumps by 5-25 mV; where the OCV curve is steep (below ~20 % or above ~95 % SoC) the
  same charge mismatch shows as a spread several times larger; in the cold it widens by about
  ``temp_coeff_per_c`` = 3 % per °C below ``temp_ref_c`` = 15 °C. So only *resting* readings
  count (car OFF, not charging, at least ``rest_delay_s`` after the last drive or charge, when
  the load relaxation has passed), only inside the flat SoC band ``soc_low``..``soc_high``,
  and each is divided by ``1 + temp_coeff_per_c * max(0, temp_ref_c - T_air)``.
* A drifting cell grows the reference spread by a few mV/day, and it is the *same* cell that is
  the pack minimum reading after reading, whereas a healthy pack's minimum wanders among
  several cells. Both are required: a trend alone could be an unmodelled condition, a
  consistent minimum alone is just a pack's naturally weakest cell.
* Failure: the reference spread reaches ``bms_limit_mv`` (100 mV) and the BMS derates.

Samples and trend
-----------------
Resting readings are collected in a window closed after ``sample_span_s`` or
``max_window_readings`` readings (or when the rest ends with at least ``min_window_readings``);
a sample is the median compensated spread and the window's most frequent minimum cell, at most
one per ``resample_s``. The last ``max_history`` samples (within ``window_days``) are fitted by
weighted least squares (weights halve every ``half_life_days``), with the Student-t critical
value for the effective degrees of freedom (never below ``z``).

* Drifting: slope above ``min_slope_mv_per_day``, slope - t * stderr above zero, and the same
  cell was the minimum in at least ``min_cell_share`` of the last ``cell_samples`` samples.
* Predicted failure: where the fitted line reaches ``bms_limit_mv``; the band uses slope +/-
  t * stderr. Raise when drifting with the limit within ``horizon_days``, or when the fitted
  spread is already above ``warn_mv`` with a consistent minimum cell.
* Severity: critical under ``critical_days`` (or spread above 90 % of the limit), warning
  under ``warning_days``, info otherwise. Hysteresis: once raised, clear only when the trend is
  no longer significant and the fitted spread is below ``warn_mv - clear_margin_mv``.
* Abstain with a reason while there are too few samples, and once per silence when no resting
  sample arrived for ``stale_days`` (no cell signals, never at rest in the SoC band...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from diagnostics.base import (
    Assessment,
    Detector,
    Outcome,
    data_missing,
    first_silence,
    push_sample,
)
from diagnostics.helpers import (
    OFF_STATES,
    ON_STATES,
    as_number,
    check_trend_sizes,
    check_window_sizes,
    predict_failure,
    t_critical,
)
from diagnostics.signals import AMBIENT, CELL_MAX, CELL_MIN, CHARGING, KEY_STATE, SPEED
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS

STATE_VERSION = 1
CELL_ID_MIN = "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMin"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"


class CellImbalance(Detector):
    """Predicts the BMS derating of a pack with one cell drifting away from the others."""

    name: ClassVar[str] = "cell_imbalance"
    version: ClassVar[str] = "1.0.0"

    def __init__(
        self,
        rest_delay_s: float = 3600,
        sample_span_s: float = 6 * 3600,
        resample_s: float = 12 * 3600,
        min_window_readings: int = 3,
        max_window_readings: int = 12,
        soc_low: float = 25.0,
        soc_high: float = 90.0,
        temp_ref_c: float = 15.0,
        temp_coeff_per_c: float = 0.03,
        bms_limit_mv: float = 100.0,
        warn_mv: float = 60.0,
        clear_margin_mv: float = 10.0,
        min_samples: int = 4,
        min_span_days: float = 2.0,
        window_days: float = 14.0,
        max_history: int = 30,
        half_life_days: float = 5.0,
        min_slope_mv_per_day: float = 1.0,
        z: float = 2.0,
        cell_samples: int = 6,
        min_cell_share: float = 0.75,
        horizon_days: float = 45.0,
        critical_days: float = 3.0,
        warning_days: float = 14.0,
        stale_days: float = 7.0,
    ) -> None:
        self.rest_delay_s = rest_delay_s
        self.sample_span_s = sample_span_s
        self.resample_s = resample_s
        self.min_window_readings = min_window_readings
        self.max_window_readings = max_window_readings
        self.soc_low = soc_low
        self.soc_high = soc_high
        self.temp_ref_c = temp_ref_c
        self.temp_coeff_per_c = temp_coeff_per_c
        self.bms_limit_mv = bms_limit_mv
        self.warn_mv = warn_mv
        self.clear_margin_mv = clear_margin_mv
        self.min_samples = min_samples
        self.min_span_days = min_span_days
        self.window_days = window_days
        self.max_history = max_history
        self.half_life_days = half_life_days
        self.min_slope_mv_per_day = min_slope_mv_per_day
        self.z = z
        self.cell_samples = cell_samples
        self.min_cell_share = min_cell_share
        self.horizon_days = horizon_days
        self.critical_days = critical_days
        self.warning_days = warning_days
        self.stale_days = stale_days
        if not 0 < warn_mv < bms_limit_mv:
            raise ValueError("need 0 < warn_mv < bms_limit_mv")
        check_trend_sizes(min_samples, max_history)
        check_window_sizes(min_window_readings, max_window_readings)

    def new_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "ts": None,  # event time of the last state change (older messages are ignored)
            "since": None,  # first message seen
            "rest": None,  # start of the current rest (OFF, not charging); None while in use
            "taken": None,  # start of the window that gave the last sample
            "win": [],  # [ts, compensated spread mV, id of the minimum cell]
            "amb": None,  # last ambient reading used (evidence)
            "hist": [],  # [ts, spread mV, minimum cell] samples, oldest first
            "active": False,
            "stale": False,
        }

    # ---------------------------------------------------------------- streaming interface

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]) -> Outcome:
        if state["ts"] is not None and ts_ms < state["ts"]:
            return False, None
        changed = False
        assessment: Assessment | None = None
        if state["since"] is None:
            state["since"] = ts_ms
            changed = True
        key = signals.get(KEY_STATE)
        speed = as_number(signals.get(SPEED))
        in_use = (key in ON_STATES or signals.get(CHARGING) is True
                  or (speed is not None and speed > 0.5))
        if in_use:
            if state["rest"] is not None or state["win"]:
                assessment = self._close_window(state)
                state["rest"] = None
                changed = True
        elif key in OFF_STATES:
            if state["rest"] is None:
                state["rest"] = ts_ms
                changed = True
            reading_changed, sampled = self._reading(state, ts_ms, signals)
            changed = changed or reading_changed
            assessment = assessment or sampled
        if assessment is None:
            assessment = self._staleness(state, ts_ms)
            changed = changed or assessment is not None
        if changed:
            state["ts"] = ts_ms
        return changed, assessment

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        """Ignition ON ends a rest (load relaxation starts again after the drive)."""
        if event.get("type") != "ignition" or event.get("state") not in ON_STATES:
            return False, None
        if state["ts"] is not None and ts_ms < state["ts"]:
            return False, None
        if state["rest"] is None and not state["win"]:
            return False, None
        assessment = self._close_window(state)
        state["rest"] = None
        state["ts"] = ts_ms
        return True, assessment

    # ---------------------------------------------------------------- resting samples

    def compensated_spread_mv(self, vmin: float, vmax: float, ambient: float) -> float:
        """Max - min cell voltage in mV, scaled to the reference temperature."""
        cold = max(0.0, self.temp_ref_c - ambient)
        return (vmax - vmin) * 1000.0 / (1.0 + self.temp_coeff_per_c * cold)

    def _reading(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
                 ) -> Outcome:
        changed = False
        window: list[list[float]] = state["win"]
        if window and ts_ms - window[0][0] > self.sample_span_s * 1000:
            timed_out = self._close_window(state)  # the window ran out during a data gap
            changed = True
            if timed_out is not None:
                return True, timed_out
        if ts_ms - state["rest"] < self.rest_delay_s * 1000:
            return changed, None
        taken = state["taken"]
        if not state["win"] and taken is not None and ts_ms - taken < self.resample_s * 1000:
            return changed, None
        vmin, vmax = as_number(signals.get(CELL_MIN)), as_number(signals.get(CELL_MAX))
        soc, ambient = as_number(signals.get(SOC)), as_number(signals.get(AMBIENT))
        cell = signals.get(CELL_ID_MIN)
        if (vmin is None or vmax is None or soc is None or ambient is None or vmax < vmin
                or not self.soc_low <= soc <= self.soc_high):
            return changed, None
        cell_id = cell if isinstance(cell, int) and not isinstance(cell, bool) else -1
        state["amb"] = ambient
        state["win"].append([ts_ms, round(self.compensated_spread_mv(vmin, vmax, ambient), 2),
                             cell_id])
        window = state["win"]
        if (len(window) >= self.max_window_readings
                or ts_ms - window[0][0] >= self.sample_span_s * 1000):
            return True, self._close_window(state)
        return True, None

    def _close_window(self, state: dict[str, Any]) -> Assessment | None:
        window: list[list[float]] = state["win"]
        state["win"] = []
        if len(window) < self.min_window_readings:
            return None
        spread = float(np.median(np.asarray([w[1] for w in window], dtype=np.float64)))
        # Most frequent minimum cell; ties go to the smallest id so the result is deterministic.
        counts = Counter(int(w[2]) for w in window)
        cell = min(counts, key=lambda c: (-counts[c], c))
        ts = int(window[-1][0])
        state["taken"] = int(window[0][0])
        push_sample(state, [ts, round(spread, 2), cell], self.max_history)
        return self._assess(state, ts)

    # ---------------------------------------------------------------- staleness

    def _staleness(self, state: dict[str, Any], ts_ms: int) -> Assessment | None:
        hist = state["hist"]
        silent_days = first_silence(state, hist[-1][0] if hist else state["since"], ts_ms,
                                    self.stale_days)
        if silent_days is None:
            return None
        if hist:
            reason = (f"no resting cell-voltage sample for {silent_days:.1f} days (more than "
                      f"{self.stale_days:g}); the trend is out of date")
        else:
            reason = (f"no resting cell-voltage sample in {silent_days:.1f} days: no "
                      f"{CELL_MIN}/{CELL_MAX} with SoC and air temperature while the car rested "
                      f"{self.rest_delay_s / 3600:g} h at {self.soc_low:g}-{self.soc_high:g} % "
                      "SoC")
        return data_missing(state, "Cell balance: data missing", self._summary(state), reason,
                            silent_days)

    # ---------------------------------------------------------------- trend and decision

    def _summary(self, state: dict[str, Any]) -> dict[str, Any]:
        hist = state["hist"]
        return {
            "latest_spread_mv": hist[-1][1] if hist else None,
            "last_sample_ts": hist[-1][0] if hist else None,
            "samples": len(hist),
            "bms_limit_mv": self.bms_limit_mv,
            "warn_mv": self.warn_mv,
            "temp_ref_c": self.temp_ref_c,
            "last_ambient_c": state["amb"],
        }

    def _assess(self, state: dict[str, Any], now: int) -> Assessment:
        hist = [h for h in state["hist"] if now - h[0] <= self.window_days * DAY_MS]
        t_days = np.asarray([(h[0] - now) / DAY_MS for h in hist], dtype=np.float64)
        spread = np.asarray([h[1] for h in hist], dtype=np.float64)
        span = float(t_days[-1] - t_days[0]) if len(hist) else 0.0
        recent = [int(h[2]) for h in hist[-self.cell_samples:]]
        counts = Counter(recent)
        cell = min(counts, key=lambda c: (-counts[c], c)) if counts else -1
        share = counts[cell] / len(recent) if recent else 0.0
        consistent = cell >= 0 and len(recent) >= 3 and share >= self.min_cell_share
        evidence = self._summary(state)
        evidence.update({
            "samples": len(hist), "window_days": round(span, 2),
            "drifting_cell": cell if consistent else None, "min_cell_share": round(share, 2),
            "fitted_spread_mv": None, "slope_mv_per_day": None, "slope_stderr": None,
            "predicted_failure_ts": None, "predicted_failure_earliest_ts": None,
            "predicted_failure_latest_ts": None, "days_to_bms_limit": None,
        })
        if len(hist) < self.min_samples or span < self.min_span_days:
            return Assessment(
                active=state["active"], title="Cell balance: collecting resting samples",
                evidence=evidence,
                abstain_reason=f"{len(hist)} resting samples over {span:.1f} days; need "
                               f"{self.min_samples} over {self.min_span_days:g} days for a trend")
        slope, level, stderr, dof = weighted_trend(t_days, spread, self.half_life_days)
        crit = t_critical(dof, self.z)
        rising = slope > self.min_slope_mv_per_day and slope - crit * stderr > 0
        drifting = rising and consistent
        evidence.update({"fitted_spread_mv": round(level, 2), "slope_mv_per_day": round(slope, 3),
                         "slope_stderr": round(stderr, 3), "t_critical": round(crit, 2)})
        days_left: float | None = None
        predicted: int | None = None
        if drifting:
            forecast = predict_failure(now, max(0.0, self.bms_limit_mv - level), slope,
                                       crit * stderr, days_key="days_to_bms_limit")
            days_left, predicted = forecast.days_left, forecast.ts
            evidence.update(forecast.evidence)
        high = level >= self.warn_mv and consistent
        if state["active"]:
            active = rising or level >= self.warn_mv - self.clear_margin_mv
        else:
            active = (drifting and days_left is not None and days_left <= self.horizon_days
                      ) or high
        state["active"] = bool(active)
        if not active:
            return Assessment(active=False, title="Cell balance is healthy", evidence=evidence,
                              predicted_failure_ts=predicted)
        if (days_left is not None and days_left < self.critical_days) or (
                level >= 0.9 * self.bms_limit_mv):
            severity = "critical"
        elif days_left is not None and days_left < self.warning_days:
            severity = "warning"
        else:
            severity = "info"
        title = f"Battery cell imbalance: spread {level:.0f} mV at rest"
        if drifting:
            title += f", rising {slope:.1f} mV/day (cell {cell})"
        return Assessment(active=True, severity=severity, title=title, evidence=evidence,
                          predicted_failure_ts=predicted,
                          recommended_action=self._action(days_left))

    @staticmethod
    def _action(days_left: float | None) -> str:
        if days_left is not None and days_left < 3:
            return ("Call the owner today: one battery cell has drifted so far that the car "
                    "will soon limit its power and range. Book a high-voltage battery check at "
                    "the nearest service point this week; the car is safe to drive meanwhile.")
        when = (f"in about {max(1, round(days_left))} days" if days_left is not None
                else "soon")
        return ("Contact the owner: one cell of the high-voltage battery is drifting away from "
                f"the others and the car may limit its power and range {when}. Offer a battery "
                "balancing / cell check at a service point before then; nothing to do while "
                "driving.")


