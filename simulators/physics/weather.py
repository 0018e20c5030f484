"""Ambient temperature for the fleet's region, a pure function of (seed, start, time).

Why it matters
--------------
Temperature moves nearly every signal the detectors read: the 12 V battery's resting voltage,
the tyre pressures (Gay-Lussac), the cell-voltage spread, the coolant and pack temperatures,
the energy a drive takes. A detector that mistakes a cold snap for a fault raises false
alarms across the fleet, so the weather has to be as rough as the real one.

Model
-----
* seasonal mean: about -0.5 °C mid-January, 19.5 °C mid-July (or a fixed ``mean_c``);
* plus a mean-reverting daily random walk (0.7 of yesterday's offset + N(0, 2 °C)) with
  occasional multi-day cold snaps (2 % of days start one: 3-6 days, 6-12 °C colder),
  interpolated linearly between days;
* plus a daily cycle: coldest at 05:00, warmest at 15:00, amplitude 5 °C;
* clamped to [-40, 45] °C.

Simulated time is the region's local time: the daily cycle reads the clock of ``ts`` directly.
The daily offsets come from the weather's own RNG, drawn day after day as they are first
needed, so the same seed gives the same weather whichever device asks first.
"""

from __future__ import annotations

import math
import random

from vocab.eventtime import DAY_MS, HOUR_MS

DAILY_AMPLITUDE_C = 5.0
COLDEST_HOUR, WARMEST_HOUR = 5.0, 15.0


class Weather:
    """Ambient temperature for the fleet's region, a pure function of (seed, start, time)."""

    def __init__(self, seed: int, start_ms: int, mean_c: float | None = None) -> None:
        self.seed = seed
        self.start_ms = start_ms
        self.mean_c = mean_c  # a fixed mean instead of the seasonal one
        self._offsets: list[float] = []
        self._rng = random.Random(f"weather-{seed}")
        self._snap_left = 0
        self._snap_depth = 0.0

    def _offset(self, day: int) -> float:
        while len(self._offsets) <= day + 1:
            prev = self._offsets[-1] if self._offsets else 0.0
            # A mean-reverting random walk of daily weather, plus rare cold snaps.
            value = 0.7 * prev + self._rng.gauss(0, 2.0)
            if self._snap_left == 0 and self._rng.random() < 0.02:
                self._snap_left = self._rng.randint(3, 6)
                self._snap_depth = self._rng.uniform(6.0, 12.0)
            if self._snap_left:
                self._snap_left -= 1
                value -= self._snap_depth
            self._offsets.append(value)
        return self._offsets[day]

    def seasonal(self, ts: int) -> float:
        if self.mean_c is not None:
            return self.mean_c
        day_of_year = (ts / DAY_MS) % 365.2425  # epoch day 0 is 1 January
        return 9.5 - 10.0 * math.cos(2 * math.pi * (day_of_year - 15) / 365.2425)

    @staticmethod
    def daily(ts: int) -> float:
        hour = (ts % DAY_MS) / HOUR_MS
        if COLDEST_HOUR <= hour < WARMEST_HOUR:
            shape = -math.cos(math.pi * (hour - COLDEST_HOUR) / (WARMEST_HOUR - COLDEST_HOUR))
        else:
            shape = math.cos(math.pi * ((hour - WARMEST_HOUR) % 24) /
                             (24 - WARMEST_HOUR + COLDEST_HOUR))
        return DAILY_AMPLITUDE_C * shape

    def ambient(self, ts: int) -> float:
        days = (ts - self.start_ms) / DAY_MS
        day = max(0, int(days))
        frac = min(1.0, max(0.0, days - day))
        weather = self._offset(day) * (1 - frac) + self._offset(day + 1) * frac
        return max(-40.0, min(45.0, self.seasonal(ts) + weather + self.daily(ts)))
