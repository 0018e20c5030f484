"""The daily routine: when each car drives where.

Why it matters
--------------
What a detector sees depends on how a car is used: a commuter's 12 V battery is recharged
twice a day, a car standing for days drains; tyres warm only on drives; public charging
happens where the car stops. A fleet of identical schedules would hide exactly the
variations a detector must cope with, so each car follows habits of its own.

Rules
-----
* Each car has a home, a workplace (80 % commute) and habits drawn from the seed
  (``simulators.population``). Simulated time is the region's local time: the routine runs on
  the clock of ``ts``.
* Weekdays, commuters: out 06:30-09:00 and back 16:00-18:30, and 30 % of evenings an errand
  (out and back in one drive). Weekends and non-commuters: an outing (there, 1-4 hours, back)
  or one round trip. A drive lasts ``TRIP_MIN`` (10-60 minutes).
* ``IDLE_DAY_PROB`` (10 %) of days the car stays put; on ``AWAY_START_PROB`` (1.5 %) of days
  an absence of 2-5 days starts (the car sleeps where it is; drawn by the vehicle's day loop).
* Each day's plan draws from an RNG of its own (``plan-<seed>-<car>-<day>``), so a day's
  trips do not depend on what happened on the days before.
* A trip's cruising speed covers its route (``ROUTE_FACTOR`` x the straight distance, twice
  for a round trip) in its duration, less a ramp's worth (``RAMP_MS``) at either end.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulators.geo import ROUTE_FACTOR, Point, distance_km, offset_point
from simulators.spec import VehicleSpec
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS

IDLE_DAY_PROB = 0.10
AWAY_START_PROB = 0.015
AWAY_DAYS = (2, 5)
TRIP_MIN = (10.0, 60.0)
RAMP_MS = 2 * MINUTE_MS


@dataclass(frozen=True)
class Trip:
    depart: int
    arrive: int
    origin: Point
    dest: Point
    dest_place: str  # home | work | out
    loop: bool  # out and back within one drive (errand)
    cruise_kmh: float


def clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


def make_trip(depart: int, minutes: float, origin: Point, dest: Point, place: str,
              loop: bool = False) -> Trip:
    arrive = depart + int(minutes * MINUTE_MS)
    route_km = distance_km(origin, dest) * ROUTE_FACTOR * (2 if loop else 1)
    # The ramps at both ends cost about a ramp's worth of cruising.
    cruising_h = max(minutes * MINUTE_MS - RAMP_MS, MINUTE_MS) / HOUR_MS
    return Trip(depart, arrive, origin, dest, place, loop,
                clamp(route_km / cruising_h, 15.0, 130.0))


def plan_day(seed: int, s: VehicleSpec, day_start: int, day: int) -> list[Trip]:
    """The trips of car ``s`` on the day starting at ``day_start`` (the run's ``day``-th)."""
    rng = random.Random(f"plan-{seed}-{s.index}-{day}")
    if rng.random() < IDLE_DAY_PROB:
        return []  # a day without driving
    weekday = (day_start // DAY_MS + 3) % 7 < 5  # epoch day 0 was a Thursday
    trips: list[Trip] = []
    if s.commuter and weekday:
        out_min = clamp(s.commute_min * rng.uniform(0.85, 1.3), *TRIP_MIN)
        depart = day_start + int(rng.uniform(6.5, 9.0) * HOUR_MS)
        trips.append(make_trip(depart, out_min, s.home, s.work, "work"))
        back_min = clamp(s.commute_min * rng.uniform(0.9, 1.4), *TRIP_MIN)
        back = day_start + int(rng.uniform(16.0, 18.5) * HOUR_MS)
        trips.append(make_trip(back, back_min, s.work, s.home, "home"))
        if rng.random() < 0.3:  # an evening errand, out and back in one drive
            errand = max(trips[-1].arrive + 20 * MINUTE_MS,
                         day_start + int(rng.uniform(18.5, 20.5) * HOUR_MS))
            shop = offset_point(s.home, rng.uniform(1.5, 6), rng.uniform(0, 2 * math.pi))
            trips.append(make_trip(errand, rng.uniform(10, 30), s.home, shop, "home",
                                   loop=True))
        return trips
    spot = offset_point(s.home, rng.uniform(3, 25), rng.uniform(0, 2 * math.pi))
    km = distance_km(s.home, spot) * ROUTE_FACTOR
    minutes = clamp(km / rng.uniform(35, 65) * 60, *TRIP_MIN)
    if rng.random() < 0.6:  # an outing: there, a few hours, back
        depart = day_start + int(rng.uniform(9.5, 14.0) * HOUR_MS)
        trips.append(make_trip(depart, minutes, s.home, spot, "out"))
        back = trips[-1].arrive + int(rng.uniform(1.0, 4.0) * HOUR_MS)
        trips.append(make_trip(back, clamp(minutes * rng.uniform(0.9, 1.2), *TRIP_MIN),
                               spot, s.home, "home"))
    else:
        depart = day_start + int(rng.uniform(9.5, 17.0) * HOUR_MS)
        trips.append(make_trip(depart, clamp(2 * minutes, *TRIP_MIN), s.home, spot, "home",
                               loop=True))
    return trips
