"""Slow tyre leak: one wheel losing pressure relative to the other three, compensated for heat.

Why it matters
--------------
A nail or a leaking valve lets a tyre lose a few kPa a day. The car's own TPMS warns only when
the pressure is 25 % below the placard, by which time the tyre has been driven soft for days
(wear, fuel/energy use, a sudden flat on the motorway). Seeing the loss early lets care staff
offer a puncture repair before the warning, not a tow after it.

Physical model (the constructor defaults; the fleet simulator follows the same model)
------------------------------------------------------------------------------------
* Gay-Lussac: the absolute pressure of the air in a tyre is proportional to its absolute
  temperature. A gauge reading ``p`` at tyre temperature ``T`` corresponds at the reference
  temperature ``ref_temp_c`` (20 °C, where the placard pressure is set) to
  ``p20 = (p + atm_kpa) * (ref + 273.15) / (T + 273.15) - atm_kpa``. A cold morning (-15 °C)
  lowers all four tyres by about 30 kPa; a tyre warming by 10 °C on a drive gains about 12 kPa.
  Both are physics, not leaks: compensation removes them. The tyre's own temperature sensor is
  used; when it is missing the ambient temperature stands in (a cold tyre is at ambient).
* Common mode: anything that moves all four tyres together (temperature compensation error,
  altitude, a pressure check at the petrol station) is removed by comparing each wheel with
  the *median of the other three* (its deficit ``d = p20 - median(others)``). A leak moves one
  wheel alone, so its deficit falls steadily while the others' stay put.
* A slow leak loses 1-10 kPa/day; sensor noise is about 0.5 kPa per reading. The car's own
  low-pressure warning comes at 25 % below the placard. The placard is not reported by the car,
  so unless ``placard_kpa`` is given it is estimated as the level of the healthy wheels (the
  median of the other three, compensated to 20 °C), i.e. what the owner inflates to.

Samples and trend
-----------------
Readings need all four pressures. The compensated deficits of one sampling window (a drive:
it closes at key-off, the ``ignition`` ``OFF`` event, or at the first reading ``sample_s``, 6 h,
after it opened when no key-off came; a drive too short for ``min_window_readings`` readings
stays open and joins the next one) are averaged into one sample per wheel (at least
``min_window_readings`` readings; readings closer than ``min_reading_gap_s`` to the previous
one and readings beyond ``max_window_readings`` are skipped, so a driving car costs a state
write every few minutes, not every message). Closing at key-off matters: otherwise a drive is
assessed only when the car next drives, days later if it then stands. The last
``max_history`` samples within ``window_days`` are fitted per wheel with weighted least
squares (weights halve every ``half_life_days``) giving a slope in kPa/day, its standard error
and a Student-t critical value (``helpers.t_critical``).

* Leaking wheel: slope below ``-min_rate_kpa_per_day``, significant (slope + t*stderr < 0) and
  the fitted loss over the window at least ``min_loss_kpa`` (a real loss, not a tilt of noise).
* Time to the car's warning: ``(p20_now - 0.75 * placard) / -slope`` days, with a band from
  slope -/+ t*stderr.
* Raise when a wheel leaks with the warning within ``horizon_days``, or a wheel already sits
  ``low_deficit_kpa`` below the others. Severity: critical under ``critical_days`` (or already
  below the warning level), warning under ``warning_days``, info otherwise.
* Hysteresis: once raised, clear only when no wheel leaks any more and no wheel is more than
  ``low_deficit_kpa - clear_margin_kpa`` below the others.
* Reinflation: a sample whose deficit jumped up by more than ``reinflate_kpa`` against the
  previous one (the owner pumped the tyre) starts a fresh history.
* Too few samples for a trend (fewer than ``min_samples`` or over less than
  ``min_span_days``): raise only when the latest sample already has a wheel
  ``low_deficit_kpa`` below the others, otherwise abstain. A car that stands for days while a
  tyre leaks reports no pressures, then drives off with the loss already made: at 6.5 kPa/day
  from a 230 kPa placard, four days parked use half the margin to the warning, and a car
  driving once a day would reach the warning before its fourth sample. One sample averages at
  least ``min_window_readings`` readings and healthy wheels sit within about 12 kPa of each
  other (placard +/- 6 kPa), so 25 kPa is far outside what an even set of tyres shows.
* Abstain once per silence when no sample arrived for more than ``stale_days`` (car not
  driven, tyre signals missing).

Parked cars report no tyre pressures, so they cost no state writes. An assessment is returned
only when a sample closes or staleness is first noticed.
"""

from __future__ import annotations

import math
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
    as_number,
    check_trend_sizes,
    check_window_sizes,
    predict_failure,
    t_critical,
)
from diagnostics.signals import AMBIENT
from diagnostics.trend import weighted_trend
from ingest.contract import TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS
from vocab.eventtime import DAY_MS

STATE_VERSION = 1
# The wheels of TIRE_PRESSURE_SIGNALS / TIRE_TEMPERATURE_SIGNALS, in their order.
WHEEL_NAMES = ("front left", "front right", "rear left", "rear right")


def median_of_three(values: list[float]) -> float:
    """The median of three values, exactly ``np.median``'s result (the middle one), without
    numpy's per-call overhead: this runs four times per telemetry message of every car."""
    return sorted(values)[1]


def compensate(p_kpa: float, temp_c: float, ref_c: float = 20.0, atm_kpa: float = 101.3
               ) -> float:
    """Gauge pressure at ``temp_c`` expressed at ``ref_c`` (Gay-Lussac on absolute values)."""
    return (p_kpa + atm_kpa) * (ref_c + 273.15) / (temp_c + 273.15) - atm_kpa


class SlowTyreLeak(Detector):
    """Predicts the car's own low-pressure warning from one wheel's temperature-compensated
    pressure falling against the other three."""

    name: ClassVar[str] = "tyre_leak"
    version: ClassVar[str] = "1.1.0"

    def __init__(
        self,
        placard_kpa: float | None = None,
        warning_fraction: float = 0.75,
        ref_temp_c: float = 20.0,
        atm_kpa: float = 101.3,
        sample_s: float = 6 * 3600,
        min_reading_gap_s: float = 240.0,
        min_window_readings: int = 3,
        max_window_readings: int = 24,
        min_samples: int = 4,
        min_span_days: float = 1.0,
        window_days: float = 14.0,
        max_history: int = 40,
        half_life_days: float = 4.0,
        min_rate_kpa_per_day: float = 0.8,
        min_loss_kpa: float = 3.0,
        z: float = 2.0,
        low_deficit_kpa: float = 25.0,
        clear_margin_kpa: float = 5.0,
        reinflate_kpa: float = 8.0,
        horizon_days: float = 30.0,
        critical_days: float = 2.0,
        warning_days: float = 7.0,
        stale_days: float = 7.0,
    ) -> None:
        self.placard_kpa = placard_kpa
        self.warning_fraction = warning_fraction
        self.ref_temp_c = ref_temp_c
        self.atm_kpa = atm_kpa
        self.sample_s = sample_s
        self.min_reading_gap_s = min_reading_gap_s
        self.min_window_readings = min_window_readings
        self.max_window_readings = max_window_readings
        self.min_samples = min_samples
        self.min_span_days = min_span_days
        self.window_days = window_days
        self.max_history = max_history
        self.half_life_days = half_life_days
        self.min_rate_kpa_per_day = min_rate_kpa_per_day
        self.min_loss_kpa = min_loss_kpa
        self.z = z
        self.low_deficit_kpa = low_deficit_kpa
        self.clear_margin_kpa = clear_margin_kpa
        self.reinflate_kpa = reinflate_kpa
        self.horizon_days = horizon_days
        self.critical_days = critical_days
        self.warning_days = warning_days
        self.stale_days = stale_days
        if not 0.0 < warning_fraction < 1.0:
            raise ValueError("warning_fraction must be in (0, 1)")
        check_trend_sizes(min_samples, max_history)
        check_window_sizes(min_window_readings, max_window_readings)
        if sample_s > stale_days * 86_400:
            raise ValueError("sample_s must not exceed stale_days: a window's readings would "
                             "be stale before it closes")

    def new_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "since": None,  # first message seen (staleness before the first sample)
            "win": None,  # open window: [start_ts, last_ts, n, [sum d x4], [sum p20 x4]]
            "hist": [],  # [ts, d0, d1, d2, d3, ref] samples, oldest first
            "active": False,
            "stale": False,
        }

    # ---------------------------------------------------------------- streaming interface

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
               ) -> Outcome:
        changed = False
        if state.get("v") != STATE_VERSION:
            state.clear()
            state.update(self.new_state())
            changed = True
        if state["since"] is None:
            state["since"] = ts_ms
            changed = True
        win = state["win"]
        if (win is not None and win[1] <= ts_ms < win[0] + self.sample_s * 1000
                and (ts_ms - win[1] < self.min_reading_gap_s * 1000
                     or win[2] >= self.max_window_readings)):
            # The window has enough readings for now (below): skip the reading's arithmetic
            # too. Nothing can be stale here, as the window's last reading is recent.
            return changed, None
        reading = self._reading(signals)
        if reading is None:
            stale = self._staleness(state, ts_ms)
            return changed or stale is not None, stale
        if win is not None and ts_ms < win[1]:
            return changed, None  # older than the window's last reading: a replay
        assessment = None
        if win is not None and ts_ms - win[0] >= self.sample_s * 1000:
            assessment = self._close_window(state)
            win = None
        if win is not None and (ts_ms - win[1] < self.min_reading_gap_s * 1000
                                or win[2] >= self.max_window_readings):
            # Enough readings for now: a car reporting every few seconds costs no state write
            # per message (the window's mean hardly improves, the changelog would grow).
            return changed, None
        deficits, levels = reading
        if win is None:
            state["win"] = [ts_ms, ts_ms, 1, [round(d, 3) for d in deficits],
                            [round(p, 3) for p in levels]]
        else:
            win[1], win[2] = ts_ms, win[2] + 1
            win[3] = [round(a + d, 3) for a, d in zip(win[3], deficits, strict=True)]
            win[4] = [round(a + p, 3) for a, p in zip(win[4], levels, strict=True)]
        return True, assessment

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]
                 ) -> Outcome:
        """Key-off ends the drive: its readings make a sample now rather than when the car
        next drives, which after a long park would be days after the tyre showed its loss."""
        if event.get("type") != "ignition" or event.get("state") not in OFF_STATES:
            return False, None
        win = state.get("win") if state.get("v") == STATE_VERSION else None
        if win is None or ts_ms < win[1] or win[2] < self.min_window_readings:
            return False, None  # nothing to close (too short a drive stays open, as before)
        return True, self._close_window(state)

    # ---------------------------------------------------------------- readings and samples

    def _reading(self, signals: Mapping[str, object]
                 ) -> tuple[list[float], list[float]] | None:
        """Per wheel: (deficit against the median of the other three, compensated pressure)."""
        ambient = as_number(signals.get(AMBIENT))
        levels: list[float] = []
        for p_path, t_path in zip(TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS, strict=True):
            pressure = as_number(signals.get(p_path))
            temp = as_number(signals.get(t_path))
            temp = ambient if temp is None else temp
            if pressure is None or temp is None or temp <= -273.0:
                return None
            levels.append(compensate(pressure, temp, self.ref_temp_c, self.atm_kpa))
        deficits = [levels[i] - median_of_three([levels[j] for j in range(4) if j != i])
                    for i in range(4)]
        return deficits, levels

    def _close_window(self, state: dict[str, Any]) -> Assessment | None:
        win = state["win"]
        state["win"] = None
        if win is None or win[2] < self.min_window_readings:
            return None
        n = win[2]
        deficits = [round(s / n, 3) for s in win[3]]
        levels = [s / n for s in win[4]]
        ts = int(win[1])
        hist: list[list[float]] = state["hist"]
        if hist and any(d - prev > self.reinflate_kpa
                        for d, prev in zip(deficits, hist[-1][1:5], strict=True)):
            hist.clear()  # the owner reinflated: the loss so far is history
        # The reference level: the median wheel, i.e. what the healthy tyres are set to.
        push_sample(state, [ts, *deficits, round(float(np.median(levels)), 2)], self.max_history)
        return self._assess(state, ts)

    # ---------------------------------------------------------------- staleness

    def _staleness(self, state: dict[str, Any], ts_ms: int) -> Assessment | None:
        hist, win = state["hist"], state["win"]
        last = hist[-1][0] if hist else state["since"]
        if win is not None:  # readings in the open window are data too
            last = max(last, win[1])
        silent_days = first_silence(state, last, ts_ms, self.stale_days)
        if silent_days is None:
            return None
        reason = (f"no tyre pressure sample with all four wheels and a temperature for "
                  f"{silent_days:.1f} days (more than {self.stale_days:g}); the car was not "
                  "driven or its tyre signals are missing")
        return data_missing(state, "Tyre pressures: data missing", self._summary(state), reason,
                            silent_days)

    # ---------------------------------------------------------------- trend and decision

    def _summary(self, state: dict[str, Any]) -> dict[str, Any]:
        hist = state["hist"]
        return {
            "samples": len(hist),
            "last_sample_ts": hist[-1][0] if hist else None,
            "latest_deficits_kpa": list(hist[-1][1:5]) if hist else None,
            "reference_kpa_at_20c": hist[-1][5] if hist else None,
        }

    def _assess(self, state: dict[str, Any], now: int) -> Assessment:
        hist = [h for h in state["hist"] if now - h[0] <= self.window_days * DAY_MS]
        t_days = np.asarray([(h[0] - now) / DAY_MS for h in hist], dtype=np.float64)
        span = float(t_days[-1] - t_days[0]) if len(hist) else 0.0
        reference = float(hist[-1][5])
        placard = self.placard_kpa if self.placard_kpa is not None else reference
        warning_kpa = self.warning_fraction * placard
        evidence = self._summary(state)
        evidence.update({
            "samples": len(hist), "window_days": round(span, 2),
            "placard_kpa": round(placard, 1), "placard_estimated": self.placard_kpa is None,
            "warning_kpa": round(warning_kpa, 1), "wheel": None, "pressure_kpa_at_20c": None,
            "leak_rate_kpa_per_day": None, "leak_rate_stderr": None,
            "predicted_failure_ts": None, "predicted_failure_earliest_ts": None,
            "predicted_failure_latest_ts": None, "days_to_failure": None,
        })
        if len(hist) < self.min_samples or span < self.min_span_days:
            return self._assess_without_trend(state, hist, span, reference, warning_kpa,
                                              evidence)
        # The worst wheel: the leaking one with the earliest warning, else the lowest one.
        worst: tuple[float, int, float, float, float, float, bool] | None = None
        for wheel in range(4):
            y = np.asarray([h[1 + wheel] for h in hist], dtype=np.float64)
            slope, level, stderr, dof = weighted_trend(t_days, y, self.half_life_days)
            crit = t_critical(dof, self.z)
            leaking = (slope < -self.min_rate_kpa_per_day and slope + crit * stderr < 0
                       and -slope * span >= self.min_loss_kpa)
            pressure = reference + level
            days_left = (max(0.0, pressure - warning_kpa) / -slope) if leaking else math.inf
            key = (days_left, level)
            if worst is None or key < (worst[0], worst[2]):
                worst = (days_left, wheel, level, slope, stderr, crit, leaking)
        assert worst is not None
        days_left, wheel, level, slope, stderr, crit, leaking = worst
        pressure = reference + level
        evidence.update({
            "wheel": WHEEL_NAMES[wheel], "pressure_kpa_at_20c": round(pressure, 1),
            "deficit_kpa": round(level, 2), "leak_rate_kpa_per_day": round(-slope, 2),
            "leak_rate_stderr": round(stderr, 2), "t_critical": round(crit, 2),
        })
        predicted: int | None = None
        if leaking:
            forecast = predict_failure(now, max(0.0, pressure - warning_kpa), -slope,
                                       crit * stderr)
            predicted = forecast.ts
            evidence.update(forecast.evidence)
        low = level < -self.low_deficit_kpa
        raise_now = (leaking and days_left <= self.horizon_days) or low
        if state["active"]:
            active = leaking or level < -(self.low_deficit_kpa - self.clear_margin_kpa)
        else:
            active = raise_now
        state["active"] = bool(active)
        if not active:
            return Assessment(active=False, title="Tyre pressures are even",
                              evidence=evidence, predicted_failure_ts=predicted)
        if days_left < self.critical_days or pressure <= warning_kpa:
            severity = "critical"
        elif days_left < self.warning_days:
            severity = "warning"
        else:
            severity = "info"
        name = WHEEL_NAMES[wheel]
        title = (f"Slow leak in the {name} tyre: losing {-slope:.1f} kPa/day, "
                 f"{pressure:.0f} kPa at 20 °C" if leaking
                 else f"{name.capitalize()} tyre {-level:.0f} kPa below the others")
        return Assessment(active=True, severity=severity, title=title, evidence=evidence,
                          predicted_failure_ts=predicted,
                          recommended_action=self._action(name, days_left, pressure,
                                                          warning_kpa))

    def _assess_without_trend(self, state: dict[str, Any], hist: list[list[float]],
                              span: float, reference: float, warning_kpa: float,
                              evidence: dict[str, Any]) -> Assessment:
        """Too few samples for a trend: a wheel already far below the others in the latest
        sample is raised all the same (a car that stood for days while a tyre leaked drives
        off with the loss already made), anything else abstains until there is a trend."""
        deficits = hist[-1][1:5]
        wheel = min(range(4), key=lambda i: deficits[i])
        level = float(deficits[wheel])
        threshold = self.low_deficit_kpa - (self.clear_margin_kpa if state["active"] else 0.0)
        if level >= -threshold:
            return Assessment(
                active=state["active"], title="Tyre pressures: collecting samples",
                evidence=evidence,
                abstain_reason=f"{len(hist)} tyre samples over {span:.1f} days; need "
                               f"{self.min_samples} over {self.min_span_days:g} days for a trend")
        state["active"] = True
        name = WHEEL_NAMES[wheel]
        pressure = reference + level
        evidence.update({"wheel": name, "pressure_kpa_at_20c": round(pressure, 1),
                         "deficit_kpa": round(level, 2)})
        severity = "critical" if pressure <= warning_kpa else "warning"
        return Assessment(
            active=True, severity=severity, evidence=evidence,
            title=f"{name.capitalize()} tyre {-level:.0f} kPa below the others",
            recommended_action=(
                f"Call the owner: the {name} tyre is {-level:.0f} kPa below the others "
                f"({pressure:.0f} kPa at 20 °C; the car warns at {warning_kpa:.0f}). The car "
                "has not driven enough yet to tell whether it is still losing air, so treat "
                "it as a possible puncture: ask them to reinflate it to the placard value "
                "before the next long drive and offer a puncture check.")
                if pressure > warning_kpa else self._action(name, 0.0, pressure, warning_kpa))

    @staticmethod
    def _action(name: str, days_left: float, pressure: float, warning_kpa: float) -> str:
        if pressure <= warning_kpa or days_left < 1:
            return (f"Call the owner today: the {name} tyre is (nearly) under-inflated enough "
                    "for the car's low-pressure warning. Ask them to reinflate it before "
                    "driving further and offer a puncture repair; if it is soft, offer "
                    "roadside assistance rather than driving on it.")
        if math.isfinite(days_left):
            return (f"Call the owner: the {name} tyre is slowly losing air (likely a nail or "
                    "valve) and will trigger the car's low-pressure warning in about "
                    f"{max(1, round(days_left))} days. Offer a puncture repair at the nearest "
                    "service point; until then, check and reinflate it to the placard value.")
        return (f"Contact the owner: the {name} tyre is much lower than the others though not "
                "falling now. Suggest reinflating all tyres to the placard value and checking "
                "that tyre for damage at the next service visit.")
