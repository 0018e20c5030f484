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
* The powertrain is drawn from the fleet's mix (``powertrain_mix``, weights by powertrain;
  default ``DEFAULT_POWERTRAIN_MIX``: mostly combustion and hybrid, as a carmaker's fleet is)
  with an RNG of its own (``powertrain-``); a car carrying a fault its powertrain cannot have
  (``FaultSpec.powertrains``: a cell drift needs a traction battery, an alternator fault an
  engine-only car) draws again among the powertrains that can. A battery-electric car is the
  same car whatever the mix, so an all-electric mix gives the fleet of earlier releases.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping

from simulators.faults import ALTERNATOR_V_RANGE, FAULTS, POWERTRAINS, Powertrain, draw_fault
from simulators.geo import CITY, ROUTE_FACTOR, offset_point
from simulators.physics.battery12v import V25_RANGE
from simulators.physics.cells import CELL_SPREAD_MV_RANGE
from simulators.physics.thermal import THERMAL_RESISTANCE_RANGE
from simulators.routine import TRIP_MIN, clamp
from simulators.spec import MODELS_BY_POWERTRAIN, ChargerSpec, VehicleSpec
from simulators.vin import new_vin

DEFAULT_POWERTRAIN_MIX: Mapping[str, float] = {
    "ice": 0.45, "hev": 0.2, "phev": 0.1, "bev": 0.25}
ALL_ELECTRIC: Mapping[str, float] = {"bev": 1.0}
FUEL_START_PCT = (20.0, 95.0)
FUEL_FACTOR = (0.9, 1.15)


def check_powertrain_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """The mix as weights by powertrain; ValueError naming what is wrong."""
    out: dict[str, float] = {}
    for name, weight in mix.items():
        if name not in POWERTRAINS:
            raise ValueError(f"unknown powertrain {name!r}; known: {', '.join(POWERTRAINS)}")
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight of powertrain {name!r} must be a finite number >= 0, "
                             f"got {weight!r}")
        out[name] = float(weight)
    if sum(out.values()) <= 0:
        raise ValueError("the powertrain mix needs at least one powertrain with a weight > 0")
    return out


def parse_powertrain_mix(text: str) -> dict[str, float]:
    """Parse ``ice:45,hev:20,phev:10,bev:25`` (weights, any scale); ValueError if bad."""
    mix: dict[str, float] = {}
    for raw in text.split(","):
        name, sep, weight = (p.strip() for p in raw.partition(":"))
        if not sep:
            raise ValueError(f"powertrain {name!r} needs a weight, e.g. {name}:25")
        if name in mix:
            raise ValueError(f"powertrain {name!r} is given twice")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"weight of powertrain {name!r} must be a number, got {weight!r}"
                             ) from None
    return check_powertrain_mix(mix)


def draw_powertrain(seed: int, i: int, fault: str | None,
                    mix: Mapping[str, float]) -> Powertrain:
    """Vehicle ``i``'s powertrain: from the mix, among those its fault can happen on."""
    rng = random.Random(f"powertrain-{seed}-{i}")
    names = [p for p in POWERTRAINS if mix.get(p, 0.0) > 0]
    drawn: Powertrain = rng.choices(names, [mix[p] for p in names])[0]
    allowed = FAULTS[fault].powertrains if fault else frozenset(POWERTRAINS)
    if drawn in allowed:
        return drawn
    suitable = [p for p in POWERTRAINS if p in allowed]
    weights = [mix.get(p, 0.0) for p in suitable]
    if sum(weights) <= 0:  # the mix has none of them: the fault decides
        weights = [1.0] * len(suitable)
    return rng.choices(suitable, weights)[0]


def draw_vehicle(seed: int, start_ms: int, i: int, fault: str | None, vins: set[str],
                 cell_report_fraction: float,
                 powertrain_mix: Mapping[str, float] = DEFAULT_POWERTRAIN_MIX
                 ) -> VehicleSpec:
    """Vehicle ``i`` of the fleet, with ``fault`` (a ``FAULTS`` name) if it carries one;
    ``vins`` holds the VINs already taken."""
    powertrain = draw_powertrain(seed, i, fault, powertrain_mix)
    models = MODELS_BY_POWERTRAIN[powertrain]
    r = random.Random(f"vehicle-{seed}-{i}")
    model = models[i % len(models)]
    vin = new_vin(r, model.vds, vins)
    v25 = round(r.uniform(*V25_RANGE), 4)
    home = (CITY[0] + r.uniform(-0.15, 0.15), CITY[1] + r.uniform(-0.25, 0.25))
    work_km = r.uniform(4, 30)
    work = offset_point(home, work_km, r.uniform(0, 2 * math.pi))
    avg_kmh = r.uniform(28, 55)
    cell_rng = random.Random(f"cells-{seed}-{i}")
    cell_spread = round(cell_rng.uniform(*CELL_SPREAD_MV_RANGE), 2)
    reports_cells = model.cells > 0 and (fault == "cell_drift"
                                         or cell_rng.random() < cell_report_fraction)
    thermal_rng = random.Random(f"thermal-{seed}-{i}")
    resistance = round(thermal_rng.uniform(*THERMAL_RESISTANCE_RANGE), 3)
    engine_rng = random.Random(f"engine-{seed}-{i}")
    fuel_pct = round(engine_rng.uniform(*FUEL_START_PCT), 1) if powertrain != "bev" else 0.0
    fuel_factor = round(engine_rng.uniform(*FUEL_FACTOR), 3)
    alternator = round(engine_rng.uniform(*ALTERNATOR_V_RANGE), 3) if powertrain == "ice" else 0.0
    # slow_leak starts from the tyre pressures, drawn below: it is drawn last.
    instance = (draw_fault(fault, r, start_ms,
                           {"v25_initial": v25, "cells": model.cells,
                            "cell_spread_mv": cell_spread,
                            "thermal_resistance_c_per_kw": resistance,
                            "powertrain": powertrain, "alternator_v": alternator})
                if fault and fault != "slow_leak" else None)
    spec = VehicleSpec(
        index=i, vin=vin, model=model.name, spec=model, home=home, work=work,
        commuter=r.random() < 0.8,
        commute_min=clamp(work_km * ROUTE_FACTOR / avg_kmh * 60, *TRIP_MIN),
        kwh_per_km=model.kwh_per_km * r.uniform(0.92, 1.1),
        # A hybrid holds its pack mid-range (charge-sustaining).
        v25_initial=v25, soc=min(r.uniform(45, 90), 70.0 if powertrain == "hev" else 100.0),
        odometer_m=r.uniform(5e6, 6e7),
        soh=round(r.uniform(88, 99), 2),
        tire_cold_kpa=(r.uniform(model.placard_kpa - 6, model.placard_kpa + 6),
                       r.uniform(model.placard_kpa - 6, model.placard_kpa + 6),
                       r.uniform(model.placard_kpa - 6, model.placard_kpa + 6),
                       r.uniform(model.placard_kpa - 6, model.placard_kpa + 6)),
        charge_below_soc=r.uniform(35, 55), charge_target_soc=r.choice((80.0, 85.0, 90.0)),
        home_kw=min(model.ac_kw, r.choice((7.4, 11.0))), fault=instance,
        reports_cells=reports_cells, cell_spread_mv=cell_spread,
        thermal_resistance=resistance, fuel_pct=fuel_pct, fuel_factor=fuel_factor,
        alternator_v=alternator,
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
