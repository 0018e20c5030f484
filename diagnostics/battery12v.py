"""Weak 12 V battery: resting voltage after key-off, temperature-compensated, trending over days.

Physical reasoning
------------------
An EV's 12 V lead-acid / AGM battery boots the car: it powers the computers that close the
high-voltage contactors. When it can no longer do that the car is "dead" even with a full
traction battery, so a weakening 12 V battery is the classic avoidable breakdown.

* While the car is ON the DC-DC converter charges the 12 V battery (13.6-14.4 V), and for an
  hour or two after key-off the terminal voltage still carries surface charge. Only after
  ``rest_delay_s`` without charging does the voltage approach the open-circuit (resting)
  voltage, which tracks the battery's state of charge and health. So the detector takes one
  resting sample per parking period: the median of the readings in the ``sample_span_s``
  after the rest delay (the median shrugs off single noisy readings).
* A parked EV sometimes wakes its DC-DC to top the 12 V battery up (voltage > ``charging_v``
  or current > 1 A while OFF); that restarts the rest clock, it is not a key-on.
* Cold lowers the measured resting voltage by about ``temp_coeff_v_per_c`` per °C without
  anything being wrong. The battery temperature lags the air (time constant
  ``battery_lag_s``), so the detector filters the ambient readings with the same first-order
  lag and compensates every sample to 25 °C (``V25``). A cold snap therefore moves the raw
  voltage but not V25, and does not raise an alert.
* A battery losing capacity shows V25 falling day after day. A least-squares trend over the
  last ``window_days`` (at least ``min_samples`` samples spanning ``min_span_days``), weighted
  towards recent days (``half_life_days``), gives the decline rate and its standard error;
  where the trend crosses ``failure_v25`` is the predicted failure, with an uncertainty band
  from the slope's standard error.

The condition is raised when the decline is significant (slope below ``-min_slope_v_per_day``
and two standard errors below zero) and failure is predicted within ``horizon_days``, or when
V25 is already below ``warn_v25``. Once raised it is cleared only when the decline is no longer
significant *and* V25 is back above ``warn_v25 + clear_margin_v`` (e.g. battery replaced):
hysteresis, so a noisy battery near a threshold does not flap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from diagnostics.base import Assessment, Detector, Outcome

DAY_MS = 86_400_000
VOLTAGE = "Vehicle.LowVoltageBattery.CurrentVoltage"
CURRENT = "Vehicle.LowVoltageBattery.CurrentCurrent"
AMBIENT = "Vehicle.Exterior.AirTemperature"
KEY_STATE = "Vehicle.LowVoltageSystemState"
ON_STATES = frozenset({"ON", "START", "ACC"})


class WeakBattery12V(Detector):
    name: ClassVar[str] = "battery12v"
    version: ClassVar[str] = "1.0.0"

    def __init__(
        self,
        rest_delay_s: float = 4 * 3600,
        sample_span_s: float = 2 * 3600,
        charging_v: float = 13.0,
        temp_coeff_v_per_c: float = 0.0025,
        battery_lag_s: float = 3 * 3600,
        failure_v25: float = 11.9,
        warn_v25: float = 12.2,
        clear_margin_v: float = 0.1,
        min_samples: int = 3,
        min_span_days: float = 2.0,
        window_days: float = 14.0,
        max_history: int = 28,
        min_slope_v_per_day: float = 0.01,
        horizon_days: float = 30.0,
        stale_days: float = 7.0,
        half_life_days: float = 4.0,
    ) -> None:
        self.rest_delay_s = rest_delay_s
        self.sample_span_s = sample_span_s
        self.charging_v = charging_v
        self.temp_coeff_v_per_c = temp_coeff_v_per_c
        self.battery_lag_s = battery_lag_s
        self.failure_v25 = failure_v25
        self.warn_v25 = warn_v25
        self.clear_margin_v = clear_margin_v
        self.min_samples = min_samples
        self.min_span_days = min_span_days
        self.window_days = window_days
        self.max_history = max_history
        self.min_slope_v_per_day = min_slope_v_per_day
        self.horizon_days = horizon_days
        self.stale_days = stale_days
        self.half_life_days = half_life_days

    def new_state(self) -> dict[str, Any]:
        return {
            "on": None,  # last known key state
            "rest": None,  # when the battery started resting (key-off or end of a top-up)
            "win": [],  # [ts, volts] readings of this parking period's sampling window
            "taken": False,  # this parking period already gave its sample
            "tb": None,  # estimated battery temperature (lag-filtered ambient), °C
            "tb_ts": None,
            "hist": [],  # [ts, v25] resting samples, oldest first
            "active": False,
        }

    # ---------------------------------------------------------------- streaming interface

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]) -> Outcome:
        changed = False
        key = signals.get(KEY_STATE)
        if isinstance(key, str):
            changed, assessment = self._key(state, ts_ms, key in ON_STATES)
            if assessment is not None:
                return True, assessment
        ambient = signals.get(AMBIENT)
        if isinstance(ambient, float | int):
            self._follow_ambient(state, ts_ms, float(ambient))
        volts = signals.get(VOLTAGE)
        if state["on"] is not False or not isinstance(volts, float | int):
            return changed, None
        current = signals.get(CURRENT)
        if volts > self.charging_v or (isinstance(current, float | int) and current > 1.0):
            # A top-up while parked: surface charge again, restart the rest clock.
            state["rest"], state["win"], state["taken"] = ts_ms, [], False
            return True, None
        rest = state["rest"]
        if rest is None or state["taken"] or ts_ms - rest < self.rest_delay_s * 1000:
            return changed, None
        state["win"].append([ts_ms, float(volts)])
        window = state["win"]
        if ts_ms - window[0][0] >= self.sample_span_s * 1000 and len(window) >= 2:
            return True, self._take_sample(state)
        return True, None

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        if event.get("type") == "ignition" and isinstance(event.get("state"), str):
            return self._key(state, ts_ms, event["state"] in ON_STATES)
        return False, None

    # ---------------------------------------------------------------- internals

    def _key(self, state: dict[str, Any], ts_ms: int, is_on: bool) -> Outcome:
        if state["on"] is is_on:
            return False, None
        assessment = None
        if is_on:
            # A parking period that ends before the full span still yields its sample when the
            # battery rested long enough for at least one reading.
            if state["win"] and not state["taken"]:
                assessment = self._take_sample(state)
            state["rest"], state["win"], state["taken"] = None, [], False
        else:
            state["rest"], state["win"], state["taken"] = ts_ms, [], False
        state["on"] = is_on
        return True, assessment

    def _follow_ambient(self, state: dict[str, Any], ts_ms: int, ambient: float) -> None:
        if state["tb"] is None:
            state["tb"], state["tb_ts"] = ambient, ts_ms
            return
        dt = max(0, ts_ms - state["tb_ts"])
        alpha = 1.0 - math.exp(-dt / (self.battery_lag_s * 1000))
        state["tb"] += (ambient - state["tb"]) * alpha
        state["tb_ts"] = ts_ms

    def _take_sample(self, state: dict[str, Any]) -> Assessment:
        window = np.asarray([v for _, v in state["win"]], dtype=np.float64)
        ts = int(state["win"][-1][0])
        battery_c = 25.0 if state["tb"] is None else float(state["tb"])
        v25 = float(np.median(window)) - self.temp_coeff_v_per_c * (battery_c - 25.0)
        state["taken"], state["win"] = True, []
        hist: list[list[float]] = state["hist"]
        hist.append([ts, round(v25, 4)])
        del hist[: max(0, len(hist) - self.max_history)]
        return self._assess(state, ts, battery_c)

    def _assess(self, state: dict[str, Any], now: int, battery_c: float) -> Assessment:
        hist = [h for h in state["hist"] if now - h[0] <= self.window_days * DAY_MS]
        t_days = np.asarray([(h[0] - now) / DAY_MS for h in hist], dtype=np.float64)
        v25 = np.asarray([h[1] for h in hist], dtype=np.float64)
        span = float(t_days[-1] - t_days[0]) if len(hist) else 0.0
        evidence: dict[str, Any] = {
            "samples": len(hist),
            "window_days": round(span, 2),
            "latest_v25": round(float(v25[-1]), 3) if len(hist) else None,
            "battery_temp_c": round(battery_c, 1),
            "temp_coeff_v_per_c": self.temp_coeff_v_per_c,
            "failure_v25": self.failure_v25,
            "warn_v25": self.warn_v25,
        }
        if len(hist) >= 2 and now - hist[-2][0] > self.stale_days * DAY_MS:
            return Assessment(active=state["active"], evidence=evidence,
                              abstain_reason=f"no resting sample for {self.stale_days:g} days "
                              "before this one; waiting for a new trend")
        if len(hist) < self.min_samples or span < self.min_span_days:
            return Assessment(active=state["active"], evidence=evidence,
                              abstain_reason=f"{len(hist)} resting samples over {span:.1f} days; "
                              f"need {self.min_samples} over {self.min_span_days:g}")
        # Weighted least squares: recent samples count more (half-life ``half_life_days``), so
        # the trend follows a decline that started inside the window instead of averaging it
        # with the flat days before it.
        w = np.power(0.5, -t_days / self.half_life_days)
        sw = float(np.sum(w))
        t_mean = float(np.sum(w * t_days)) / sw
        v_mean = float(np.sum(w * v25)) / sw
        sxx = float(np.sum(w * (t_days - t_mean) ** 2))
        if sxx <= 0:
            return Assessment(active=state["active"], evidence=evidence,
                              abstain_reason="resting samples too close together to trend")
        slope = float(np.sum(w * (t_days - t_mean) * (v25 - v_mean))) / sxx
        intercept = v_mean - slope * t_mean  # plain floats: the state is JSON
        residuals = v25 - (slope * t_days + intercept)
        n_eff = sw * sw / float(np.sum(w * w))  # Kish effective sample size
        dof = max(1.0, n_eff - 2)
        stderr = math.sqrt(float(np.sum(w * residuals**2)) / sw * n_eff / dof / (sxx / sw * n_eff))
        level = float(intercept)  # the fitted V25 now (t = 0 is the latest sample)
        declining = bool(slope < -self.min_slope_v_per_day and slope + 2 * stderr < 0)
        evidence.update({
            "fitted_v25": round(level, 3),
            "slope_v_per_day": round(float(slope), 4),
            "slope_stderr": round(stderr, 4),
        })
        days_left: float | None = None
        predicted: int | None = None
        if declining:
            days_left = max(0.0, (level - self.failure_v25) / -slope)
            predicted = now + int(days_left * DAY_MS)
            fast, slow = slope - 2 * stderr, min(-1e-6, slope + 2 * stderr)
            evidence.update({
                "days_to_failure": round(days_left, 1),
                "predicted_failure_ts": predicted,
                "predicted_failure_earliest_ts":
                    now + int(max(0.0, (level - self.failure_v25) / -fast) * DAY_MS),
                "predicted_failure_latest_ts":
                    now + int(min(3650.0, max(0.0, (level - self.failure_v25) / -slow)) * DAY_MS),
            })
        raise_now = (declining and days_left is not None and days_left <= self.horizon_days) or (
            level < self.warn_v25)
        if state["active"]:
            active = declining or level <= self.warn_v25 + self.clear_margin_v
        else:
            active = raise_now
        state["active"] = bool(active)
        if not active:
            return Assessment(active=False, evidence=evidence,
                              title="12 V battery resting voltage is healthy")
        if (days_left is not None and days_left < 3) or level < 12.0:
            severity = "critical"
        elif days_left is not None and days_left < 10:
            severity = "warning"
        else:
            severity = "info"
        when = f"in about {days_left:.0f} days" if days_left is not None else "soon"
        return Assessment(
            active=True,
            severity=severity,
            title=f"12 V battery weakening: resting voltage {level:.2f} V at 25 °C, "
                  f"falling {-slope * 1000:.0f} mV/day" if declining else
                  f"12 V battery low: resting voltage {level:.2f} V at 25 °C",
            evidence=evidence,
            predicted_failure_ts=predicted,
            recommended_action=(
                "Call the owner: the 12 V battery is weakening and may leave the car unable to "
                f"start {when}. Offer a 12 V battery test and replacement at the nearest service "
                "point; until then, avoid leaving the car parked for many days in a row."
            ),
        )
