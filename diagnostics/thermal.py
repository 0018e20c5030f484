"""Drive-unit cooling: the motor coolant's rise under load, trended over days (e.g. a failing pump).

Why it matters
--------------
A wearing coolant pump (or a clogged radiator, a slipping pump drive) moves less coolant, so
the drive unit runs hotter for the same work. The car notices only when the coolant reaches
its derate limit: on a hot day on the motorway, or up a long climb, power is cut with the
owner far from home. The cooling degrades for days or weeks before that, visible as a
coolant temperature that rises more per kW of load than it used to.

Physical model (the constructor defaults; the fleet simulator follows the same model)
------------------------------------------------------------------------------------
* The coolant loop's reference is the traction pack's temperature, which the car reports: the
  thermal management holds the pack at ``ambient + ~12 °C`` when it is warm and heats it to
  about 22 °C on cold days. Ambient therefore decides the reference, and a cold snap or a hot
  day moves pack and coolant together. Comparing the coolant with the *pack* (not with ambient)
  removes ambient, pre-conditioning and the cold-weather heating, which fool a detector that
  looks at ``coolant - ambient``; ambient is still required for a reading (a car without it
  reports a broken thermal picture) and sets the reference condition of the prediction.
* Above the pack the coolant sits at ``offset_c`` plus a rise proportional to the drive
  unit's heat load: ``rise = b * load_kw``. ``b`` (°C per kW) is the loop's thermal
  resistance, learned per car (it differs by model, radiator and mass). The load is the
  traction power the detector computes from the reported speed: rolling resistance and air
  drag (``rolling_coeff``, ``cda_m2`` and the car's mass: its ``Vehicle.CurbWeight`` once it
  reports it, ``mass_kg`` until then; a lighter car read as a heavier one gets its load
  overestimated and its ``b`` underestimated, so its failing pump reaches ``b_limit`` late).
  A motorway drive has ten times the load of town driving: a higher coolant temperature
  there is expected, not a fault.
* Dynamics: the drive unit's thermal mass smooths the load (``load_tau_s``) and the coolant
  follows with its own lag (``coolant_tau_s``), both first-order from a cold loop (coolant at
  pack level) at the start of a drive. The detector runs the same two filters on its load
  estimate, so a cold-start warm-up is modelled rather than mistaken for a good pump; the
  first ``warmup_s`` of every drive are still left out (little load has built up, so they
  carry noise but no information about ``b``).
* What the model does not see: hills (no grade signal) add heat that speed does not explain,
  so a hilly day reads as a higher ``b``. Such a day is one outlier among the samples, not a
  trend; a failing pump raises ``b`` drive after drive.

Samples and trend
-----------------
Each steady driving reading (after ``warmup_s``; speed, coolant, pack and ambient present)
gives ``y = coolant - pack - offset_c * (1 - exp(-t/coolant_tau))`` and ``x`` = the doubly
lagged load. A drive with at least ``min_drive_readings`` readings and an rms load of at least
``min_load_kw`` gives one estimate ``b = Σxy / Σx²`` (least squares through the origin:
high-load readings weigh most, where the pump's state shows). Drives are grouped in windows
(``sample_s``, 12 h from the window's first drive: a commute, an outing); a window's sample is
its *lowest* drive, because hills only ever add heat the speed does not explain. The sample
of the open window is updated as its drives end, so a drive's evidence counts at once. The
last ``max_history`` samples within ``window_days`` are trended, each as the lower of itself and
the window before (at that one's time: two hilly days in a row are one high value, a failing
pump raises both), with ``diagnostics.trend.weighted_trend`` (weights halve every
``half_life_days``); samples more than
``outlier_mads`` robust standard deviations above the fit (twice that below) are dropped and
the trend refitted: slope in (°C/kW)/day, level, standard error, Student-t critical value.

* Failure: the drive unit derates at ``limit_c``. At the reference condition (``ref_ambient_c``
  on a hot day, pack at ``ref_ambient_c + pack_rise_c``, a sustained ``ref_load_kw``; the pack
  takes ``pack_load_share`` of the rise too) the coolant reaches
  ``ref_ambient + pack_rise + offset + (1 + share) * b * ref_load``; it reaches the limit when
  ``b`` reaches ``b_limit`` (1.57 °C/kW with the defaults; healthy cars sit at 0.4-0.8).
  Time to failure: ``(b_limit - level) / slope`` with a band from slope -/+ t*stderr.
* Degrading: the slope is significant (slope - t*stderr > 0), at least ``min_rate_per_day`` of
  ``b_limit`` per day, and the fitted growth over the window at least ``min_growth`` of
  ``b_limit`` (a real change, not a tilt of noise), and all of this still holds with any one
  of the older half's windows below the fit left out (``rise_rests_on_one_window`` in the
  evidence when not). Windows can read low too: a drive mostly downhill, or readings minutes
  apart (5-minute reporting) that all fall where the road descends, since the load between
  readings is not seen; one such window early in the series, paired with the next, tilts
  the trend like a rise. A failing pump raises ``b`` window after window, so its trend does
  not rest on any single one. Raise when degrading with the failure
  within ``horizon_days``, on ``persistence`` windows in a row that span at least
  ``persistence_h`` (24 h) from the first of them, or at once when ``b`` is already at the
  limit. Why the day: hilly trips come in runs (a weekend outing, a route driven there and
  back) and a weekend's windows often hold one drive each, so four hilly drives in a row can
  fill two or three windows within a day, and early in the history (few samples, the newest
  ones weigh most) that reads as a rise; a failing pump still reads high a day later, on
  the everyday roads. Severity: critical under ``critical_days`` (or at the limit), warning
  under ``warning_days``, info otherwise.
* Urgent: the persistence waits for windows, and a window is a drive: a car driven once a
  day, or parked for days, gives its windows days apart, so any wait for more of them can
  outlast a fast pump (15 %/day from a 0.8 °C/kW loop derates 6.4 days after the onset).
  When the failure *could* come within ``critical_days`` (the band's early end, slope +
  t*stderr: the fit's uncertainty counted against the owner), the alert is raised on the
  first window that says so, and from ``urgent_min_samples`` (7) windows on instead of
  ``min_samples`` (8): a once-a-day car is warned on the seventh day, before the fastest
  pump derates. Everything else still holds (a significant rise of at least ``min_growth``,
  not resting on one window, the neighbour rule, the outlier bar); only the waiting is cut.
  What the wait would have confirmed, a rise that goes on, must show in the windows seen:
  the newest half of them alone (at least the newest three) must grow at least half the
  trend's rate, and the newest window must stand above the one before it
  (``recent_growth_per_day`` in the evidence). A wearing pump raises ``b`` window after
  window; a run of hilly days (a week in the hills, early in a short history) is a step that
  then stays flat. With few windows this lowers the risk but cannot remove it: a four-day
  hilly run at the end of seven windows can still pass (a once-a-day car's hilly first week
  raised in 1 of 28 noise seeds with 12 traps in the unit tests; 6 windows: 4 of 28). Why
  the early end and not the central estimate: the next window may be days away, so the
  question is whether the derate could come before it; and a healthy car cannot get there by
  noise alone: its band's early end within 3 days of the limit needs a significant rise of
  more than 0.12 °C/kW a day from a healthy level (0.8 at most).
* Hysteresis: once raised, clear only after ``persistence`` windows in a row (over
  ``persistence_h`` too) in which the trend is confidently flat (slope + t*stderr below the
  minimum rate) and the level is below ``clear_fraction`` of ``b_limit``.
* Abstain when there are too few samples for a trend (``min_samples`` over ``min_span_days``,
  ``urgent_min_samples`` for an urgent raise: a car that is not driven long enough), and
  once per silence when no steady reading arrived for more than ``stale_days`` (car not
  driven, ambient or temperatures missing).

The filters make a driving car's state change with every message (a few numbers); parked
cars cost no state writes. An assessment is returned when a drive changes its window's sample
or staleness is first noticed.

Evidence: the latest ``b`` and its trend, the healthy-looking level, the coolant predicted at
the reference condition and at the latest ambient, the days to the derate limit with its band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from diagnostics.base import Assessment, Detector, Outcome, data_missing, first_silence
from diagnostics.helpers import as_number, check_trend_sizes, predict_failure, t_critical
from diagnostics.signals import AMBIENT, CHARGING, CURB_WEIGHT, PACK, SPEED
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS, HOUR_MS

STATE_VERSION = 1
MIN_CAR_KG, MAX_CAR_KG = 500.0, 5000.0
COOLANT = "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature"


class DriveUnitCooling(Detector):
    """Predicts the drive unit's thermal derate from the coolant's growing rise under load."""

    name: ClassVar[str] = "thermal"
    version: ClassVar[str] = "1.5.0"

    def __init__(
        self,
        offset_c: float = 3.0,
        mass_kg: float = 2000.0,
        rolling_coeff: float = 0.011,
        cda_m2: float = 0.62,
        load_tau_s: float = 240.0,
        coolant_tau_s: float = 300.0,
        warmup_s: float = 300.0,
        max_gap_s: float = 600.0,
        min_speed_kmh: float = 5.0,
        sample_s: float = 12 * 3600,
        min_drive_readings: int = 4,
        min_load_kw: float = 1.5,
        min_samples: int = 8,
        urgent_min_samples: int = 7,
        urgent_recent_share: float = 0.5,
        min_span_days: float = 3.0,
        window_days: float = 21.0,
        max_history: int = 40,
        half_life_days: float = 7.0,
        z: float = 2.0,
        outlier_mads: float = 2.5,
        min_rate_per_day: float = 0.01,
        min_growth: float = 0.15,
        persistence: int = 2,
        persistence_h: float = 24.0,
        limit_c: float = 90.0,
        ref_ambient_c: float = 30.0,
        pack_rise_c: float = 12.0,
        pack_load_share: float = 0.15,
        ref_load_kw: float = 25.0,
        clear_fraction: float = 0.8,
        horizon_days: float = 21.0,
        critical_days: float = 3.0,
        warning_days: float = 10.0,
        stale_days: float = 7.0,
    ) -> None:
        self.offset_c = offset_c
        self.mass_kg = mass_kg
        self.rolling_coeff = rolling_coeff
        self.cda_m2 = cda_m2
        self.load_tau_s = load_tau_s
        self.coolant_tau_s = coolant_tau_s
        self.warmup_s = warmup_s
        self.max_gap_s = max_gap_s
        self.min_speed_kmh = min_speed_kmh
        self.sample_s = sample_s
        self.min_drive_readings = min_drive_readings
        self.min_load_kw = min_load_kw
        self.min_samples = min_samples
        self.urgent_min_samples = urgent_min_samples
        self.urgent_recent_share = urgent_recent_share
        self.min_span_days = min_span_days
        self.window_days = window_days
        self.max_history = max_history
        self.half_life_days = half_life_days
        self.z = z
        self.outlier_mads = outlier_mads
        self.min_rate_per_day = min_rate_per_day
        self.min_growth = min_growth
        self.persistence = persistence
        self.persistence_h = persistence_h
        self.limit_c = limit_c
        self.ref_ambient_c = ref_ambient_c
        self.pack_rise_c = pack_rise_c
        self.pack_load_share = pack_load_share
        self.ref_load_kw = ref_load_kw
        self.clear_fraction = clear_fraction
        self.horizon_days = horizon_days
        self.critical_days = critical_days
        self.warning_days = warning_days
        self.stale_days = stale_days
        check_trend_sizes(min_samples, max_history)
        if not 3 <= urgent_min_samples <= min_samples:
            raise ValueError("urgent_min_samples must be between 3 and min_samples")
        if not 0 <= urgent_recent_share <= 1:
            raise ValueError("urgent_recent_share must be between 0 and 1")
        if load_tau_s <= 0 or coolant_tau_s <= 0:
            raise ValueError("load_tau_s and coolant_tau_s must be > 0")
        if self.b_limit <= 0:
            raise ValueError("limit_c must be above the reference pack temperature + offset_c")
        if persistence < 1:
            raise ValueError("persistence must be >= 1")
        if persistence_h < 0:
            raise ValueError("persistence_h must be >= 0")

    @property
    def ref_base_c(self) -> float:
        """Coolant at the reference condition without any load-driven rise."""
        return self.ref_ambient_c + self.pack_rise_c + self.offset_c

    @property
    def b_limit(self) -> float:
        """The thermal resistance (°C/kW) at which the reference load reaches ``limit_c``."""
        return (self.limit_c - self.ref_base_c) / ((1 + self.pack_load_share) * self.ref_load_kw)

    def road_load_kw(self, speed_kmh: float, mass_kg: float | None = None) -> float:
        v = speed_kmh / 3.6
        mass = self.mass_kg if mass_kg is None else mass_kg
        force = mass * 9.81 * self.rolling_coeff + 0.5 * 1.2 * self.cda_m2 * v * v
        return force * v / 1000.0

    def new_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "since": None,  # first message seen (staleness before the first sample)
            "mass": None,  # the car's reported curb weight (kg), None: ``mass_kg``
            "drive": None,  # see _new_drive
            "win": None,  # start of the sampling window the last sample belongs to
            "hist": [],  # [ts, b, rms_load_kw, ambient] samples, oldest first; the last one
            # is the open window's lowest drive so far
            "last_reading": None,  # ts of the last steady reading
            "streak": [0, None, None],  # consecutive windows that would flip the state, the
            # last one counted, the time of the streak's first assessment
            "active": False,
            "stale": False,
        }

    # ---------------------------------------------------------------- streaming interface

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        if event.get("type") != "ignition" or state.get("v") != STATE_VERSION:
            return False, None
        if state["drive"] is None and event.get("state") != "ON":
            return False, None
        last = state["drive"][1] if state["drive"] is not None else state["last_reading"]
        if last is not None and ts_ms < last:
            return False, None  # older than the last reading: a replay
        # Ignition ON starts a drive with a cold loop; OFF (or a second ON) ends the last one.
        assessment = self._end_drive(state) if state["drive"] is not None else None
        if event.get("state") == "ON":
            state["drive"] = self._new_drive(ts_ms)
        return True, assessment

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
        mass = as_number(signals.get(CURB_WEIGHT))
        # A curb weight outside what a car weighs is a unit or encoding error, not a car.
        if mass is not None and MIN_CAR_KG <= mass <= MAX_CAR_KG and mass != state.get("mass"):
            state["mass"] = mass
            changed = True
        speed = as_number(signals.get(SPEED))
        if speed is None or speed < 0 or signals.get(CHARGING) is True:
            stale = self._staleness(state, ts_ms)
            return changed or stale is not None, stale
        drive = state["drive"]
        last = drive[1] if drive is not None else state["last_reading"]
        if last is not None and ts_ms <= last:
            return changed, None  # not newer than the last reading: a replay
        assessment = None
        if drive is None or ts_ms - drive[1] > self.max_gap_s * 1000:
            if drive is not None:  # the car stopped without telling us: that drive is over
                assessment = self._end_drive(state)
                changed = True
            if speed < self.min_speed_kmh:
                stale = self._staleness(state, ts_ms)
                return changed or stale is not None, assessment or stale
            drive = state["drive"] = self._new_drive(ts_ms)  # a drive without its event
        self._advance(drive, ts_ms, speed, state.get("mass"))
        self._reading(state, ts_ms, signals, drive)
        return True, assessment

    # ---------------------------------------------------------------- readings and samples

    @staticmethod
    def _new_drive(ts_ms: int) -> list[Any]:
        # [start_ts, last_ts, load_lag_kw, x (doubly lagged load), n, Σxy, Σx², Σambient]
        return [ts_ms, ts_ms, 0.0, 0.0, 0, 0.0, 0.0, 0.0]

    def _advance(self, drive: list[Any], ts_ms: int, speed: float,
                 mass_kg: float | None) -> None:
        """Run the load through the drive unit's and the coolant's lags up to ``ts_ms``."""
        dt = (ts_ms - drive[1]) / 1000.0
        load = self.road_load_kw(speed, mass_kg)
        drive[2] += (load - drive[2]) * (1 - math.exp(-dt / self.load_tau_s))
        drive[3] += (drive[2] - drive[3]) * (1 - math.exp(-dt / self.coolant_tau_s))
        drive[1] = ts_ms
        drive[2], drive[3] = round(drive[2], 4), round(drive[3], 4)

    def _reading(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object],
                 drive: list[Any]) -> None:
        elapsed_s = (ts_ms - drive[0]) / 1000.0
        coolant = as_number(signals.get(COOLANT))
        pack = as_number(signals.get(PACK))
        ambient = as_number(signals.get(AMBIENT))
        if elapsed_s < self.warmup_s or coolant is None or pack is None or ambient is None:
            return
        settled_offset = self.offset_c * (1 - math.exp(-elapsed_s / self.coolant_tau_s))
        y = coolant - pack - settled_offset
        x = float(drive[3])
        drive[4] += 1
        drive[5] = round(drive[5] + x * y, 4)
        drive[6] = round(drive[6] + x * x, 4)
        drive[7] = round(drive[7] + ambient, 2)
        state["last_reading"] = ts_ms
        state["stale"] = False

    def _end_drive(self, state: dict[str, Any]) -> Assessment | None:
        """Fold the finished drive's estimate into the current window's sample and assess."""
        drive = state["drive"]
        state["drive"] = None
        n = drive[4]
        if n < self.min_drive_readings or drive[6] / n < self.min_load_kw ** 2:
            return None  # short or gentle driving: the rise is too small to weigh the pump
        b, ts = drive[5] / drive[6], int(drive[1])
        sample = [ts, round(b, 4), round(math.sqrt(drive[6] / n), 2), round(drive[7] / n, 1)]
        hist: list[list[float]] = state["hist"]
        if state["win"] is None or ts - state["win"] >= self.sample_s * 1000 or not hist:
            state["win"] = ts  # a new sampling window opens with this drive
            hist.append(sample)
            del hist[: max(0, len(hist) - self.max_history)]
        elif b < hist[-1][1]:
            # Hills add heat the speed does not explain, never less: the window's drive with
            # the lowest rise per kW is the one closest to the flat road the model assumes.
            hist[-1] = sample
        else:
            return None  # the window's sample stands
        return self._assess(state, ts)

    # ---------------------------------------------------------------- staleness

    def _staleness(self, state: dict[str, Any], ts_ms: int) -> Assessment | None:
        last = state["last_reading"] if state["last_reading"] is not None else state["since"]
        silent_days = first_silence(state, last, ts_ms, self.stale_days)
        if silent_days is None:
            return None
        reason = (f"no steady driving reading with speed, motor coolant, pack and ambient "
                  f"temperature for {silent_days:.1f} days (more than {self.stale_days:g}); "
                  "the car was not driven or its temperature signals are missing")
        return data_missing(state, "Drive-unit cooling: data missing", self._summary(state),
                            reason, silent_days, key="days_since_reading")

    # ---------------------------------------------------------------- trend and decision

    def _summary(self, state: dict[str, Any]) -> dict[str, Any]:
        hist = state["hist"]
        return {
            "samples": len(hist),
            "last_sample_ts": hist[-1][0] if hist else None,
            "latest_c_per_kw": hist[-1][1] if hist else None,
            "latest_rms_load_kw": hist[-1][2] if hist else None,
            "latest_ambient_c": hist[-1][3] if hist else None,
        }

    def _assess(self, state: dict[str, Any], now: int) -> Assessment:
        hist = [h for h in state["hist"] if now - h[0] <= self.window_days * DAY_MS]
        t_days = np.asarray([(h[0] - now) / DAY_MS for h in hist], dtype=np.float64)
        span = float(t_days[-1] - t_days[0]) if len(hist) else 0.0
        b_limit = self.b_limit
        evidence = self._summary(state)
        evidence.update({
            "samples": len(hist), "window_days": round(span, 2),
            "limit_c": self.limit_c, "limit_c_per_kw": round(b_limit, 4),
            "c_per_kw": None, "c_per_kw_growth_per_day": None, "growth_stderr": None,
            "reference_coolant_c": None, "coolant_at_ref_load_now_c": None,
            "predicted_failure_ts": None, "predicted_failure_earliest_ts": None,
            "predicted_failure_latest_ts": None, "days_to_failure": None,
        })
        collecting = Assessment(
            active=state["active"], title="Drive-unit cooling: collecting samples",
            evidence=evidence,
            abstain_reason=f"{len(hist)} samples of steady driving over {span:.1f} days; "
                           f"need {self.min_samples} over {self.min_span_days:g} days "
                           "for a trend (the car is not driven long enough)")
        if len(hist) < self.urgent_min_samples or span < self.min_span_days:
            state["streak"] = [0, None, None]
            return collecting
        raw = np.asarray([h[1] for h in hist], dtype=np.float64)
        slope, level, stderr, dof, dropped = self._fit(t_days, raw)
        crit = t_critical(dof, self.z)
        ref_gain = (1 + self.pack_load_share) * self.ref_load_kw
        latest_ambient = float(hist[-1][3])
        evidence.update({
            "c_per_kw": round(level, 4), "c_per_kw_growth_per_day": round(slope, 5),
            "growth_stderr": round(stderr, 5), "t_critical": round(crit, 2),
            "outliers_dropped": dropped, "rise_rests_on_one_window": False,
            "reference_coolant_c": round(self.ref_base_c + level * ref_gain, 1),
            "coolant_at_ref_load_now_c": round(
                latest_ambient + self.pack_rise_c + self.offset_c + level * ref_gain, 1),
        })
        # Rates are measured against the distance to the limit (b_limit), not the car's own
        # level: a pump that has already doubled the rise is not "slowing down".
        degrading = self._degrading(slope, stderr, crit, span)
        if degrading and not self._robust_to_each_low_window(t_days, raw, level, slope):
            # One window carries the whole rise (a downhill drive, readings too sparse to
            # see the load between them): not the drive-after-drive rise of a failing pump.
            degrading = False
            evidence["rise_rests_on_one_window"] = True
        at_limit = level >= b_limit
        days_left = soonest = math.inf  # the central estimate; the band's early end
        predicted: int | None = None
        if at_limit:
            days_left = soonest = 0.0
            predicted = now
            evidence.update({"days_to_failure": days_left, "predicted_failure_ts": predicted})
        elif degrading:
            margin = b_limit - level
            forecast = predict_failure(now, margin, slope, crit * stderr)
            days_left, predicted = forecast.days_left, forecast.ts
            soonest = margin / (slope + crit * stderr)
            evidence.update(forecast.evidence)
        if state["active"]:
            # Clear only on a trend that is confidently flat (below the minimum rate even at
            # its upper bound): one cool day in a failing pump's series must not resolve it.
            flat = slope + crit * stderr < self.min_rate_per_day * b_limit
            flip = flat and level < self.clear_fraction * b_limit
        else:
            flip = at_limit or (degrading and days_left <= self.horizon_days)
        # Urgent: the failure could come (the band's early end) within ``critical_days``. The
        # next window is the car's next drive, which can come after the derate: neither more
        # samples nor a second window are waited for (module docstring). At the limit too.
        urgent = flip and not state["active"] and soonest < self.critical_days
        if urgent and not at_limit:
            recent = self._recent_growth(t_days, raw)
            evidence["recent_growth_per_day"] = round(recent, 5)
            urgent = recent >= max(self.urgent_recent_share * slope,
                                   self.min_rate_per_day * b_limit)
        if len(hist) < self.min_samples and not urgent:
            state["streak"] = [0, None, None]
            return collecting
        # Persistence both ways: the state flips after ``persistence`` windows in a row that
        # say so (at once when urgent), so one odd day neither raises nor clears an alert.
        # The windows must also span ``persistence_h`` (a day): hilly trips come in runs (a
        # weekend outing, a route driven there and back), and a weekend's windows hold one
        # drive each, so a run of hilly drives can fill two windows within a day. A failing
        # pump still reads high a day later, on the everyday roads.
        count, counted_window, since = (list(state["streak"]) + [None])[:3]
        if not flip:
            count, since = 0, None
        elif counted_window != state["win"]:
            count += 1
            since = now if since is None else since
        state["streak"] = [count, state["win"] if flip else None, since]
        held = since is not None and now - since >= self.persistence_h * HOUR_MS
        if (count >= self.persistence and held) or urgent:
            state["active"] = not state["active"]
            state["streak"] = [0, None, None]
        active = state["active"]
        if not active:
            return Assessment(active=False, title="Drive-unit cooling is normal",
                              evidence=evidence, predicted_failure_ts=predicted)
        if days_left < self.critical_days:
            severity = "critical"
        elif days_left < self.warning_days:
            severity = "warning"
        else:
            severity = "info"
        title = (f"Drive-unit cooling weakening: coolant rises {level:.2f} °C/kW, "
                 f"+{slope:.3f} °C/kW a day" if not at_limit
                 else f"Drive-unit coolant would reach its {self.limit_c:.0f} °C derate limit "
                      "under sustained load")
        return Assessment(active=True, severity=severity, title=title, evidence=evidence,
                          predicted_failure_ts=predicted,
                          recommended_action=self._action(days_left))

    def _fit(self, t_days: npt.NDArray[np.float64], raw: npt.NDArray[np.float64]
             ) -> tuple[float, float, float, float, int]:
        """The trend of the window samples, each window against the one before: a hilly day
        (or two drives on hilly roads) is one high value, the lower neighbour stands for it; a
        failing pump raises both. The lower of the two keeps its own time, so a steady rise is
        not delayed a window."""
        t_fit, y = self._neighbour_lower(t_days, raw)
        return self._trend(t_fit, y)

    @staticmethod
    def _neighbour_lower(t_days: npt.NDArray[np.float64], raw: npt.NDArray[np.float64]
                         ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each window as the lower of itself and the window before, at that one's time."""
        prev, t_prev = (np.concatenate((a[:1], a[:-1])) for a in (raw, t_days))
        lower = raw <= prev
        return np.where(lower, t_days, t_prev), np.where(lower, raw, prev)

    def _recent_growth(self, t_days: npt.NDArray[np.float64], raw: npt.NDArray[np.float64]
                       ) -> float:
        """The growth per day of the newest half of the windows alone (neighbour rule kept).

        An urgent raise waits for no further window, so the continuing rise it would have
        confirmed must already show in the windows seen: a wearing pump raises ``b`` window
        after window, the newest ones too; a run of hilly days (a week away in the hills,
        four days in a row) is a step that then stays flat."""
        t_fit, y = self._neighbour_lower(t_days, raw)
        recent = t_fit >= (float(t_days[0]) + float(t_days[-1])) / 2
        # At least the newest three: a car parked for days before its last drives leaves
        # the newest half of the span one or two windows, and each stands at its lower
        # neighbour's time, so that half can hold a single point, which has no slope at all
        # (and a pump days from its derate would read "growth 0").
        recent[-3:] = True
        slope, _level, _stderr, _dof = weighted_trend(t_fit[recent], y[recent],
                                                      self.half_life_days)
        # The rise must reach the newest window: a step (a run of hilly days) is flat after
        # it, a wearing pump still rose between the last two windows.
        return slope if y[-1] > y[-2] else min(slope, 0.0)

    def _degrading(self, slope: float, stderr: float, crit: float, span: float) -> bool:
        b_limit = self.b_limit
        return (slope > 0 and slope - crit * stderr > 0
                and slope >= self.min_rate_per_day * b_limit
                and slope * span >= self.min_growth * b_limit)

    def _robust_to_each_low_window(self, t_days: npt.NDArray[np.float64],
                                   raw: npt.NDArray[np.float64], level: float, slope: float
                                   ) -> bool:
        """Whether the trend still degrades with any one early low window left out.

        The neighbour rule and the outlier bar catch high windows (hills add heat), but a
        window can also read low: a drive mostly downhill, or readings minutes apart that
        all fall where the road descends (the load between two readings is not seen), so the
        speed overstates the heat. Paired with the window after it, one such low window in
        the older half of the series tilts the trend like a rise. A failing pump raises the
        rise window after window: its trend stands without any single one of them. Only the
        older half's windows below the fit are left out in turn (the ones that can fake a
        rise), so the newest windows of a pump that just started failing still count."""
        middle = (float(t_days[0]) + float(t_days[-1])) / 2
        low_early = np.flatnonzero((raw < level + slope * t_days) & (t_days < middle))
        for skip in low_early:
            keep = np.arange(len(raw)) != skip
            t_k, raw_k = t_days[keep], raw[keep]
            slope, _level, stderr, dof, _dropped = self._fit(t_k, raw_k)
            span = float(t_k[-1] - t_k[0])
            if not self._degrading(slope, stderr, t_critical(dof, self.z), span):
                return False
        return True

    def _trend(self, t_days: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
               ) -> tuple[float, float, float, float, int]:
        """The weighted trend without the hilly outliers: samples far above the first fit (by
        ``outlier_mads`` robust standard deviations; below it, twice that) are dropped and the
        trend refitted. Hills make high outliers; low ones are rarer (a mostly downhill
        window), so the bar below is higher."""
        slope, level, stderr, dof = weighted_trend(t_days, y, self.half_life_days)
        residuals = y - (level + slope * t_days)
        scale = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
        keep = residuals <= self.outlier_mads * max(scale, 1e-6)
        keep &= residuals >= -2 * self.outlier_mads * max(scale, 1e-6)
        dropped = int(np.sum(~keep))
        if dropped and int(np.sum(keep)) >= self.min_samples:
            slope, level, stderr, dof = weighted_trend(t_days[keep], y[keep],
                                                       self.half_life_days)
            return slope, level, stderr, dof, dropped
        return slope, level, stderr, dof, 0

    def _action(self, days_left: float) -> str:
        if days_left < 1:
            return ("Call the owner today: the car's drive-unit cooling (likely the coolant "
                    "pump) has weakened so far that on a warm day or at motorway speed the car "
                    "will cut power to protect itself. Ask them to avoid motorways, long "
                    "climbs and towing, and book an urgent cooling-system check; offer "
                    "roadside assistance if the car shows a temperature warning.")
        if math.isfinite(days_left):
            return ("Call the owner: the drive unit's coolant runs hotter under load every "
                    "day (likely a wearing coolant pump). In about "
                    f"{max(1, round(days_left))} days a motorway drive on a warm day would make "
                    "the car reduce power. Book a cooling-system check (pump, coolant level, "
                    "radiator) at the nearest service point; until then, gentle driving is fine.")
        return ("Contact the owner: the drive unit's coolant runs hotter under load than it "
                "should, though not getting worse now. Suggest a cooling-system check "
                "(coolant level, pump, radiator) at the next service visit.")
