"""Synthetic 12 V battery telemetry of one car, for detector tests (independent of simulators/).

The physics is the one ``diagnostics/battery12v.py`` documents, written out again here so the
tests do not grade the detector with its own code:

* resting voltage ``V25(day) - drain + 0.0025 * (T_battery - 25)``; the battery temperature
  follows ambient (+3 °C while driving) with a 3 h first-order lag;
* while ON the DC-DC charges at 13.6-14.4 V (+2..12 A); after key-off the surface charge
  ``0.35 * exp(-t / 1 h)`` decays;
* parked, a parasitic drain lowers V25 by 0.005 V/day, restored by the next drive; the parked
  car wakes its DC-DC for a 30 min top-up (14.0 V, +5 A, still OFF) when the resting voltage
  falls below 12.35 V (at most once a day) and now and then at random;
* voltage noise sigma 0.015 V; ambient sensor noise sigma 0.2 °C, ambient missing from 1 % of
  the messages;
* the car drives once or twice on most days (random departure times and durations), stays
  home on about one day in ten and on any ``parked_days``; once V25 is below 11.9 V it cannot
  start any more and stays parked (the failure the detector must anticipate).

It reports every ``drive_interval_s`` (60 s) while ON, every ``parked_interval_s`` (30 min)
while parked and every 10 min during a top-up. Everything comes from one seeded numpy
generator, so a seed always gives the same series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
START_MS = 1_767_571_200_000  # 2026-01-05T00:00Z
FAILURE_V25 = 11.9
TEMP_COEFF = 0.0025
LAG_MS = 3 * HOUR_MS
TOPUP_BELOW_V = 12.35
TOPUP_MS = 30 * MINUTE_MS

Sample = tuple[int, dict[str, object]]
# (ts, "telemetry" | "event", signals or event payload)
Message = tuple[int, str, dict[str, object]]
Profile = Callable[[float], float]  # a function of the day (float days since START_MS)


def daily_cycle(mean: Profile, amplitude: float = 5.0) -> Profile:
    """Ambient: ``mean(day)`` plus a daily cycle, warmest at 15:00, coldest at 03:00."""
    return lambda day: mean(day) + amplitude * math.cos(2 * math.pi * ((day % 1) * 24 - 15) / 24)


def cold_snap(day: float) -> float:
    """+10 °C, falling to -20 °C between days 5 and 10, holding until day 15, then recovering."""
    if day < 5:
        return 10.0
    if day < 10:
        return 10.0 - 6.0 * (day - 5)
    if day < 15:
        return -20.0
    return min(10.0, -20.0 + 6.0 * (day - 15))


MILD = daily_cycle(lambda _d: 8.0)
COLD_SNAP = daily_cycle(cold_snap)


def weakening(v25_initial: float, rate_v_per_day: float, onset_day: float = 1.0) -> Profile:
    return lambda day: v25_initial - rate_v_per_day * max(0.0, day - onset_day)


def failure_day(v25_initial: float, rate_v_per_day: float, onset_day: float = 1.0) -> float:
    return onset_day + (v25_initial - FAILURE_V25) / rate_v_per_day


def replaced(before: Profile, at_day: float, new_v25: float = 12.72) -> Profile:
    """A battery swapped for a new one at ``at_day``."""
    return lambda day: before(day) if day < at_day else new_v25


def messages(
    days: float,
    v25_at: Profile,
    ambient_at: Profile = MILD,
    seed: int = 0,
    parked_days: set[int] | frozenset[int] = frozenset(),
    offline_days: set[int] | frozenset[int] = frozenset(),
    random_topups_per_day: float = 0.15,
    ignition_events: bool = False,
    key_in_telemetry: bool = True,
    with_current: bool = True,
    with_ambient: bool = True,
    drive_interval_s: float = 60,
    parked_interval_s: float = 1800,
) -> Iterator[Message]:
    """Telemetry (and optionally ignition events) of one car for ``days`` days, in time order."""
    rng = np.random.default_rng(seed)
    end = START_MS + int(days * DAY_MS)
    drive_ms, parked_ms = int(drive_interval_s * 1000), int(parked_interval_s * 1000)

    battery_c = ambient_at(0.0)
    temp_ts = START_MS
    drain = 0.0
    rest_start = START_MS - 12 * HOUR_MS
    last_topup = START_MS - DAY_MS
    topup_until = -1

    def day_of(ts: int) -> float:
        return (ts - START_MS) / DAY_MS

    def follow(ts: int, target: float) -> None:
        nonlocal battery_c, temp_ts
        battery_c += (target - battery_c) * (1 - math.exp(-(ts - temp_ts) / LAG_MS))
        temp_ts = ts

    def telemetry(ts: int, on: bool, volts: float, amps: float, ambient: float) -> Message:
        signals: dict[str, object] = {
            "Vehicle.LowVoltageBattery.CurrentVoltage":
                round(float(volts + rng.normal(0.0, 0.015)), 3),
        }
        if key_in_telemetry:
            signals["Vehicle.LowVoltageSystemState"] = "ON" if on else "OFF"
        if with_current:
            signals["Vehicle.LowVoltageBattery.CurrentCurrent"] = round(amps, 2)
        if with_ambient and rng.random() >= 0.01:
            signals["Vehicle.Exterior.AirTemperature"] = round(
                ambient + float(rng.normal(0.0, 0.2)), 2)
        return ts, "telemetry", signals

    def trips_of(day: int) -> list[tuple[int, int]]:
        base = START_MS + day * DAY_MS
        if day in parked_days or rng.random() < 0.1:
            return []
        if rng.random() < 0.35:
            depart = 9.0 + rng.uniform(0, 6)
            legs = [(depart, depart + rng.uniform(0.5, 2.0))]
        else:
            d1, d2 = 7.0 + rng.uniform(0, 2.5), 16.0 + rng.uniform(0, 3)
            legs = [(d1, d1 + rng.uniform(0.3, 1.0)), (d2, d2 + rng.uniform(0.3, 1.0))]
        return [(base + int(a * HOUR_MS), base + int(b * HOUR_MS)) for a, b in legs]

    t = START_MS
    day = -1
    pending: list[tuple[int, int]] = []
    while t < end:
        # Plan trips a day at a time; the next departure decides how long the car stays parked.
        while not pending and day < days:
            day += 1
            pending = [leg for leg in trips_of(day) if leg[0] >= t]
        next_depart = pending[0][0] if pending else end
        dead = v25_at(day_of(next_depart)) - drain < FAILURE_V25
        if dead:  # the car cannot wake its HV system any more: it stays parked
            next_depart, pending = end, []

        # ---- parked until next_depart
        while t < min(next_depart, end):
            ambient = ambient_at(day_of(t))
            follow(t, ambient)
            rest_v = v25_at(day_of(t)) - drain + TEMP_COEFF * (battery_c - 25.0)
            step = parked_ms
            if topup_until > t:
                volts, amps = 14.0 + float(rng.normal(0, 0.05)), 5.0
                step = min(10 * MINUTE_MS, topup_until - t)
            elif not dead and t - last_topup >= DAY_MS and (
                    rest_v < TOPUP_BELOW_V
                    or rng.random() < random_topups_per_day * parked_ms / DAY_MS):
                topup_until, last_topup = t + TOPUP_MS, t
                rest_start, drain = t + TOPUP_MS, 0.0
                volts, amps = 14.0 + float(rng.normal(0, 0.05)), 5.0
                step = 10 * MINUTE_MS
            else:
                since = max(0, t - rest_start)
                volts = rest_v + 0.35 * math.exp(-since / HOUR_MS)
                amps = -0.05
                drain += 0.005 * step / DAY_MS
            if int(day_of(t)) not in offline_days:
                yield telemetry(t, False, volts, amps, ambient)
            t = min(t + step, next_depart)  # never skip past a departure: the drive is seen
        if t >= end or not pending:
            continue

        # ---- driving
        depart, arrive = pending.pop(0)
        t = max(t, depart)
        if ignition_events and int(day_of(t)) not in offline_days:
            yield t, "event", {"type": "ignition", "state": "ON"}
        while t < min(arrive, end):
            ambient = ambient_at(day_of(t))
            follow(t, ambient + 3.0)
            if int(day_of(t)) not in offline_days:
                yield telemetry(t, True, float(rng.uniform(13.6, 14.4)),
                                float(rng.uniform(2, 12)), ambient)
            t += drive_ms
        t = max(t, arrive)
        drain, rest_start = 0.0, t
        if ignition_events and t < end and int(day_of(t)) not in offline_days:
            yield t, "event", {"type": "ignition", "state": "OFF"}


def series(days: float, v25_at: Profile, ambient_at: Profile = MILD, seed: int = 0,
           **options: Any) -> Iterator[Sample]:
    """Telemetry only, as ``(ts, signals)``: what ``Detector.update`` consumes."""
    for ts, kind, payload in messages(days, v25_at, ambient_at, seed, **options):
        if kind == "telemetry":
            yield ts, payload
