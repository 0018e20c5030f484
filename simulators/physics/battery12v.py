"""The 12 V battery (lead-acid / AGM): the ground truth the 12 V detector is scored against.

Why it matters
--------------
An EV's 12 V battery wakes the car: it powers the controllers that close the traction
battery's contactors. When it is too weak the car cannot start at all, however full the
traction battery, and the owner needs a tow. Its decline shows days ahead in the resting
voltage, if the detector can tell it from temperature, surface charge and parasitic drain.

Model (``diagnostics/battery12v.py`` is written against the same physics)
--------------------------------------------------------------------------
* healthy resting open-circuit voltage at 25 °C, ``V25``, drawn in ``V25_RANGE``
  (12.55-12.80 V);
* measured resting voltage ``V25 + 0.0025 * (T_battery - 25)``; the battery temperature follows
  ambient with a 3 h first-order lag (ambient + 3 °C while driving);
* while ON the DC-DC converter charges: 13.6-14.4 V; after key-off the surface charge decays:
  ``V_rest + 0.35 * exp(-t / 1 h)``; charging the traction battery does not touch the 12 V;
* parked, a parasitic drain lowers V25 by 0.005 V/day, restored by the next drive; when the
  resting voltage falls below 12.35 V the parked car wakes its DC-DC for a 30 min top-up
  (14.0 V, +5 A, still OFF), at most once a day, which also restores the drain; the surface
  charge decay restarts at the end of the top-up;
* Gaussian measurement noise, sigma 0.015 V, on every 12 V reading;
* fault ``weak_12v``: from an onset in the first two days V25 declines linearly at 0.02-0.08
  V/day (not restored by drives or top-ups); at ``FAILURE_V25`` (the truth's ``failure_ts``)
  the car can no longer wake: it never drives, charges or tops up again, reports one failed
  ``crank`` event at its next planned departure and keeps reporting from where it is parked,
  its voltage still falling (V25 floored at 10.5 V, a flat battery);
* a combustion car has no DC-DC: its alternator charges the battery while the engine runs
  (``simulators.physics.engine``), it never tops up while parked, and a drive leaves it at
  most at the alternator's set point minus the charging headroom (``cap_v25``);
* a bad OTA release (``Fleet.bad_release_since``, set when a car installs a release the
  simulator marks bad): from the install on, a module stays awake while parked, so the
  parked drain is ``BAD_RELEASE_DRAIN_V_PER_DAY`` faster and the parked current
  ``BAD_RELEASE_PARKED_CURRENT_A`` (drives and top-ups still restore the charge).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulators.faults import weak_12v_failure_ts
from simulators.stream import NEVER
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS

V25_RANGE = (12.55, 12.80)
TEMP_COEFF_V_PER_C = 0.0025
SURFACE_CHARGE_V = 0.35
SURFACE_TAU_MS = HOUR_MS
DCDC_V_RANGE = (13.6, 14.4)
# While driving the DC-DC first refills what the car drew while parked, then carries the load.
DCDC_BASE_A = 1.5
DCDC_REFILL_A = 8.0
DCDC_REFILL_TAU_MS = 20 * MINUTE_MS
DCDC_CURRENT_NOISE_A = 0.3
TOPUP_BELOW_V = 12.35
TOPUP_MS = 30 * MINUTE_MS
TOPUP_V = 14.0
TOPUP_A = 5.0
TOPUP_MIN_GAP_MS = DAY_MS
DRAIN_V_PER_DAY = 0.005
NOISE_V = 0.015
BATTERY_LAG_MS = 3 * HOUR_MS
DRIVING_WARMUP_C = 3.0
PARKED_CURRENT_A = -0.05
PARKED_CURRENT_NOISE_A = 0.005
CRANK_DIP_V = 0.4  # a failed start pulls the battery this far below its resting voltage
DEAD_V25_FLOOR = 10.5
# A bad OTA release keeps a control unit awake while parked: ~1.2 A instead of the 0.05 A of
# a sleeping car, about 0.8 V/day off a 60 Ah battery's resting voltage (until the daily
# top-up). Two days of soak then show in the fleet's 12 V resting voltage (about -0.15 V on
# average, with drives recharging daily; the regression stop wants >= 0.10 V).
BAD_RELEASE_DRAIN_V_PER_DAY = 0.8
BAD_RELEASE_PARKED_CURRENT_A = -1.2


@dataclass
class Battery12V:
    v25_initial: float
    fault_onset: int | None = None
    fault_rate_v_per_day: float = 0.0
    drain_v: float = 0.0
    drain_ts: int = 0  # parasitic drain accounted up to here
    temp_c: float | None = None
    temp_ts: int = 0
    rest_start: int = 0  # key-off or end of the last top-up: the surface charge clock
    topup_until: int = -1
    last_topup: int = -NEVER
    extra_drain_since: int | None = None  # a bad OTA release installed at (event time)
    extra_drain_v_per_day: float = BAD_RELEASE_DRAIN_V_PER_DAY
    # A combustion car's battery: no DC-DC to top it up while parked, and its last drive
    # charged it only as far as the alternator could (``physics.engine.rest_cap_v25``).
    tops_up: bool = True
    cap_v25: float | None = None

    def v25(self, ts: int) -> float:
        decline = 0.0
        if self.fault_onset is not None and ts > self.fault_onset:
            decline = self.fault_rate_v_per_day * (ts - self.fault_onset) / DAY_MS
        v25 = self.v25_initial - self.drain_v - decline
        if self.cap_v25 is not None:
            v25 = min(v25, self.cap_v25)
        return max(DEAD_V25_FLOOR, v25)

    def failure_ts(self) -> int | None:
        if self.fault_onset is None:
            return None
        return weak_12v_failure_ts(self.fault_onset, self.v25_initial, self.fault_rate_v_per_day)

    def follow_temperature(self, ts: int, target_c: float) -> None:
        if self.temp_c is None:
            self.temp_c, self.temp_ts = target_c, ts
            return
        dt = max(0, ts - self.temp_ts)
        self.temp_c += (target_c - self.temp_c) * (1 - math.exp(-dt / BATTERY_LAG_MS))
        self.temp_ts = ts

    def resting_v(self, ts: int) -> float:
        temp = 25.0 if self.temp_c is None else self.temp_c
        return self.v25(ts) + TEMP_COEFF_V_PER_C * (temp - 25.0)

    def accrue_drain(self, ts: int) -> None:
        if ts > self.drain_ts:
            self.drain_v += DRAIN_V_PER_DAY * (ts - self.drain_ts) / DAY_MS
            if self.extra_drain_since is not None:
                since = max(self.drain_ts, self.extra_drain_since)
                if ts > since:
                    self.drain_v += self.extra_drain_v_per_day * (ts - since) / DAY_MS
            self.drain_ts = ts

    def parked_current_a(self, ts: int) -> float:
        if self.extra_drain_since is not None and ts >= self.extra_drain_since:
            return BAD_RELEASE_PARKED_CURRENT_A
        return PARKED_CURRENT_A

    def recharged(self, ts: int) -> None:
        """The DC-DC refilled the battery (a drive or a top-up): the drain is gone."""
        self.drain_v = 0.0
        self.drain_ts = ts

    def key_off(self, ts: int) -> None:
        """The drive ends: the DC-DC has refilled the battery, the surface charge decays."""
        self.recharged(ts)
        self.rest_start = ts

    def parked(self, ts: int, ambient_c: float, bad_release_since: int | None,
               current_noise_a: float, can_wake: bool) -> tuple[float, float]:
        """The parked car's 12 V at ``ts``: (nominal voltage before noise, current in A).

        Accounts the temperature and the drain up to ``ts`` and starts a top-up when the
        resting voltage is too low (unless the car ``can_wake`` no more)."""
        self.follow_temperature(ts, ambient_c)
        self.extra_drain_since = bad_release_since
        self.accrue_drain(ts)
        current = round(self.parked_current_a(ts) + current_noise_a, 3)
        if self.topup_until > ts:
            return TOPUP_V, TOPUP_A
        if (self.tops_up and self.resting_v(ts) < TOPUP_BELOW_V
                and ts - self.last_topup >= TOPUP_MIN_GAP_MS and can_wake):
            self.topup_until, self.last_topup = ts + TOPUP_MS, ts
            self.recharged(ts)
            self.rest_start = ts + TOPUP_MS
            return TOPUP_V, TOPUP_A
        since = max(0, ts - self.rest_start)
        return self.resting_v(ts) + SURFACE_CHARGE_V * math.exp(-since / SURFACE_TAU_MS), current


def draw_dcdc_v(rng: random.Random) -> float:
    """The DC-DC's set point for one drive, inside its range."""
    return rng.uniform(DCDC_V_RANGE[0] + 0.1, DCDC_V_RANGE[1] - 0.1)


def driving_current_a(elapsed_ms: int, rng: random.Random) -> float:
    """The 12 V current while driving, ``elapsed_ms`` into the drive (one draw of noise)."""
    return round(DCDC_BASE_A + DCDC_REFILL_A * math.exp(-elapsed_ms / DCDC_REFILL_TAU_MS)
                 + rng.gauss(0, DCDC_CURRENT_NOISE_A), 2)


def measured_v(nominal: float, rng: random.Random) -> float:
    """A 12 V reading: ``nominal`` with measurement noise, in the sensor's range."""
    return round(min(19.9, max(0.1, nominal + rng.gauss(0, NOISE_V))), 3)
