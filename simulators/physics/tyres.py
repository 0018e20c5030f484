"""Tyre pressures: four wheels warming on a drive, and the slow leak the detector looks for.

Why it matters
--------------
A nail or a leaking valve lets a tyre lose a few kPa a day; the car's own TPMS warns only at
25 % below the placard. The reported pressure also moves with temperature (a cold morning
takes 30 kPa off all four tyres, a drive puts 12 kPa back on), so a detector must compensate
for heat before it can see a leak: the simulated tyres must carry that physics.

Model (``diagnostics/tyre_leak.py`` is written against the same physics)
-----------------------------------------------------------------------
* each wheel's pressure at 20 °C (``VehicleSpec.tire_cold_kpa``) is set around the model's
  placard (250, 280 or 230 kPa, ``ModelSpec.placard_kpa``; +/- 6 kPa per wheel);
* while driving the tyres warm by up to ``TYRE_WARMING_C`` (10 °C) above ambient (time
  constant 15 min) and the reported pressure follows Gay-Lussac (absolute pressure
  proportional to absolute temperature), noise sigma 0.5 kPa (0.3 °C on the tyre temperature);
* fault ``slow_leak``: from an onset in the first five days one wheel's 20 °C pressure falls
  2-8 kPa/day (floored at ``SLOW_LEAK_FLOOR_KPA``); the truth's ``failure_ts`` is when it
  reaches the car's own TPMS warning, 25 % below the placard. The car keeps driving.
"""

from __future__ import annotations

import math
import random
from typing import Any

from ingest.contract import TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS
from simulators.faults import SLOW_LEAK_FLOOR_KPA, FaultInstance
from vocab.eventtime import DAY_MS, MINUTE_MS

ATMOSPHERE_KPA = 101.3  # gauge pressure + this = absolute pressure
ZERO_C_K = 273.15
PLACARD_K = 293.15  # placard pressures are set at 20 °C
TYRE_WARMING_C = 10.0
TYRE_WARMUP_MS = 15 * MINUTE_MS
PRESSURE_NOISE_KPA = 0.5
TYRE_TEMP_NOISE_C = 0.3


def cold_pressures(tire_cold_kpa: tuple[float, float, float, float],
                   fault: FaultInstance | None, ts: int) -> tuple[float, ...]:
    """The four tyres' pressures at 20 °C; a ``slow_leak`` lowers one of them linearly."""
    if fault is None or fault.name != "slow_leak" or ts <= fault.onset_ts:
        return tire_cold_kpa
    wheel = int(fault.params["wheel"])
    lost = float(fault.params["rate_kpa_per_day"]) * (ts - fault.onset_ts) / DAY_MS
    cold = list(tire_cold_kpa)
    cold[wheel] = max(SLOW_LEAK_FLOOR_KPA, cold[wheel] - lost)
    return tuple(cold)


def driving_tyre_c(ambient_c: float, elapsed_ms: int) -> float:
    """The tyres' temperature ``elapsed_ms`` into a drive."""
    warm = 1 - math.exp(-elapsed_ms / TYRE_WARMUP_MS)
    return ambient_c + TYRE_WARMING_C * warm


def tyre_signals(cold_kpa: tuple[float, ...], tyre_c: float,
                 rng: random.Random) -> dict[str, Any]:
    """Pressure and temperature of each wheel, in ``TIRE_PRESSURE_SIGNALS`` order (two draws
    per wheel: pressure, then temperature)."""
    signals: dict[str, Any] = {}
    for path, cold, tpath in zip(TIRE_PRESSURE_SIGNALS, cold_kpa, TIRE_TEMPERATURE_SIGNALS,
                                 strict=True):
        # Gay-Lussac: pressure follows absolute temperature (placard set at 20 °C).
        # VSS Tire.Pressure is uint16 kPa: whole kPa, as a TPMS sensor's ~1.4 kPa steps.
        signals[path] = round((cold + ATMOSPHERE_KPA) * (tyre_c + ZERO_C_K) / PLACARD_K
                              - ATMOSPHERE_KPA + rng.gauss(0, PRESSURE_NOISE_KPA))
        signals[tpath] = round(tyre_c + rng.gauss(0, TYRE_TEMP_NOISE_C), 1)
    return signals
