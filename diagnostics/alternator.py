"""Charging system (alternator and regulator): the 12 V bus while the engine runs, over days.

Why it matters
--------------
In a combustion car the alternator recharges the 12 V battery after every start and carries
the car's electrical load while the engine runs. When its regulator, brushes or a diode wear,
the charging voltage sags: each drive leaves the battery a little less charged, until one
morning the engine will not crank, or the car dies on the road once the battery is empty. The
battery itself is healthy, so replacing it only buys days; the sag shows in the charging
voltage a week or more before the battery gives up.

Physical model (the constructor defaults; the fleet simulator follows the same model)
------------------------------------------------------------------------------------
* While the engine runs (``CombustionEngine.IsRunning``, or an engine ``Speed`` above 0 when
  ``IsRunning`` is absent) a healthy regulator holds the bus at its set point, 13.9-14.5 V at
  25 °C, higher for a cold battery: ``temp_coeff_v_per_c`` (0.008 V/°C) below 25 °C, at most
  ``temp_comp_limit_v`` (0.4 V) either way. The battery temperature is estimated as the air
  plus ``warmup_c`` (3 °C). At a standstill the bus dips (idle), so only readings while
  moving count; in a stop-start pause the engine is not running and the battery carries the
  car, so those readings never count either.
* A battery charged at a bus voltage V rests at most at ``V - headroom_v`` (0.55 V): once the
  charging voltage falls to ``failure_v`` (11.9 + 0.55 = 12.45 V at 25 °C) a drive can no
  longer keep the battery above the no-start level: that is the failure predicted.
* A wearing charging system sags roughly linearly, 0.06-0.15 V/day in the simulator.
* A car that reports a traction battery (``TRACTION_SOC``) is a hybrid or an EV: its 12 V is
  charged by the traction battery's DC-DC converter, whose set point does not follow the
  engine, so the detector leaves it alone (``dcdc``) from its first such message on.

Samples
-------
One sample per drive (engine-running period), defined in event time so that a car reporting
twice a second and one reporting every ten seconds give the same samples: each compensated
reading taken while moving, from ``settle_s`` (2 min) after the engine started (the first
minutes refill what the crank drew), counts for the time since the drive's previous reading
(at most ``hold_s``), in a histogram of ``bin_v`` (10 mV) bins. The sample is the
``level_quantile`` (90th percentile) of that time, with the time-weighted mean battery current
beside it. Why an upper percentile rather than the median: a healthy regulator reaches its set
point once the battery has refilled, but the bus spends minutes below it under load (fans,
lights, a heavy idle), and what OBD-II reports is the control module's supply, measured at the
ECU behind its wiring (a real 2014 petrol car reads a median of 13.7 V while driving); a
failing alternator never reaches the set point at all. A drive closes at key-off (a key state
or an ``ignition`` OFF event), when the engine has not run for ``gap_s`` (30 min), or after
``max_sample_s`` (2 h) of event time after settling, so that a long trip gives a sample every
two hours; a drive with less than ``min_moving_s`` (1 min) of counted time gives none.

Decision
--------
* Low: the median of the last ``level_samples`` (3) samples below ``low_v`` (13.4 V at 25 °C):
  the battery is no longer fully charged by driving.
* Sagging: over the samples of the last ``window_days`` (weights halving every
  ``half_life_days``), a slope below ``-min_slope_v_per_day`` that is significant (slope +
  Student-t * stderr < 0), a fitted level at least ``min_drop_v`` below the 90th percentile
  of the window (a real sag, not weather), and a predicted failure within ``horizon_days``
  (3 weeks: a healthy car's level wanders 0.2 V from drive to drive with load and weather, and
  a real one's fitted slope reached -47 mV/day, a "failure" 4 weeks out);
  no trend before ``min_samples`` samples spanning ``min_span_days``.
* Severity: critical under ``critical_days`` to failure or below ``critical_v`` (the battery
  discharges while driving), warning under ``warning_days`` or when low, info otherwise.
* Hysteresis: once raised, cleared only when neither sagging nor below ``low_v +
  clear_margin_v`` (a repaired alternator jumps back to its set point).
* Abstain once per silence when a car whose engine the detector has seen run gave no sample
  for ``stale_days``. Cars without an engine cost nothing: no state is written for them.
"""

from __future__ import annotations

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
    engine_running,
    predict_failure,
    t_critical,
)
from diagnostics.signals import AMBIENT, CURRENT, KEY_STATE, SPEED, VOLTAGE
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS

STATE_VERSION = 2
TRACTION_SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"


class ChargingSystem(Detector):
    """Predicts the no-start a sagging alternator / regulator leads to, from drive to drive."""

    name: ClassVar[str] = "alternator"
    version: ClassVar[str] = "1.1.0"

    def __init__(
        self,
        settle_s: float = 120.0,
        gap_s: float = 1800.0,
        min_moving_s: float = 60.0,
        max_sample_s: float = 7200.0,
        hold_s: float = 60.0,
        bin_v: float = 0.01,
        level_quantile: float = 0.9,
        min_moving_kmh: float = 1.0,
        temp_coeff_v_per_c: float = 0.008,
        temp_comp_limit_v: float = 0.4,
        warmup_c: float = 3.0,
        failure_v: float = 12.45,
        low_v: float = 13.4,
        critical_v: float = 12.9,
        clear_margin_v: float = 0.1,
        level_samples: int = 3,
        min_samples: int = 4,
        min_span_days: float = 1.0,
        window_days: float = 10.0,
        max_history: int = 40,
        half_life_days: float = 3.0,
        min_slope_v_per_day: float = 0.03,
        min_drop_v: float = 0.15,
        z: float = 2.0,
        horizon_days: float = 21.0,
        critical_days: float = 3.0,
        warning_days: float = 10.0,
        stale_days: float = 7.0,
    ) -> None:
        self.settle_s = settle_s
        self.gap_s = gap_s
        self.min_moving_s = min_moving_s
        self.max_sample_s = max_sample_s
        self.hold_s = hold_s
        self.bin_v = bin_v
        self.level_quantile = level_quantile
        self.min_moving_kmh = min_moving_kmh
        self.temp_coeff_v_per_c = temp_coeff_v_per_c
        self.temp_comp_limit_v = temp_comp_limit_v
        self.warmup_c = warmup_c
        self.failure_v = failure_v
        self.low_v = low_v
        self.critical_v = critical_v
        self.clear_margin_v = clear_margin_v
        self.level_samples = level_samples
        self.min_samples = min_samples
        self.min_span_days = min_span_days
        self.window_days = window_days
        self.max_history = max_history
        self.half_life_days = half_life_days
        self.min_slope_v_per_day = min_slope_v_per_day
        self.min_drop_v = min_drop_v
        self.z = z
        self.horizon_days = horizon_days
        self.critical_days = critical_days
        self.warning_days = warning_days
        self.stale_days = stale_days
        if not failure_v < critical_v < low_v:
            raise ValueError("need failure_v < critical_v < low_v")
        check_trend_sizes(min_samples, max_history)
        if not 0 < min_moving_s < max_sample_s or hold_s <= 0 or bin_v <= 0:
            raise ValueError("need 0 < min_moving_s < max_sample_s, hold_s > 0 and bin_v > 0")
        if not 0 < level_quantile < 1:
            raise ValueError("need 0 < level_quantile < 1")
        if not 1 <= level_samples <= max_history:
            raise ValueError("need 1 <= level_samples <= max_history")

    def new_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "ts": None,  # event time of the last state change (older messages are ignored)
            "since": None,  # first time the engine was seen running (None: no engine yet)
            "start": None,  # engine start of the open drive
            "last": None,  # last engine-running reading of the open drive
            "bins": {},  # open drive: bin of volts at 25 °C -> seconds spent there
            "amps": [0.0, 0.0],  # open drive: current * seconds, seconds with a current
            "end": None,  # open drive: last counted reading
            "amb": None,  # last ambient reading while the engine ran, °C
            "hist": [],  # [ts, volts at 25 °C, current or null] per drive, oldest first
            "active": False,
            "stale": False,
            "dcdc": False,  # the car has a traction battery: its DC-DC charges the 12 V
        }

    # ---------------------------------------------------------------- streaming interface

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]) -> Outcome:
        if state.get("v") != STATE_VERSION:
            state.clear()
            state.update(self.new_state())
        if state["dcdc"] or (state["ts"] is not None and ts_ms < state["ts"]):
            return False, None
        if TRACTION_SOC in signals:
            # An electrified car: nothing this detector learned applies (nor could it alert).
            active = state["active"]
            state.clear()
            state.update(self.new_state())
            state["dcdc"], state["ts"] = True, ts_ms
            if active:
                return True, Assessment(active=False, title="Charging system: the 12 V is "
                                        "charged by the traction battery's DC-DC converter")
            return True, None
        changed, assessment = False, None
        if engine_running(signals):
            changed, assessment = self._running(state, ts_ms, signals)
        elif signals.get(KEY_STATE) in OFF_STATES and state["start"] is not None:
            changed, assessment = True, self._close(state)
        if assessment is None and state["since"] is not None:
            assessment = self._staleness(state, ts_ms)
            changed = changed or assessment is not None
        if changed:
            state["ts"] = ts_ms
        return changed, assessment

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        """Key-off closes the drive's sample."""
        if (event.get("type") != "ignition" or event.get("state") not in OFF_STATES
                or state.get("v") != STATE_VERSION or state["dcdc"] or state["start"] is None
                or (state["ts"] is not None and ts_ms < state["ts"])):
            return False, None
        assessment = self._close(state)
        state["ts"] = ts_ms
        return True, assessment

    # ---------------------------------------------------------------- samples

    def compensated(self, volts: float, ambient_c: float | None) -> float:
        """The bus voltage at 25 °C: the regulator's cold boost removed."""
        if ambient_c is None:
            return volts
        boost = self.temp_coeff_v_per_c * (25.0 - (ambient_c + self.warmup_c))
        return volts - max(-self.temp_comp_limit_v, min(self.temp_comp_limit_v, boost))

    def _running(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
                 ) -> Outcome:
        assessment = None
        if state["since"] is None:
            state["since"] = ts_ms
        last = state["last"]
        if last is not None and ts_ms - last > self.gap_s * 1000:
            assessment = self._close(state)  # a new drive: the last one ended unannounced
            last = None
        if state["start"] is None:
            state["start"] = ts_ms
        state["last"] = ts_ms
        ambient = as_number(signals.get(AMBIENT))
        if ambient is not None:
            state["amb"] = ambient
        volts = as_number(signals.get(VOLTAGE))
        speed = as_number(signals.get(SPEED))
        if (volts is not None and last is not None
                and ts_ms - state["start"] >= self.settle_s * 1000
                and (speed is None or speed >= self.min_moving_kmh)):
            # The reading stands for the time since the previous one: the sample weighs
            # minutes, not messages, whatever the car's reporting rate.
            held = min(self.hold_s, (ts_ms - last) / 1000)
            if held > 0:
                key = str(round(self.compensated(volts, state["amb"]) / self.bin_v))
                state["bins"][key] = round(state["bins"].get(key, 0.0) + held, 3)
                current = as_number(signals.get(CURRENT))
                if current is not None:
                    amps = state["amps"]
                    amps[0], amps[1] = round(amps[0] + current * held, 3), round(amps[1] + held, 3)
                state["end"] = ts_ms
        if (ts_ms - state["start"] >= (self.settle_s + self.max_sample_s) * 1000
                and state["bins"]):
            assessment = self._close(state) or assessment
            # The drive goes on, already settled.
            state["start"], state["last"] = ts_ms - round(self.settle_s * 1000), ts_ms
        return True, assessment

    def _close(self, state: dict[str, Any]) -> Assessment | None:
        bins: dict[str, float] = state["bins"]
        amps, end = state["amps"], state["end"]
        state["bins"], state["amps"], state["end"] = {}, [0.0, 0.0], None
        state["start"] = state["last"] = None
        if end is None or sum(bins.values()) < self.min_moving_s:
            return None
        levels = sorted((int(k), w) for k, w in bins.items())
        volts = np.asarray([k for k, _ in levels], dtype=np.float64) * self.bin_v
        cum = np.cumsum(np.asarray([w for _, w in levels], dtype=np.float64))
        level = float(volts[int(np.searchsorted(cum, self.level_quantile * cum[-1]))])
        current = round(amps[0] / amps[1], 2) if amps[1] > 0 else None
        push_sample(state, [int(end), round(level, 4), current], self.max_history)
        return self._assess(state, int(end))

    def _staleness(self, state: dict[str, Any], ts_ms: int) -> Assessment | None:
        hist = state["hist"]
        silent_days = first_silence(state, hist[-1][0] if hist else state["since"], ts_ms,
                                    self.stale_days)
        if silent_days is None:
            return None
        reason = (f"no drive with the engine running and the 12 V voltage reported for "
                  f"{silent_days:.1f} days (more than {self.stale_days:g}); the charging trend "
                  "is out of date")
        return data_missing(state, "Charging system: charging voltage data missing",
                            self._summary(state), reason, silent_days)

    # ---------------------------------------------------------------- decision

    def _summary(self, state: dict[str, Any]) -> dict[str, Any]:
        hist = state["hist"]
        return {
            "latest_charging_v25": hist[-1][1] if hist else None,
            "battery_current_a": hist[-1][2] if hist else None,
            "last_sample_ts": hist[-1][0] if hist else None,
            "samples": len(hist),
            "low_v": self.low_v,
            "failure_v": self.failure_v,
            "last_ambient_c": state["amb"],
        }

    def _assess(self, state: dict[str, Any], now: int) -> Assessment:
        hist = [h for h in state["hist"] if now - h[0] <= self.window_days * DAY_MS]
        volts = np.asarray([h[1] for h in hist], dtype=np.float64)
        t_days = np.asarray([(h[0] - now) / DAY_MS for h in hist], dtype=np.float64)
        span = float(t_days[-1] - t_days[0])
        level_now = float(np.median(volts[-self.level_samples:]))
        low = len(hist) >= self.level_samples and level_now < self.low_v
        evidence = self._summary(state)
        evidence.update({
            "samples": len(hist), "window_days": round(span, 2),
            "charging_v25": round(level_now, 3), "fitted_v25": None, "slope_v_per_day": None,
            "slope_stderr": None, "drop_v": None, "days_to_failure": None,
            "predicted_failure_ts": None, "predicted_failure_earliest_ts": None,
            "predicted_failure_latest_ts": None,
        })
        sagging, days_left, predicted = False, None, None
        if len(hist) >= self.min_samples and span >= self.min_span_days:
            slope, level, stderr, dof = weighted_trend(t_days, volts, self.half_life_days)
            crit = t_critical(dof, self.z)
            drop = float(np.percentile(volts, 90)) - level
            evidence.update({"fitted_v25": round(level, 3), "slope_v_per_day": round(slope, 4),
                             "slope_stderr": round(stderr, 4), "t_critical": round(crit, 2),
                             "drop_v": round(drop, 3)})
            if (slope < -self.min_slope_v_per_day and slope + crit * stderr < 0
                    and drop >= self.min_drop_v):
                forecast = predict_failure(now, max(0.0, level - self.failure_v), -slope,
                                           crit * stderr)
                days_left, predicted = forecast.days_left, forecast.ts
                sagging = days_left <= self.horizon_days
                evidence.update(forecast.evidence)
        elif not low:
            return Assessment(
                active=state["active"], title="Charging system: collecting drives",
                evidence=evidence,
                abstain_reason=f"{len(hist)} drives over {span:.1f} days; need "
                               f"{self.min_samples} over {self.min_span_days:g} days for a trend")
        if state["active"]:
            active = sagging or (len(hist) >= self.level_samples
                                 and level_now <= self.low_v + self.clear_margin_v)
        else:
            active = sagging or low
        state["active"] = bool(active)
        if not active:
            return Assessment(active=False, title="Charging system is charging normally",
                              evidence=evidence, predicted_failure_ts=predicted)
        if (days_left is not None and days_left < self.critical_days) or (
                level_now < self.critical_v):
            severity = "critical"
        elif (days_left is not None and days_left < self.warning_days) or low:
            severity = "warning"
        else:
            severity = "info"
        slope_v = evidence["slope_v_per_day"]
        title = (f"Charging system failing: {level_now:.2f} V while driving (at 25 °C)"
                 + (f", falling {-slope_v * 1000:.0f} mV/day" if sagging and slope_v else ""))
        return Assessment(active=True, severity=severity, title=title, evidence=evidence,
                          predicted_failure_ts=predicted,
                          recommended_action=self._action(level_now, days_left))

    def _action(self, level: float, days_left: float | None) -> str:
        if level < self.critical_v or (days_left is not None and days_left < self.critical_days):
            return ("Call the owner today: the alternator is no longer charging the 12 V "
                    "battery, so the car may not start after its next stop or may stall on "
                    "the road. Offer roadside assistance or a tow to a workshop for an "
                    "alternator/regulator repair; a new battery alone will not fix it.")
        when = (f"in about {max(1, round(days_left))} days" if days_left is not None
                else "soon")
        return ("Call the owner: the charging voltage while driving is sagging (alternator or "
                f"regulator wearing), and the car may no longer start {when}. Book a "
                "charging-system test (alternator output, regulator, belt) at the nearest "
                "service point; replacing only the battery would not fix it.")
