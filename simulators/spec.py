"""What the seed decides once: the car models and each vehicle's and charger's description.

Why it matters
--------------
Detectors must not assume one car's numbers: real fleets mix pack sizes, consumption,
charging power, tyre placards and cell counts, and every car has its own habits and its own
healthy baseline (12 V resting voltage, tyre pressures, cell spread, cooling). These are fixed
for the life of the run and written nowhere else: the device models read them from here, the
ground truth reports the injected fault from here.

Rules
-----
* Specs are frozen: what changes during a run lives in the run state (``simulators.state``,
  ``simulators.public_charging.ChargerRun``).
* ``MODELS`` holds every per-model number of the battery-electric models (pack, consumption,
  AC / DC charging power, the VIN's model descriptor, tyre placard, cells in series, mass);
  ``MODELS_BY_POWERTRAIN`` adds the plug-in hybrid, hybrid and combustion models (fuel use,
  tank). A car's model is ``MODELS_BY_POWERTRAIN[powertrain][index % len(...)]``, its
  powertrain drawn from the fleet's mix (``simulators.population``).
* The draws that fill a ``VehicleSpec`` / ``ChargerSpec`` are in ``simulators.population``.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.faults import FaultInstance, Powertrain
from simulators.geo import Point


@dataclass(frozen=True)
class ModelSpec:
    name: str
    capacity_kwh: float
    kwh_per_km: float
    ac_kw: float
    dc_kw: float
    vds: str  # VIN characters 4-8 of this model
    placard_kpa: float  # cold tyre pressure on the door placard (at 20 °C)
    cells: int  # traction-battery cells in series
    mass_kg: float
    powertrain: Powertrain = "bev"
    fuel_l_per_100km: float = 0.0  # with the engine running
    tank_l: float = 0.0


# The models differ in pack size, consumption, charging power, tyre placard (a heavy car runs
# its tyres harder), cell count and mass, as real fleets do.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("Aurora EV", 64.0, 0.17, 11.0, 120.0, "AE1B5", placard_kpa=250.0, cells=96,
              mass_kg=1950.0),
    ModelSpec("Borealis EV", 82.0, 0.20, 11.0, 150.0, "BE2C7", placard_kpa=280.0, cells=108,
              mass_kg=2250.0),
    ModelSpec("Cirrus EV", 52.0, 0.15, 7.4, 80.0, "CE3A1", placard_kpa=230.0, cells=88,
              mass_kg=1700.0),
)

# A plug-in hybrid drives electrically down to a floor of its small pack, then on its engine; a
# hybrid never plugs in and holds its pack mid-range; a combustion car has no traction battery
# (pack, consumption and charging power 0) and a 12 V alternator.
HYBRID_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("Delta PHEV", 14.0, 0.19, 7.4, 50.0, "DP4K2", placard_kpa=255.0, cells=96,
              mass_kg=1850.0, powertrain="phev", fuel_l_per_100km=6.0, tank_l=45.0),
    ModelSpec("Estuary Hybrid", 1.4, 0.0, 0.0, 0.0, "EH5M3", placard_kpa=240.0, cells=56,
              mass_kg=1450.0, powertrain="hev", fuel_l_per_100km=4.6, tank_l=43.0),
)
COMBUSTION_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("Fjord 1.5", 0.0, 0.0, 0.0, 0.0, "FC6N4", placard_kpa=235.0, cells=0,
              mass_kg=1300.0, powertrain="ice", fuel_l_per_100km=6.2, tank_l=50.0),
    ModelSpec("Glacier 2.0 TDI", 0.0, 0.0, 0.0, 0.0, "GD7P5", placard_kpa=265.0, cells=0,
              mass_kg=1600.0, powertrain="ice", fuel_l_per_100km=5.4, tank_l=60.0),
)
MODELS_BY_POWERTRAIN: dict[Powertrain, tuple[ModelSpec, ...]] = {
    "bev": MODELS,
    "phev": HYBRID_MODELS[:1],
    "hev": HYBRID_MODELS[1:],
    "ice": COMBUSTION_MODELS,
}


@dataclass(frozen=True)
class VehicleSpec:
    index: int
    vin: str
    model: str
    spec: ModelSpec
    home: Point
    work: Point
    commuter: bool
    commute_min: float
    kwh_per_km: float
    v25_initial: float
    soc: float
    odometer_m: float
    soh: float
    tire_cold_kpa: tuple[float, float, float, float]
    charge_below_soc: float
    charge_target_soc: float
    home_kw: float
    fault: FaultInstance | None = None
    reports_cells: bool = False  # CellPack signals (cell_drift cars + cell_report_fraction)
    cell_spread_mv: float = 0.0
    thermal_resistance: float = 0.6  # °C coolant rise per kW of traction power (healthy)
    fuel_pct: float = 0.0  # fuel level at the start (cars with an engine)
    fuel_factor: float = 1.0  # this car's fuel use against its model's
    alternator_v: float = 0.0  # combustion cars: the 12 V regulator's set point at 25 °C

    @property
    def powertrain(self) -> Powertrain:
        return self.spec.powertrain

    @property
    def has_engine(self) -> bool:
        return self.spec.powertrain != "bev"

    @property
    def has_traction_battery(self) -> bool:
        return self.spec.powertrain != "ice"

    @property
    def plugs_in(self) -> bool:
        return self.spec.powertrain in ("bev", "phev")


@dataclass(frozen=True)
class ChargerSpec:
    index: int
    charger_id: str
    dc: bool
    power_kw: float
    location: Point
    mean_gap_h: float  # between sessions of cars outside the fleet
    fault: FaultInstance | None = None
