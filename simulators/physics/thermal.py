"""The traction pack's loop temperature and the drive unit's cooling (``Thermal``).

Why it matters
--------------
A wearing coolant pump moves less coolant, so the drive unit runs hotter under the same load
until it derates (the car limps on reduced power, on a motorway or up a pass). Coolant
temperature alone says little: it follows the weather, the speed, the hills and the pack's
own thermal management. The simulated cooling has to produce all of that, so the thermal
detector is scored against a rise it must separate from the load that explains it.

Model (``diagnostics/thermal.py`` is written against the same physics; the fault's constants
are in ``simulators.faults``)
---------------------------------------------------------------------------------------------
* the traction pack's loop temperature follows ``max(ambient + PACK_RISE_C, 22)`` °C while
  driving (1 h lag; the thermal management heats a cold pack) and ambient while parked (8 h);
* the drive unit's heat load is the traction power at the wheels (``road_load_kw``: rolling
  resistance, air drag, and the grade; abs, since regeneration heats it too), lagged 4 min;
  30 % of trips are hilly (a 1-4 % grade rising and falling every 3-15 min, from the car's own
  ``thermal-run`` RNG), which adds heat the speed does not show;
* the coolant rises above the pack by ``COOLANT_OFFSET_C`` + ``resistance * load`` (the
  resistance drawn per car in 0.45-0.75 °C/kW), lagging 5 min from a cold loop at each drive's
  start; the pack takes ``PACK_LOAD_SHARE`` of that rise too; noise 0.5 / 0.3 °C;
* while charging the car also reports its pack temperature, heated by the charge power
  (150 kW DC: about +20 °C), kept apart from the loop temperature of the drives;
* fault ``coolant_pump``: from an onset in the first five days the load-driven rise grows by
  ``1 + growth * days`` (5-15 %/day); the truth's ``failure_ts`` is when the coolant at the
  reference condition (30 °C, 25 kW sustained) reaches the derate limit, 90 °C
  (``simulators.faults.coolant_pump_failure_ts``). The simulated car keeps driving.

The per-car resistance comes from the car's own ``thermal`` RNG and the hills from its
``thermal-run`` RNG, so the cooling model moves no draw of any other signal.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulators.faults import COOLANT_OFFSET_C, PACK_RISE_C
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS

CDA_M2 = 0.62
ROLLING_COEFF = 0.011
THERMAL_RESISTANCE_RANGE = (0.45, 0.75)  # °C of coolant rise per kW of traction power
LOAD_TAU_MS = 4 * MINUTE_MS  # the drive unit's thermal mass smooths the load
COOLANT_TAU_MS = 5 * MINUTE_MS  # the coolant's rise above the pack follows it
HILLY_TRIP_PROB = 0.3
HILL_GRADE_RANGE = (0.01, 0.04)
HILL_PERIOD_MIN = (3.0, 15.0)
PACK_MIN_DRIVING_C = 22.0  # the thermal management heats a cold pack while driving
PACK_DRIVING_TAU_MS = HOUR_MS
PACK_PARKED_TAU_MS = 8 * HOUR_MS
PACK_NOISE_C = 0.3
COOLANT_NOISE_C = 0.5
CHARGE_HEAT_C_PER_KW = 0.13  # pack heating while charging: 150 kW DC about +20 °C
CHARGE_HEAT_TAU_MS = 30 * MINUTE_MS
CHARGING_PACK_RISE_C = 5.0  # a charging pack sits above ambient (at least CHARGING_PACK_MIN_C)
CHARGING_PACK_MIN_C = 20.0


def road_load_kw(speed_kmh: float, mass_kg: float, grade: float = 0.0) -> float:
    """Traction power at the wheels (kW): rolling resistance, air drag and the climb; a descent
    recovers energy but the drive unit heats with the power it handles either way (abs)."""
    v = speed_kmh / 3.6
    force = mass_kg * 9.81 * (ROLLING_COEFF + grade) + 0.5 * 1.2 * CDA_M2 * v * v
    return abs(force * v) / 1000.0


@dataclass
class Thermal:
    """The pack's loop and the drive unit's cooling; its own RNG draws the hills."""

    resistance: float  # healthy °C per kW
    mass_kg: float
    rng: random.Random
    pump_onset: int | None = None
    pump_growth_per_day: float = 0.0
    load_kw: float = 0.0  # lagged traction power of the current drive
    excess_c: float = 0.0  # coolant above the pack, lagging COOLANT_OFFSET_C + rise
    hill: tuple[float, float, float] = (0.0, 1.0, 0.0)  # grade, period ms, phase
    pack_c: float | None = None  # the pack's loop temperature (drives and parking)
    pack_ts: int = 0
    charge_pack: tuple[int, float] | None = None  # (ts, °C) of the pack while charging

    def follow_pack(self, ts: int, target_c: float, tau_ms: float) -> float:
        """The loop temperature at ``ts``, first order towards ``target_c``."""
        if self.pack_c is None:
            self.pack_c = target_c
        else:
            dt = max(0, ts - self.pack_ts)
            self.pack_c += (target_c - self.pack_c) * (1 - math.exp(-dt / tau_ms))
        self.pack_ts = ts
        return self.pack_c

    def pack_parked(self, ts: int, ambient_c: float) -> float:
        """The loop temperature after standing (at a drive's start): it followed ambient."""
        return self.follow_pack(ts, ambient_c, PACK_PARKED_TAU_MS)

    def pack_driving(self, ts: int, ambient_c: float) -> float:
        """The loop temperature while driving: the thermal management holds it warm."""
        return self.follow_pack(ts, max(ambient_c + PACK_RISE_C, PACK_MIN_DRIVING_C),
                                PACK_DRIVING_TAU_MS)

    def charging_pack(self, ts: int, ambient_c: float, power_kw: float) -> float:
        """The pack's temperature while charging at ``power_kw`` (first order towards a
        target the charge power heats), from the loop temperature at the session's start.
        Kept apart from the loop temperature, so charging heat does not carry into the
        drives (nor into the cell voltages they report)."""
        target_c = (max(ambient_c + CHARGING_PACK_RISE_C, CHARGING_PACK_MIN_C)
                    + CHARGE_HEAT_C_PER_KW * power_kw)
        if self.charge_pack is None or ts - self.charge_pack[0] > CHARGE_HEAT_TAU_MS * 4:
            self.charge_pack = (ts, ambient_c if self.pack_c is None else self.pack_c)
        last_ts, temp = self.charge_pack
        temp += (target_c - temp) * (1 - math.exp(-(ts - last_ts) / CHARGE_HEAT_TAU_MS))
        self.charge_pack = (ts, temp)
        return temp

    def factor(self, ts: int) -> float:
        """How much the load-driven rise has grown: 1 while the pump is healthy."""
        if self.pump_onset is None or ts <= self.pump_onset:
            return 1.0
        return 1.0 + self.pump_growth_per_day * (ts - self.pump_onset) / DAY_MS

    def start_trip(self) -> None:
        rng = self.rng
        hilly = rng.random() < HILLY_TRIP_PROB
        grade = rng.uniform(*HILL_GRADE_RANGE)
        period = rng.uniform(*HILL_PERIOD_MIN) * MINUTE_MS
        self.hill = (grade if hilly else 0.0, period, rng.uniform(0, 2 * math.pi))
        self.load_kw, self.excess_c = 0.0, 0.0  # a cold drive unit, coolant at pack level

    def step(self, ts: int, elapsed_ms: int, dt_ms: int, speed_kmh: float) -> float:
        """Advance the lagged load and coolant by ``dt_ms``; return the load-driven rise."""
        grade, period, phase = self.hill
        slope = grade * math.sin(2 * math.pi * elapsed_ms / period + phase)
        load = road_load_kw(speed_kmh, self.mass_kg, slope)
        self.load_kw += (load - self.load_kw) * (1 - math.exp(-dt_ms / LOAD_TAU_MS))
        rise = self.resistance * self.factor(ts) * self.load_kw
        target = COOLANT_OFFSET_C + rise
        self.excess_c += (target - self.excess_c) * (1 - math.exp(-dt_ms / COOLANT_TAU_MS))
        return rise
