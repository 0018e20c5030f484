"""A car's engine: when it runs, its speed and coolant, its fuel, and its alternator's 12 V.

Why it matters
--------------
Most of a carmaker's fleet burns fuel: the cloud sees the engine start and stop, warm up and
use fuel, and, in a combustion car, the 12 V bus at the alternator's charging voltage only
while the engine runs. Detectors must tell that charging voltage from a resting battery, and
a sagging charging voltage from a healthy one (``diagnostics.alternator``).

Model (``diagnostics/alternator.py`` and ``diagnostics/battery12v.py`` are written against it)
---------------------------------------------------------------------------------------------
* When the engine runs: a combustion car always while ON, except stop-start pauses at
  traffic stops once warm (``STOP_START_AFTER_MS``); a hybrid above ``HEV_ENGINE_KMH`` or
  while warming its catalyst (the first ``HYBRID_WARMUP_MS``); a plug-in hybrid once its pack
  is down to ``PHEV_FLOOR_SOC`` or above ``PHEV_ENGINE_KMH``.
* Engine speed: idle 750-850 rpm at a standstill, ``1300 + 18 * km/h`` driving (noise 3 %).
* Coolant (``CombustionEngine.EngineCoolant.Temperature``): warms towards the thermostat's
  90 °C with a 6 min time constant while running, cools to the air with a 2 h one when off.
* Fuel: the model's l/100 km times the car's factor (+1 %/°C below 15 °C) while the engine
  runs, 0.6 l/h idling; a tank below 12 % is refilled at the end of that trip.
* Combustion cars' 12 V while the engine runs: the regulator's set point at 25 °C
  (``faults.ALTERNATOR_V_RANGE``, sagging under the ``alternator`` fault) compensated by
  ``-REGULATOR_COEFF_V_PER_C`` per °C of battery temperature (a cold battery is charged
  harder), 0.1 V lower at idle, ripple sigma ``RIPPLE_V``; the current is the DC-DC's refill
  profile (``battery12v.driving_current_a``) scaled down as the voltage sags below
  ``FULL_CHARGE_V`` and negative below ``NO_CHARGE_V``. In a stop-start pause the battery
  carries the car: its resting voltage minus ``PAUSE_SAG_V``, ``PAUSE_CURRENT_A``. After the
  drive the battery rests at most at the set point minus ``faults.CHARGE_HEADROOM_V``.
  Hybrids charge their 12 V from the traction battery's DC-DC, as electric cars do.
"""

from __future__ import annotations

import math
import random

from simulators.faults import CHARGE_HEADROOM_V
from vocab.eventtime import HOUR_MS, MINUTE_MS

STOP_START_AFTER_MS = 5 * MINUTE_MS
HYBRID_WARMUP_MS = 3 * MINUTE_MS
HEV_ENGINE_KMH = 45.0
PHEV_FLOOR_SOC = 15.0
PHEV_ENGINE_KMH = 115.0
IDLE_RPM = (750.0, 850.0)
THERMOSTAT_C = 90.0
WARMUP_TAU_MS = 6 * MINUTE_MS
COOLDOWN_TAU_MS = 2 * HOUR_MS
COOLANT_NOISE_C = 0.5
IDLE_L_PER_H = 0.6
COLD_FUEL_PER_C = 0.01
REFILL_BELOW_PCT = 12.0
REGULATOR_COEFF_V_PER_C = 0.008
REGULATOR_COMP_LIMIT_V = 0.4
IDLE_DIP_V = 0.1
RIPPLE_V = 0.03
FULL_CHARGE_V = 13.6
NO_CHARGE_V = 13.0
NO_CHARGE_A_PER_V = 12.0
PAUSE_SAG_V = 0.25
PAUSE_CURRENT_A = -22.0


def runs(powertrain: str, speed_kmh: float, elapsed_ms: int, soc: float) -> bool:
    """Whether the engine runs in this sample of a drive (``elapsed_ms`` into it)."""
    if powertrain == "ice":
        return speed_kmh > 0.0 or elapsed_ms < STOP_START_AFTER_MS
    if powertrain == "hev":
        return speed_kmh > HEV_ENGINE_KMH or elapsed_ms < HYBRID_WARMUP_MS
    if powertrain == "phev":
        return soc <= PHEV_FLOOR_SOC or speed_kmh > PHEV_ENGINE_KMH
    return False


def rpm(speed_kmh: float, rng: random.Random) -> float:
    base = (rng.uniform(*IDLE_RPM) if speed_kmh < 1.0 else 1300.0 + 18.0 * speed_kmh)
    return round(base * (1 + rng.gauss(0, 0.03)), 0)


def coolant_c(previous_c: float, ambient_c: float, dt_ms: int, running: bool) -> float:
    """The engine coolant ``dt_ms`` after ``previous_c`` (exact first-order step)."""
    target, tau = (THERMOSTAT_C, WARMUP_TAU_MS) if running else (ambient_c, COOLDOWN_TAU_MS)
    return target + (previous_c - target) * math.exp(-max(0, dt_ms) / tau)


def fuel_l(km: float, dt_ms: int, l_per_100km: float, ambient_c: float) -> float:
    """Fuel burnt over an interval with the engine running (idling when ``km`` is 0)."""
    if km <= 0.0:
        return IDLE_L_PER_H * dt_ms / HOUR_MS
    return km * l_per_100km / 100 * (1 + COLD_FUEL_PER_C * max(0.0, 15.0 - ambient_c))


def charging_v(set_v25: float, battery_c: float, idle: bool) -> float:
    """The 12 V bus while the alternator charges (before ripple and measurement noise)."""
    comp = max(-REGULATOR_COMP_LIMIT_V,
               min(REGULATOR_COMP_LIMIT_V, REGULATOR_COEFF_V_PER_C * (25.0 - battery_c)))
    return set_v25 + comp - (IDLE_DIP_V if idle else 0.0)


def charging_current_a(bus_v: float, healthy_current_a: float) -> float:
    """The battery current at bus voltage ``bus_v`` (positive = charging)."""
    if bus_v >= FULL_CHARGE_V:
        return healthy_current_a
    if bus_v >= NO_CHARGE_V:
        return round(healthy_current_a * (bus_v - NO_CHARGE_V) / (FULL_CHARGE_V - NO_CHARGE_V),
                     2)
    return round((bus_v - NO_CHARGE_V) * NO_CHARGE_A_PER_V, 2)


def rest_cap_v25(set_v25: float) -> float:
    """The highest resting voltage (at 25 °C) a drive at this set point leaves the battery."""
    return set_v25 - CHARGE_HEADROOM_V
