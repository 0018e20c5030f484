"""The fleet's population: the vehicles and chargers a seed makes, drawn once.

Why it matters
--------------
The same seed must give the same fleet (the same VINs, homes, habits, healthy baselines and
faulty assets), so that a run replays to the byte and a detector's score can be reproduced.
And adding a fault to one asset must not reshuffle the others: a fleet with one fault more is
the same fleet with one asset changed.

Rules
-----
* Each vehicle draws from its own RNG ``vehicle-<seed>-<index>``, each charger from
  ``charger-<seed>-<index>``, in a fixed order (the order below is part of the stream).
* Parameters a fault or an optional signal needs come from RNGs of their own (``cells-``,
  ``thermal-``, ``charger-fault-``), so whether a car reports cells, or a charger is faulty,
  shifts none of the asset's other draws.
* A vehicle fault is drawn from the vehicle's RNG after its VIN, 12 V, home, work and speed
  draws (``slow_leak`` last, after the tyre pressures it starts from), given the healthy
  parameters the fault starts from (``simulators.faults.draw_fault``).
"""

from __future__ import annotations

import dataclasses
import math
import random

from simulators.faults import draw_fault
from simulators.geo import CITY, ROUTE_FACTOR, offset_point
from simulators.physics.battery12v import V25_RANGE
from simulators.physics.cells import CELL_SPREAD_MV_RANGE
from simulators.physics.thermal import THERMAL_RESISTANCE_RANGE
from simulators.routine import TRIP_MIN, clamp
from simulators.spec import MODELS, ChargerSpec, VehicleSpec
from simulators.vin import new_vin


def draw_vehicle(seed: int, start_ms: int, i: int, fault: str | None, vins: set[str],
                 cell_report_fraction: float) -> VehicleSpec:
    """Vehicle ``i`` of the fleet, with ``fault`` (a ``FAULTS`` name) if it carries one;
    ``vins`` holds the VINs already taken."""
    r = random.Random(f"vehicle-{seed}-{i}")
    model = MODELS[i % len(MODELS)]
    vin = new_vin(r, model.vds, vins)
    v25 = round(r.uniform(*V25_RANGE), 4)
    home = (CITY[0] + r.uniform(-0.15, 0.15), CITY[1] + r.uniform(-0.25, 0.25))
    work_km = r.uniform(4, 30)
    work = offset_point(home, work_km, r.uniform(0, 2 * math.pi))
    avg_kmh = r.uniform(28, 55)
    cell_rng = random.Random(f"cells-{seed}-{i}")
    cell_spread = round(cell_rng.uniform(*CELL_SPREAD_MV_RANGE), 2)
    reports_cells = fault == "cell_drift" or cell_rng.random() < cell_report_fraction
    thermal_rng = random.Random(f"thermal-{seed}-{i}")
    resistance = round(thermal_rng.uniform(*THERMAL_RESISTANCE_RANGE), 3)
    # slow_leak starts from the tyre pressures, drawn below: it is drawn last.
    instance = (draw_fault(fault, r, start_ms,
                           {"v25_initial": v25, "cells": model.cells,
                            "cell_spread_mv": cell_spread,
                            "thermal_resistance_c_per_kw": resistance})
                if fault and fault != "slow_leak" else None)
    spec = VehicleSpec(
        index=i, vin=vin, model=model.name, spec=model, home=home, work=work,
        commuter=r.random() < 0.8,
        commute_min=clamp(work_km * ROUTE_FACTOR / avg_kmh * 60, *TRIP_MIN),
        kwh_per_km=model.kwh_per_km * r.uniform(0.92, 1.1),
        v25_initial=v25, soc=r.uniform(45, 90), odometer_m=r.uniform(5e6, 6e7),
        soh=round(r.uniform(88, 99), 2),
        tire_cold_kpa=(r.uniform(model.placard_kpa - 6, model.placard_kpa + 6),
                       r.uniform(model.placard_kpa - 6, model.placard_kpa + 6),
                       r.uniform(model.placard_kpa - 6, model.placard_kpa + 6),
                       r.uniform(model.placard_kpa - 6, model.placard_kpa + 6)),
        charge_below_soc=r.uniform(35, 55), charge_target_soc=r.choice((80.0, 85.0, 90.0)),
        home_kw=min(model.ac_kw, r.choice((7.4, 11.0))), fault=instance,
        reports_cells=reports_cells, cell_spread_mv=cell_spread,
        thermal_resistance=resistance,
    )
    if fault == "slow_leak":
        spec = dataclasses.replace(spec, fault=draw_fault(
            fault, r, start_ms,
            {"tire_cold_kpa": spec.tire_cold_kpa, "placard_kpa": model.placard_kpa}))
    return spec


def draw_charger(seed: int, start_ms: int, i: int, fault: str | None) -> ChargerSpec:
    """Public charger ``i`` (``CP-0001`` onwards), with ``fault`` if it carries one."""
    r = random.Random(f"charger-{seed}-{i}")
    dc = r.random() < 0.5
    instance = (draw_fault(fault, random.Random(f"charger-fault-{seed}-{i}"),
                           start_ms, {}) if fault else None)
    return ChargerSpec(
        index=i, charger_id=f"CP-{i + 1:04d}", dc=dc,
        power_kw=r.choice((50.0, 150.0)) if dc else 22.0,
        location=offset_point(CITY, r.uniform(0.5, 12), r.uniform(0, 2 * math.pi)),
        mean_gap_h=r.uniform(3, 6) if dc else r.uniform(6, 10), fault=instance,
    )
