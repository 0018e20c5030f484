"""Synthetic 12 V battery telemetry for one car, for detector tests (independent of simulators/).

A car drives twice a day (08:00 and 17:30, 30 min) unless the day is a parked day; it reports
every 5 minutes while driving and every 30 minutes while parked. The 12 V physics: resting
voltage ``V25 + 0.0025 (T_batt - 25)``, battery temperature lagging ambient by 3 h, surface
charge 0.35 V decaying over 1 h after key-off, DC-DC 13.6-14.4 V while ON, noise 0.015 V.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
START_MS = 1_767_571_200_000  # 2026-01-05T00:00Z

Sample = tuple[int, dict[str, object]]


def daily_cycle(mean: Callable[[float], float]) -> Callable[[float], float]:
    """Ambient: ``mean(day)`` plus a ±5 °C daily cycle, coldest at 03:00."""
    return lambda day: mean(day) + 5.0 * math.cos(2 * math.pi * ((day % 1) * 24 - 15) / 24)


def cold_snap(day: float) -> float:
    """+10 °C, falling to -20 °C between days 5 and 10, holding until day 15, then recovering."""
    if day < 5:
        return 10.0
    if day < 10:
        return 10.0 - 6.0 * (day - 5)
    if day < 15:
        return -20.0
    return min(10.0, -20.0 + 6.0 * (day - 15))


def weakening(v25_initial: float, rate_v_per_day: float, onset_day: float = 1.0
              ) -> Callable[[float], float]:
    return lambda day: v25_initial - rate_v_per_day * max(0.0, day - onset_day)


def failure_day(v25_initial: float, rate_v_per_day: float, onset_day: float = 1.0) -> float:
    return onset_day + (v25_initial - 11.9) / rate_v_per_day


MILD = daily_cycle(lambda _d: 8.0)


def series(
    days: int,
    v25_at: Callable[[float], float],
    ambient_at: Callable[[float], float] = MILD,
    seed: int = 0,
    parked_days: set[int] | frozenset[int] = frozenset(),
    offline_days: set[int] | frozenset[int] = frozenset(),
) -> Iterator[Sample]:
    rng = np.random.default_rng(seed)
    battery_c = ambient_at(0.0)
    last_ts = START_MS
    rest_start = START_MS - 12 * HOUR_MS
    for day in range(days):
        base = START_MS + day * DAY_MS
        trips = [] if day in parked_days else [(8.0, 8.5), (17.5, 18.0)]
        # Timeline of (ts, is_on) reporting points for the day.
        points: list[tuple[int, bool]] = []
        t = 0.0
        for start, end in trips:
            while t < start:
                points.append((base + int(t * HOUR_MS), False))
                t += 0.5
            t = start
            while t < end:
                points.append((base + int(t * HOUR_MS), True))
                t += 5 / 60
            t = end
        while t < 24:
            points.append((base + int(t * HOUR_MS), False))
            t += 0.5
        was_on = False
        for ts, is_on in points:
            day_f = (ts - START_MS) / DAY_MS
            ambient = ambient_at(day_f)
            target = ambient + (3.0 if is_on else 0.0)
            battery_c += (target - battery_c) * (1 - math.exp(-(ts - last_ts) / (3 * HOUR_MS)))
            last_ts = ts
            if was_on and not is_on:
                rest_start = ts
            was_on = is_on
            if is_on:
                volts = rng.uniform(13.6, 14.4)
            else:
                rest = v25_at(day_f) + 0.0025 * (battery_c - 25.0)
                volts = rest + 0.35 * math.exp(-(ts - rest_start) / HOUR_MS)
            if day in offline_days:
                continue
            yield ts, {
                "Vehicle.LowVoltageSystemState": "ON" if is_on else "OFF",
                "Vehicle.LowVoltageBattery.CurrentVoltage":
                    round(float(volts + rng.normal(0, 0.015)), 3),
                "Vehicle.Exterior.AirTemperature": round(ambient + float(rng.normal(0, 0.2)), 2),
            }
