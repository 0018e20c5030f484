"""Weak 12 V battery: resting voltage after key-off, temperature-compensated, trending over days.

Why it matters
--------------
An EV's 12 V lead-acid / AGM battery boots the car: it powers the computers that close the
high-voltage contactors. When it can no longer do that the car is "dead" even with a full
traction battery, so a weakening 12 V battery is the classic avoidable breakdown. Its health
shows in the *resting* (open-circuit) voltage, which drifts down day after day as the battery
loses capacity, long before the morning it fails.

Physical model (the constructor defaults; the fleet simulator follows the same model)
------------------------------------------------------------------------------------
* Resting open-circuit voltage at 25 °C, ``V25``: 12.55-12.80 V for a healthy battery.
* Temperature: the measured resting voltage is ``V25 + temp_coeff_v_per_c * (T_battery - 25)``
  with ``temp_coeff_v_per_c = 0.0025`` V/°C. A cold snap from +10 °C to -20 °C therefore lowers
  the raw voltage by 75 mV without anything being wrong.
* The battery temperature lags the air with a first-order time constant ``battery_lag_s``
  (3 h). The detector runs the same first-order filter over the ambient readings it receives
  while the car is parked, i.e. an exponentially weighted average of the ambient temperature
  over the last few hours of the parking period, not the instantaneous reading (which at dawn
  can be several degrees off the battery's own temperature).
* While the car is ON the DC-DC converter charges the battery at 13.6-14.4 V. After key-off
  the terminal voltage carries surface charge, ``V_rest + surface_charge_v * exp(-t / 1 h)``.
* A combustion car has no DC-DC: while its engine runs the alternator holds the bus at its
  regulator's 13.8-14.6 V (higher in the cold), and in a stop-start pause, ON but with the
  engine stopped, the battery carries the car and its voltage dips under the load. Both are
  the car in use, never a resting reading: a running engine
  (``CombustionEngine.IsRunning``, or an engine ``Speed`` above 0 when ``IsRunning`` is
  absent) counts as key-on whatever the key state says, so the alternator's voltage is never
  read as a healthy resting battery, nor a running car's dip as a weak one. A hybrid charges
  its 12 V from the traction battery's DC-DC, as an EV does.
* A parked EV sometimes wakes its DC-DC to top the 12 V battery up (about 14 V for ~30 min,
  still OFF). That is surface charge again, so it restarts the rest clock; it is not a key-on.
* Failure: below ``failure_v25 = 11.9`` V the car can no longer close its HV contactors. A weak
  battery declines roughly linearly, 0.02-0.08 V/day in V25. Measurement noise is about
  0.015 V, and temperature compensation is never perfect (unknown warm-up while driving,
  ambient sensor noise), which is why single readings are never trusted on their own.

Resting samples
---------------
A reading counts as resting when the car has been OFF for at least ``rest_delay_s`` (4 h) and
no top-up (voltage above ``charging_v`` or current above ``charging_a``) happened in that time;
the residual surface charge (0.35 V * e^-4 = 6 mV at 4 h) is subtracted with the model above.
Every resting reading is compensated to 25 °C with the filtered battery temperature *at that
reading*. One resting sample per parking period is the median of the compensated readings
between ``rest_delay_s`` and ``rest_delay_s + sample_span_s`` after key-off or top-up (4 h to
10 h: long enough for a robust median, short enough to finish in an overnight park), capped at
``max_window_readings`` readings so the state stays small for cars that report every minute.
A parking period that ends earlier still gives its sample if it produced at least
``min_window_readings`` resting readings. A car parked for days gives one more sample each
``resample_s`` (24 h): a week-long park is exactly when a weak battery fails, so it must not
go unobserved.

Trend and decision
------------------
The last ``max_history`` samples (within ``window_days``) are fitted with weighted least squares
(weights halve every ``half_life_days`` back in time, so a decline that began inside the
window is followed instead of being averaged with the flat days before it). This gives the
slope in V/day and its standard error; the significance multiplier is the Student-t 97.5 %
quantile for the effective degrees of freedom (never below ``z``), because three or four noisy
samples can fake a slope that "two standard errors" would accept.

* Persistence: no conclusion before ``min_samples`` samples spanning ``min_span_days``.
* Declining: slope below ``-min_slope_v_per_day`` and slope + t * stderr below zero.
* Projection: where the fitted line crosses ``failure_v25`` is the predicted failure; the band
  ``predicted_failure_earliest_ts`` .. ``predicted_failure_latest_ts`` uses slope -/+ t * stderr.
* Raise when declining with failure within ``horizon_days``, or when the latest V25 is below
  ``warn_v25``. Severity: critical if failure is under ``critical_days`` away or V25 is below
  ``critical_v25``; warning under ``warning_days``; info otherwise.
* Hysteresis: once raised, clear only when the decline is no longer significant *and* the
  latest V25 is above ``warn_v25 + clear_margin_v`` (a replaced battery jumps to ~12.7 V).
* Abstain (an assessment with ``abstain_reason``; ``active`` unchanged) when there are too few
  samples for a trend, and once per silence when no resting sample arrived for more than
  ``stale_days`` (car offline, never parked long enough, signals missing).

An assessment is returned only when a resting sample was evaluated or staleness was first
noticed, never per message. While the car is ON nothing is stored, so a driving car costs no
state writes.
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
    ON_STATES,
    as_number,
    check_trend_sizes,
    check_window_sizes,
    engine_running,
    predict_failure,
    t_critical,
)
from diagnostics.signals import AMBIENT, CURRENT, KEY_STATE, VOLTAGE
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS

STATE_VERSION = 2  # bump when the state layout changes; older states are upgraded in place


class WeakBattery12V(Detector):
    """Predicts the no-start of a weakening 12 V battery from its resting voltage trend."""

    name: ClassVar[str] = "battery12v"
    version: ClassVar[str] = "2.1.0"

    def __init__(
        self,
        rest_delay_s: float = 4 * 3600,
        sample_span_s: float = 6 * 3600,
        resample_s: float = 24 * 3600,
        min_window_readings: int = 2,
        max_window_readings: int = 24,
        charging_v: float = 13.0,
        charging_a: float = 1.0,
        surface_charge_v: float = 0.35,
        surface_tau_s: float = 3600,
        temp_coeff_v_per_c: float = 0.0025,
        battery_lag_s: float = 3 * 3600,
        failure_v25: float = 11.9,
        warn_v25: float = 12.2,
        critical_v25: float = 12.0,
        clear_margin_v: float = 0.1,
        min_samples: int = 3,
        min_span_days: float = 2.0,
        window_days: float = 14.0,
        max_history: int = 28,
        half_life_days: float = 4.0,
        min_slope_v_per_day: float = 0.01,
        z: float = 2.0,
        horizon_days: float = 30.0,
        critical_days: float = 3.0,
        warning_days: float = 10.0,
        stale_days: float = 7.0,
    ) -> None:
        self.rest_delay_s = rest_delay_s
        self.sample_span_s = sample_span_s
        self.resample_s = resample_s
        self.min_window_readings = min_window_readings
        self.max_window_readings = max_window_readings
        self.charging_v = charging_v
        self.charging_a = charging_a
        self.surface_charge_v = surface_charge_v
        self.surface_tau_s = surface_tau_s
        self.temp_coeff_v_per_c = temp_coeff_v_per_c
        self.battery_lag_s = battery_lag_s
        self.failure_v25 = failure_v25
        self.warn_v25 = warn_v25
        self.critical_v25 = critical_v25
        self.clear_margin_v = clear_margin_v
        self.min_samples = min_samples
        self.min_span_days = min_span_days
        self.window_days = window_days
        self.max_history = max_history
        self.half_life_days = half_life_days
        self.min_slope_v_per_day = min_slope_v_per_day
        self.z = z
        self.horizon_days = horizon_days
        self.critical_days = critical_days
        self.warning_days = warning_days
        self.stale_days = stale_days
        if not failure_v25 < critical_v25 <= warn_v25:
            raise ValueError("need failure_v25 < critical_v25 <= warn_v25")
        check_trend_sizes(min_samples, max_history)
        check_window_sizes(min_window_readings, max_window_readings)

    def new_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "ts": None,  # event time of the last state change (older messages are ignored)
            "since": None,  # first message seen: how long we have been waiting for samples
            "on": None,  # last known key state (None: not known yet)
            "rest": None,  # start of the current rest (key-off or end of the last top-up)
            "taken": None,  # start of the window that last gave this rest period a sample
            "win": [],  # [ts, v25] compensated resting readings of the open sampling window
            "tb": None,  # estimated battery temperature (lag-filtered ambient), °C
            "tb_ts": None,
            "amb": None,  # last ambient reading while parked, °C (evidence)
            "hist": [],  # [ts, v25] resting samples, oldest first, at most max_history
            "active": False,
            "stale": False,  # staleness already announced for the current silence
        }

    # ---------------------------------------------------------------- streaming interface

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]) -> Outcome:
        changed = self._upgrade(state)
        if state["ts"] is not None and ts_ms < state["ts"]:
            return changed, None  # late message: the state already reflects newer event time
        assessment: Assessment | None = None
        if state["since"] is None:
            state["since"] = ts_ms
            changed = True
        key = signals.get(KEY_STATE)
        if engine_running(signals):
            key = "ON"  # the alternator is charging: the car is in use, whatever the key says
        if key in ON_STATES or key in OFF_STATES:
            key_changed, assessment = self._key(state, ts_ms, key in ON_STATES)
            changed = changed or key_changed
        if state["on"] is False:
            parked_changed, sampled = self._parked(state, ts_ms, signals)
            changed = changed or parked_changed
            assessment = assessment or sampled
        if assessment is None:
            assessment = self._staleness(state, ts_ms)
            changed = changed or assessment is not None
        if changed:
            state["ts"] = ts_ms
        return changed, assessment

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        """Ignition events mark key-on / key-off as precisely as the telemetry state does."""
        if event.get("type") != "ignition":
            return False, None
        key = event.get("state")
        if key not in ON_STATES and key not in OFF_STATES:
            return False, None
        upgraded = self._upgrade(state)
        if state["ts"] is not None and ts_ms < state["ts"]:
            return upgraded, None
        changed, assessment = self._key(state, ts_ms, key in ON_STATES)
        if changed:
            state["ts"] = ts_ms
        return changed or upgraded, assessment

    def _upgrade(self, state: dict[str, Any]) -> bool:
        """Bring a state restored from an older detector version to the current layout.

        The resting-sample history and the raised flag carry over (they are what days of
        telemetry bought); the in-progress parking period is simply observed afresh.
        """
        if state.get("v") == STATE_VERSION:
            return False
        fresh = self.new_state()
        hist = state.get("hist")
        if isinstance(hist, list):
            fresh["hist"] = [[int(h[0]), float(h[1])] for h in hist[-self.max_history:]
                             if isinstance(h, list) and len(h) == 2]
        fresh["active"] = bool(state.get("active", False))
        state.clear()
        state.update(fresh)
        return True

    # ---------------------------------------------------------------- resting samples

    def is_top_up(self, volts: float, current: float | None) -> bool:
        """A reading of a parked car whose DC-DC is charging the 12 V battery: not resting,
        and it restarts the rest clock (surface charge again)."""
        return volts > self.charging_v or (current is not None and current > self.charging_a)

    @property
    def rest_delay_ms(self) -> int:
        """How long after key-off or a top-up a reading starts to count as resting."""
        return int(self.rest_delay_s * 1000)

    def _key(self, state: dict[str, Any], ts_ms: int, is_on: bool) -> Outcome:
        if state["on"] is is_on:
            return False, None
        assessment = None
        if is_on:
            # The drive ends the rest; readings already collected still make a sample.
            assessment = self._close_window(state)
            state["rest"], state["taken"] = None, None
        else:
            state["rest"], state["taken"], state["win"] = ts_ms, None, []
        state["on"] = is_on
        return True, assessment

    def _parked(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
                ) -> Outcome:
        changed = False
        ambient = as_number(signals.get(AMBIENT))
        if ambient is not None:
            self._follow_ambient(state, ts_ms, ambient)
            changed = True
        volts = as_number(signals.get(VOLTAGE))
        if volts is None:
            return changed, None
        if self.is_top_up(volts, as_number(signals.get(CURRENT))):
            # A top-up while parked: surface charge again, restart the rest clock (the readings
            # before it were genuine resting readings and still make a sample).
            assessment = self._close_window(state)
            state["rest"], state["taken"] = ts_ms, None
            return True, assessment
        window: list[list[float]] = state["win"]
        if window and ts_ms - window[0][0] > self.sample_span_s * 1000:
            # The window's time ran out during a gap in the data: it closes with the readings
            # it has, and this reading is considered afresh below.
            timed_out = self._close_window(state)
            if timed_out is not None:
                return True, timed_out
            changed = True
        rest = state["rest"]
        since_rest_ms = ts_ms - rest
        if since_rest_ms < self.rest_delay_s * 1000:
            return changed, None
        taken = state["taken"]
        if not state["win"] and taken is not None and ts_ms - taken < self.resample_s * 1000:
            return changed, None  # this rest period already gave today's sample
        if state["tb"] is None:
            return changed, None  # no temperature yet: the reading cannot be compensated
        surface = self.surface_charge_v * math.exp(-since_rest_ms / (self.surface_tau_s * 1000))
        v25 = volts - surface - self.temp_coeff_v_per_c * (state["tb"] - 25.0)
        window = state["win"]
        window.append([ts_ms, round(v25, 4)])
        if (len(window) >= self.max_window_readings
                or ts_ms - window[0][0] >= self.sample_span_s * 1000):
            return True, self._close_window(state)
        return True, None

    def _follow_ambient(self, state: dict[str, Any], ts_ms: int, ambient: float) -> None:
        state["amb"] = ambient
        if state["tb"] is None:
            state["tb"], state["tb_ts"] = ambient, ts_ms
            return
        # Exact first-order lag for a step held since the previous reading. Only parked
        # readings are followed (a driving car then costs no state writes); after a drive the
        # gap since the last parked reading gives the new reading the weight the elapsed time
        # deserves, so a long drive or day out simply brings the estimate to the new air.
        dt = max(0, ts_ms - state["tb_ts"])
        alpha = 1.0 - math.exp(-dt / (self.battery_lag_s * 1000))
        state["tb"] = round(state["tb"] + (ambient - state["tb"]) * alpha, 4)
        state["tb_ts"] = ts_ms

    def _close_window(self, state: dict[str, Any]) -> Assessment | None:
        window: list[list[float]] = state["win"]
        state["win"] = []
        if len(window) < self.min_window_readings:
            return None
        v25 = float(np.median(np.asarray([v for _, v in window], dtype=np.float64)))
        ts = int(window[-1][0])
        state["taken"] = int(window[0][0])  # windows of a long park start resample_s apart
        push_sample(state, [ts, round(v25, 4)], self.max_history)
        return self._assess(state, ts)

    # ---------------------------------------------------------------- staleness

    def _staleness(self, state: dict[str, Any], ts_ms: int) -> Assessment | None:
        hist = state["hist"]
        silent_days = first_silence(state, hist[-1][0] if hist else state["since"], ts_ms,
                                    self.stale_days)
        if silent_days is None:
            return None
        if hist:
            reason = (f"no resting 12 V sample for {silent_days:.1f} days (more than "
                      f"{self.stale_days:g}); the trend is out of date")
        elif state["on"] is None:
            reason = (f"no key state ({KEY_STATE} or ignition events) in {silent_days:.1f} days; "
                      "cannot tell resting voltage from charging")
        elif state["tb"] is None:
            reason = (f"no ambient temperature ({AMBIENT}) while parked in {silent_days:.1f} "
                      "days; resting voltage cannot be temperature-compensated")
        else:
            reason = (f"no resting 12 V sample in {silent_days:.1f} days: the car never stayed "
                      f"off for {self.rest_delay_s / 3600:g} h without a top-up, or reported no "
                      "voltage while parked")
        return data_missing(state, "12 V battery: resting voltage data missing",
                            self._summary(state), reason, silent_days)

    # ---------------------------------------------------------------- trend and decision

    def _summary(self, state: dict[str, Any]) -> dict[str, Any]:
        hist = state["hist"]
        return {
            "latest_v25": hist[-1][1] if hist else None,
            "last_sample_ts": hist[-1][0] if hist else None,
            "samples": len(hist),
            "failure_v25": self.failure_v25,
            "warn_v25": self.warn_v25,
            "temp_coeff_v_per_c": self.temp_coeff_v_per_c,
            "battery_temp_c": None if state["tb"] is None else round(state["tb"], 1),
            "last_ambient_c": state["amb"],
        }

    def _assess(self, state: dict[str, Any], now: int) -> Assessment:
        hist = [h for h in state["hist"] if now - h[0] <= self.window_days * DAY_MS]
        t_days = np.asarray([(h[0] - now) / DAY_MS for h in hist], dtype=np.float64)
        v25 = np.asarray([h[1] for h in hist], dtype=np.float64)
        span = float(t_days[-1] - t_days[0]) if len(hist) else 0.0
        latest = float(v25[-1])
        evidence = self._summary(state)
        evidence.update({
            "samples": len(hist),
            "window_days": round(span, 2),
            "fitted_v25": None,
            "slope_v_per_day": None,
            "slope_stderr": None,
            "predicted_failure_ts": None,
            "predicted_failure_earliest_ts": None,
            "predicted_failure_latest_ts": None,
            "days_to_failure": None,
        })
        if len(hist) < self.min_samples or span < self.min_span_days:
            return Assessment(
                active=state["active"], title="12 V battery: collecting resting samples",
                evidence=evidence,
                abstain_reason=f"{len(hist)} resting samples over {span:.1f} days; need "
                               f"{self.min_samples} over {self.min_span_days:g} days for a trend")
        slope, level, stderr, dof = weighted_trend(t_days, v25, self.half_life_days)
        crit = t_critical(dof, self.z)
        declining = slope < -self.min_slope_v_per_day and slope + crit * stderr < 0
        evidence.update({
            "fitted_v25": round(level, 3),
            "slope_v_per_day": round(slope, 4),
            "slope_stderr": round(stderr, 4),
            "t_critical": round(crit, 2),
        })
        days_left: float | None = None
        predicted: int | None = None
        if declining:
            forecast = predict_failure(now, max(0.0, level - self.failure_v25), -slope,
                                       crit * stderr)
            days_left, predicted = forecast.days_left, forecast.ts
            evidence.update(forecast.evidence)
        raise_now = ((declining and days_left is not None and days_left <= self.horizon_days)
                     or latest < self.warn_v25)
        if state["active"]:
            # Hysteresis: a battery hovering near a threshold does not flap.
            active = declining or latest <= self.warn_v25 + self.clear_margin_v
        else:
            active = raise_now
        state["active"] = bool(active)
        if not active:
            return Assessment(active=False, title="12 V battery resting voltage is healthy",
                              evidence=evidence, predicted_failure_ts=predicted)
        if (days_left is not None and days_left < self.critical_days) or (
                latest < self.critical_v25):
            severity = "critical"
        elif days_left is not None and days_left < self.warning_days:
            severity = "warning"
        else:
            severity = "info"
        return Assessment(
            active=True,
            severity=severity,
            title=self._title(latest, slope if declining else None),
            evidence=evidence,
            predicted_failure_ts=predicted,
            recommended_action=self._action(latest, days_left),
        )

    @staticmethod
    def _title(latest: float, slope: float | None) -> str:
        if slope is None:
            return f"12 V battery low: resting voltage {latest:.2f} V at 25 °C"
        return (f"12 V battery weakening: resting voltage {latest:.2f} V at 25 °C, "
                f"falling {-slope * 1000:.0f} mV/day")

    def _action(self, latest: float, days_left: float | None) -> str:
        if latest < self.failure_v25 or (days_left is not None and days_left < 1):
            return ("Call the owner today: the 12 V battery is so weak that the car may not "
                    "start next time it is parked. Offer roadside assistance or a mobile 12 V "
                    "battery replacement, and a jump-start if they are stranded.")
        if days_left is not None:
            return ("Call the owner: the 12 V battery is weakening and may leave the car unable "
                    f"to start in about {max(1, round(days_left))} days. Offer a 12 V battery "
                    "test/replacement at the nearest service point; until then avoid leaving "
                    "the car parked for many days.")
        return ("Contact the owner: the 12 V battery's resting voltage is low "
                f"({latest:.2f} V at 25 °C) though not falling quickly. Offer a 12 V battery "
                "test at the next convenient service visit; until then avoid leaving the car "
                "parked for many days.")
