"""Fault injection: the registry of injectable faults and the ``--faults`` spec parser.

Each fault is labelled: the simulator writes the ground truth (which asset, which fault, when it
started, when the asset would fail, the drawn parameters) so tests and ``ownercare backtest``
can score the detectors.

Adding a fault takes two steps:

1. here, a ``draw`` function that turns the asset's seeded RNG into a :class:`FaultInstance`
   (onset, analytic failure time, parameters) and a :class:`FaultSpec` entry in ``FAULTS``;
   ``parse_fault_spec``, ``assign_faults``, the CLI's error messages and the truth file pick
   it up from the registry;
2. in the device model (``simulators.vehicle``, ``simulators.charger`` and the modules they
   read), the part named in the spec's ``hook`` reads ``instance.params`` (e.g. the tyre model
   for ``slow_leak``, the charger session for ``charger_derating``). A spec is registered only
   with its hook in place, so the CLI never accepts a fault the fleet would silently ignore.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vocab.eventtime import DAY_MS, MINUTE_MS

# 12 V battery physics shared with the fleet model. The detector (diagnostics.battery12v) is
# written against the same physics but must not import it: the simulator is the ground truth.
FAILURE_V25 = 11.9  # below this resting voltage (at 25 °C) the car cannot wake its HV system
WEAK_12V_ONSET_DAYS = (0.0, 2.0)
WEAK_12V_RATE_V_PER_DAY = (0.02, 0.08)

# Codes a `dtc` fault sets (SAE J2012), with what they mean.
DTC_CODES: dict[str, str] = {
    "P0AA6": "hybrid/EV battery voltage system isolation fault",
    "C0035": "left front wheel speed sensor circuit",
    "P0A7F": "hybrid/EV battery pack deterioration",
    "U0100": "lost communication with the powertrain control module",
}
DTC_ONSET_DAYS = (0.5, 5.0)
DTC_FAILURE_AFTER_MS = 2 * DAY_MS

# Slow tyre leak: one wheel's cold (20 °C) pressure falls linearly from an onset in the first
# five days; the car's own TPMS warns at 25 % below the placard (the truth's failure).
PLACARD_KPA = 250.0
TPMS_WARNING_FRACTION = 0.75
SLOW_LEAK_ONSET_DAYS = (0.0, 5.0)
SLOW_LEAK_RATE_KPA_PER_DAY = (2.0, 8.0)
SLOW_LEAK_FLOOR_KPA = 60.0  # the tyre is flat; it stops falling here
# Traction-battery cell physics shared with the fleet model (diagnostics.cell_imbalance is
# written against the same physics without importing it). A self-discharging cell drifts below
# the others; when the max-min spread at rest reaches the BMS limit the BMS derates the pack.
BMS_SPREAD_LIMIT_MV = 100.0
CELL_DRIFT_ONSET_DAYS = (0.0, 5.0)
CELL_DRIFT_RATE_MV_PER_DAY = (2.5, 6.0)
# Drive-unit cooling physics shared with the fleet model (diagnostics.thermal is written
# against the same physics without importing it). The motor coolant sits above the traction
# pack's loop temperature by a fixed offset plus a rise proportional to the drive unit's heat
# load: ``rise = resistance * load_kw`` (°C per kW of traction power). A failing coolant pump
# moves less coolant, so the resistance grows: ``resistance * (1 + growth * days)``. The drive
# unit derates when its coolant reaches ``COOLANT_DERATE_C``; the truth's failure is when that
# happens at the reference condition, a sustained motorway load on a hot day, where the pack
# sits at ``REF_AMBIENT_C + PACK_RISE_C`` and takes ``PACK_LOAD_SHARE`` of the rise too.
COOLANT_DERATE_C = 90.0
COOLANT_OFFSET_C = 3.0
PACK_RISE_C = 12.0  # pack above ambient when its thermal management is not heating it
PACK_LOAD_SHARE = 0.15
REF_AMBIENT_C = 30.0
REF_LOAD_KW = 25.0  # about 130 km/h on the flat, or a long climb
COOLANT_PUMP_ONSET_DAYS = (0.0, 5.0)
COOLANT_PUMP_GROWTH_PER_DAY = (0.05, 0.15)

# Silence: the telematics unit of a car (or a charger's controller/link) stops sending at an
# onset in the first five days. The asset itself keeps living (the car is driven, charges); only
# its messages stop. The truth's ``failure_ts`` is the onset itself: from then on care staff are
# blind to the asset, so the alert cannot come early; it is scored on its detection delay.
SILENT_ONSET_DAYS = (0.5, 5.0)

# Charger derating (thermal foldback): the power stage's cooling is failing, so a few minutes
# into every session its controller folds the current back to a fraction of what the car draws
# (the charger still reports its rating as ``Power.Offered``). The fraction drops at the onset
# and keeps falling; below ``DERATING_USEFUL_FRACTION`` a session no longer delivers a useful
# share of the energy a car expects in its time there (the truth's failure).
DERATING_ONSET_DAYS = (0.0, 5.0)
DERATING_INITIAL_FRACTION = (0.65, 0.85)
DERATING_RATE_PER_DAY = (0.02, 0.05)
DERATING_USEFUL_FRACTION = 0.3
DERATING_FOLDBACK_AFTER_MS = 5 * MINUTE_MS  # minutes of load before the stage is too hot
# Charging faults: from the onset a share of sessions ends abnormally, rising linearly; when
# every session fails the asset is out of service (the truth's failure). The error codes
# overlap on purpose: a GroundFailure or ConnectorLockFailure can be the charger's or the car's
# (the residual-current device trips on the car's on-board charger too), so only the cross
# pattern over the fleet tells who is at fault.
CHARGE_FAULT_ONSET_DAYS = (0.0, 5.0)
CHARGER_FAULT_INITIAL_PROB = (0.15, 0.35)
CHARGER_FAULT_PROB_PER_DAY = (0.04, 0.10)
CHARGER_FAULT_CODES = ("GroundFailure", "HighTemperature", "PowerMeterFailure",
                       "ConnectorLockFailure")
INLET_FAULT_INITIAL_PROB = (0.3, 0.5)
INLET_FAULT_PROB_PER_DAY = (0.03, 0.06)
INLET_FAULT_CODES = ("EVCommunicationError", "ConnectorLockFailure", "GroundFailure")
# Charging system of a combustion car (alternator and its regulator), shared with the fleet
# model (diagnostics.alternator is written against the same physics without importing it).
# While the engine runs the regulator holds the 12 V bus at its set point (13.9-14.5 V at
# 25 °C); a battery charged at a bus voltage V settles at a resting voltage of at most
# ``V - CHARGE_HEADROOM_V``. A wearing regulator or alternator (brushes, a diode) lets the set
# point sag 0.06-0.15 V/day from an onset in the first five days; once the battery can no
# longer be charged above the no-start level (``FAILURE_V25``: bus at FAILURE_V25 + headroom)
# the car will not crank after its next stop (the truth's failure).
ALTERNATOR_V_RANGE = (13.9, 14.5)
CHARGE_HEADROOM_V = 0.55
ALTERNATOR_ONSET_DAYS = (0.0, 5.0)
ALTERNATOR_RATE_V_PER_DAY = (0.06, 0.15)

Asset = Literal["vehicle", "charger"]
# A car's powertrain: battery-electric, plug-in hybrid, (self-charging) hybrid, combustion.
Powertrain = Literal["bev", "phev", "hev", "ice"]
POWERTRAINS: tuple[Powertrain, ...] = ("bev", "phev", "hev", "ice")
TRACTION_BATTERY: frozenset[Powertrain] = frozenset({"bev", "phev", "hev"})


@dataclass(frozen=True)
class FaultInstance:
    """One injected fault on one asset: what the device model follows and the truth reports."""

    name: str
    onset_ts: int
    failure_ts: int | None
    params: Mapping[str, Any] = field(default_factory=dict)


# draw(rng, start_ms, context) -> FaultInstance; ``context`` holds the asset's healthy
# parameters the fault starts from (e.g. ``v25_initial`` for the 12 V battery).
Draw = Callable[[random.Random, int, Mapping[str, Any]], FaultInstance]


@dataclass(frozen=True)
class FaultSpec:
    name: str
    asset: Asset
    description: str
    draw: Draw
    hook: str  # the device-model part that follows the fault (documentation: simulators.*)
    # The alert type a detector raises for this fault on the faulty asset: how back-tests
    # and ``ownercare eval`` match alerts with the ground truth.
    alert_type: str = ""
    # "lead": scored on the time between the first alert and ``failure_ts`` (alerts after the
    # failure are misses); "delay": on the time from the onset to the first alert (the fault
    # cannot be seen before it happens; an alert before the onset is a false alarm).
    scored_by: Literal["lead", "delay"] = "lead"
    # The powertrains a vehicle fault can happen on (the fleet puts it on such a car only).
    powertrains: frozenset[Powertrain] = frozenset(POWERTRAINS)


def _draw_weak_12v(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*WEAK_12V_ONSET_DAYS) * DAY_MS)
    rate = round(rng.uniform(*WEAK_12V_RATE_V_PER_DAY), 4)
    v25 = float(ctx["v25_initial"])
    return FaultInstance("weak_12v", onset, weak_12v_failure_ts(onset, v25, rate),
                         {"rate_v_per_day": rate, "v25_initial": v25})


def weak_12v_failure_ts(onset_ts: int, v25_initial: float, rate_v_per_day: float) -> int:
    """When V25 = v25_initial - rate * days_since_onset reaches FAILURE_V25 (analytic)."""
    return onset_ts + int((v25_initial - FAILURE_V25) / rate_v_per_day * DAY_MS)


def _draw_dtc(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*DTC_ONSET_DAYS) * DAY_MS)
    # A car without a traction battery cannot set the hybrid/EV battery codes (P0A..).
    codes = (DTC_CODES if ctx.get("powertrain", "bev") in TRACTION_BATTERY
             else {c: m for c, m in DTC_CODES.items() if not c.startswith("P0A")})
    code = rng.choice(sorted(codes))
    return FaultInstance("dtc", onset, onset + DTC_FAILURE_AFTER_MS,
                         {"code": code, "meaning": DTC_CODES[code]})


def _draw_slow_leak(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]
                    ) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*SLOW_LEAK_ONSET_DAYS) * DAY_MS)
    rate = round(rng.uniform(*SLOW_LEAK_RATE_KPA_PER_DAY), 3)
    wheel = rng.randrange(4)
    cold = float(ctx["tire_cold_kpa"][wheel])
    placard = float(ctx.get("placard_kpa", PLACARD_KPA))
    return FaultInstance("slow_leak", onset,
                         slow_leak_failure_ts(onset, cold, rate, placard),
                         {"wheel": wheel, "rate_kpa_per_day": rate, "cold_kpa_initial": cold,
                          "placard_kpa": placard})


def slow_leak_failure_ts(onset_ts: int, cold_kpa: float, rate_kpa_per_day: float,
                         placard_kpa: float) -> int:
    """When the leaking wheel's cold pressure reaches the TPMS warning level (analytic)."""
    margin = max(0.0, cold_kpa - TPMS_WARNING_FRACTION * placard_kpa)
    return onset_ts + int(margin / rate_kpa_per_day * DAY_MS)


def _draw_cell_drift(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]
                     ) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*CELL_DRIFT_ONSET_DAYS) * DAY_MS)
    rate = round(rng.uniform(*CELL_DRIFT_RATE_MV_PER_DAY), 3)
    cells = int(ctx.get("cells", 96))
    cell = rng.randrange(cells)
    base = float(ctx.get("cell_spread_mv", 12.0))
    return FaultInstance("cell_drift", onset, cell_drift_failure_ts(onset, base, rate),
                         {"rate_mv_per_day": rate, "cell": cell, "base_spread_mv": base})


def cell_drift_failure_ts(onset_ts: int, base_spread_mv: float, rate_mv_per_day: float) -> int:
    """When the resting spread (25 °C, mid SoC) base + rate * days reaches the BMS limit."""
    return onset_ts + int((BMS_SPREAD_LIMIT_MV - base_spread_mv) / rate_mv_per_day * DAY_MS)


def _draw_silent(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*SILENT_ONSET_DAYS) * DAY_MS)
    return FaultInstance("silent", onset, onset, {})


def _draw_charger_silent(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]
                         ) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*SILENT_ONSET_DAYS) * DAY_MS)
    return FaultInstance("charger_silent", onset, onset, {})


def _draw_charger_derating(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]
                           ) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*DERATING_ONSET_DAYS) * DAY_MS)
    f0 = round(rng.uniform(*DERATING_INITIAL_FRACTION), 3)
    rate = round(rng.uniform(*DERATING_RATE_PER_DAY), 4)
    return FaultInstance("charger_derating", onset, charger_derating_failure_ts(onset, f0, rate),
                         {"initial_fraction": f0, "rate_per_day": rate})


def derating_fraction(fault: FaultInstance, ts: int) -> float:
    """The share of the car's draw a derating charger delivers after foldback at ``ts``."""
    if ts < fault.onset_ts:
        return 1.0
    days = (ts - fault.onset_ts) / DAY_MS
    return max(0.05, float(fault.params["initial_fraction"])
               - float(fault.params["rate_per_day"]) * days)


def charger_derating_failure_ts(onset_ts: int, initial_fraction: float,
                                rate_per_day: float) -> int:
    """When the delivered fraction reaches ``DERATING_USEFUL_FRACTION`` (analytic)."""
    return onset_ts + int((initial_fraction - DERATING_USEFUL_FRACTION) / rate_per_day * DAY_MS)


def _draw_session_faults(name: str, initial: tuple[float, float], per_day: tuple[float, float],
                         codes: tuple[str, ...]) -> Draw:
    def draw(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]) -> FaultInstance:
        onset = start_ms + int(rng.uniform(*CHARGE_FAULT_ONSET_DAYS) * DAY_MS)
        p0 = round(rng.uniform(*initial), 3)
        rate = round(rng.uniform(*per_day), 4)
        return FaultInstance(name, onset, session_fault_failure_ts(onset, p0, rate),
                             {"initial_prob": p0, "prob_per_day": rate, "codes": list(codes)})
    return draw


def session_fault_prob(fault: FaultInstance, ts: int) -> float:
    """The probability that a session starting at ``ts`` ends abnormally."""
    if ts < fault.onset_ts:
        return 0.0
    days = (ts - fault.onset_ts) / DAY_MS
    return min(1.0, float(fault.params["initial_prob"])
               + float(fault.params["prob_per_day"]) * days)


def session_fault_failure_ts(onset_ts: int, initial_prob: float, prob_per_day: float) -> int:
    """When every session fails (analytic): the asset is out of service."""
    return onset_ts + int((1.0 - initial_prob) / prob_per_day * DAY_MS)


def _draw_coolant_pump(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]
                       ) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*COOLANT_PUMP_ONSET_DAYS) * DAY_MS)
    growth = round(rng.uniform(*COOLANT_PUMP_GROWTH_PER_DAY), 4)
    resistance = float(ctx["thermal_resistance_c_per_kw"])
    return FaultInstance("coolant_pump", onset,
                         coolant_pump_failure_ts(onset, resistance, growth),
                         {"growth_per_day": growth, "resistance_c_per_kw": resistance})


def reference_coolant_c(resistance_c_per_kw: float) -> float:
    """Steady motor-coolant temperature at the reference load on a hot day."""
    rise = resistance_c_per_kw * REF_LOAD_KW
    return REF_AMBIENT_C + PACK_RISE_C + COOLANT_OFFSET_C + (1 + PACK_LOAD_SHARE) * rise


def coolant_pump_failure_ts(onset_ts: int, resistance_c_per_kw: float,
                            growth_per_day: float) -> int:
    """When the reference coolant temperature, its rise growing ``1 + growth * days``, reaches
    the derate limit (analytic)."""
    healthy = reference_coolant_c(resistance_c_per_kw)
    base = REF_AMBIENT_C + PACK_RISE_C + COOLANT_OFFSET_C
    factor = (COOLANT_DERATE_C - base) / (healthy - base)
    return onset_ts + int(max(0.0, factor - 1.0) / growth_per_day * DAY_MS)


def _draw_alternator(rng: random.Random, start_ms: int, ctx: Mapping[str, Any]
                     ) -> FaultInstance:
    onset = start_ms + int(rng.uniform(*ALTERNATOR_ONSET_DAYS) * DAY_MS)
    rate = round(rng.uniform(*ALTERNATOR_RATE_V_PER_DAY), 4)
    set_v = float(ctx["alternator_v"])
    return FaultInstance("alternator", onset, alternator_failure_ts(onset, set_v, rate),
                         {"rate_v_per_day": rate, "alternator_v": set_v})


def alternator_v(fault: FaultInstance | None, set_v: float, ts: int) -> float:
    """The regulator's set point at 25 °C at ``ts`` (sagging from the onset of a fault)."""
    if fault is None or fault.name != "alternator" or ts <= fault.onset_ts:
        return set_v
    return set_v - float(fault.params["rate_v_per_day"]) * (ts - fault.onset_ts) / DAY_MS


def alternator_failure_ts(onset_ts: int, set_v: float, rate_v_per_day: float) -> int:
    """When the set point reaches ``FAILURE_V25 + CHARGE_HEADROOM_V`` (analytic): from then
    on a drive can no longer charge the battery above the no-start level."""
    margin = max(0.0, set_v - FAILURE_V25 - CHARGE_HEADROOM_V)
    return onset_ts + int(margin / rate_v_per_day * DAY_MS)


FAULTS: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec(
            "weak_12v", "vehicle",
            "12 V battery losing capacity: resting voltage declines 0.02-0.08 V/day from an "
            "onset in the first two days until the car cannot wake (V25 = 11.9 V)",
            _draw_weak_12v, "physics.battery12v.Battery12V (fault_onset, fault_rate_v_per_day)",
            "weak_12v_battery",
        ),
        FaultSpec(
            "dtc", "vehicle",
            "the car sets a diagnostic trouble code at its first report after an onset in the "
            "first five days; left alone, the fault stops the car two days later",
            _draw_dtc, "state.VehicleRun.dtc_pending (vehicle.VehicleSim.due_dtc)", "dtc",
        ),
        FaultSpec(
            "slow_leak", "vehicle",
            "one tyre loses 2-8 kPa/day (at 20 °C) from an onset in the first five days until "
            "the car's own low-pressure warning at 25 % below the placard",
            _draw_slow_leak, "physics.tyres.cold_pressures (tyre model of VehicleSim.drive)",
            "slow_tyre_leak",
        ),
        FaultSpec(
            "cell_drift", "vehicle",
            "one traction-battery cell self-discharges: from an onset in the first five days "
            "it drifts 2.5-6 mV/day below the pack until the max-min cell spread at rest "
            "reaches the BMS limit (100 mV at 25 °C, mid SoC) and the BMS derates the car",
            _draw_cell_drift, "physics.cells.CellPack (drift_*)", "cell_imbalance",
            powertrains=TRACTION_BATTERY,
        ),
        FaultSpec(
            "silent", "vehicle",
            "the car's telematics unit stops sending at an onset in the first five days (the "
            "car itself keeps being driven and charged); failure_ts = onset, scored on the "
            "detection delay",
            _draw_silent, "stream.silenced (the car's stream ends at the onset)",
            "vehicle_silent", "delay",
        ),
        FaultSpec(
            "charger_silent", "charger",
            "the charger stops its heartbeats, status and meter messages at an onset in the "
            "first five days (cars may still charge there); failure_ts = onset, scored on the "
            "detection delay",
            _draw_charger_silent, "stream.silenced (the charger's stream ends at the onset)",
            "charger_silent", "delay",
        ),
        FaultSpec(
            "charger_derating", "charger",
            "thermal foldback: from an onset in the first five days, five minutes into every "
            "session the charger delivers only 65-85 % of what the car draws, falling "
            "0.02-0.05 per day, until it delivers less than 30 % (no longer useful)",
            _draw_charger_derating, "public_charging.apply_charger_fault (ChargeSession.fold_*)",
            "charger_derating",
        ),
        FaultSpec(
            "charger_fault", "charger",
            "from an onset in the first five days 15-35 % of the charger's sessions end "
            "Faulted with a charger error code (GroundFailure, HighTemperature, "
            "PowerMeterFailure, ConnectorLockFailure), rising 4-10 points a day until every "
            "session fails (out of service); as often a start-up step has to be repeated",
            _draw_session_faults("charger_fault", CHARGER_FAULT_INITIAL_PROB,
                                 CHARGER_FAULT_PROB_PER_DAY, CHARGER_FAULT_CODES),
            "public_charging.apply_charger_fault (ChargeSession.fault_code)", "charger_fault",
        ),
        FaultSpec(
            "inlet_fault", "vehicle",
            "the car's charging inlet / on-board charger: from an onset in the first five days "
            "30-50 % of its public sessions end abnormally at whatever charger it uses "
            "(EVCommunicationError, ConnectorLockFailure, GroundFailure), rising 3-6 points a "
            "day until it cannot charge, and as often a start-up step (pilot, lock, isolation "
            "check) has to be repeated, so sessions take longer to start; the car has no "
            "home wallbox and charges publicly at most arrivals away from home, so it meets "
            "several chargers (and, like every "
            "driver whose session failed, retries at another charger before driving off)",
            _draw_session_faults("inlet_fault", INLET_FAULT_INITIAL_PROB,
                                 INLET_FAULT_PROB_PER_DAY, INLET_FAULT_CODES),
            "booking.reserve / plug_in (ChargeSession.fault_code)", "charging_inlet_fault",
            powertrains=frozenset({"bev"}),
        ),
        FaultSpec(
            "coolant_pump", "vehicle",
            "the drive unit's coolant pump wears: from an onset in the first five days the "
            "coolant's rise above the pack under load grows 5-15 %/day until, at a sustained "
            "motorway load on a 30 °C day, the coolant would reach the derate limit (90 °C)",
            _draw_coolant_pump, "physics.thermal.Thermal (coolant model of VehicleSim.drive)",
            "thermal", powertrains=frozenset({"bev"}),
        ),
        FaultSpec(
            "alternator", "vehicle",
            "a combustion car's charging system wears (regulator, brushes, a diode): from an "
            "onset in the first five days the charging voltage while the engine runs sags "
            "0.06-0.15 V/day from its 13.9-14.5 V set point, each drive charges the 12 V "
            "battery less, until a drive can no longer charge it above the no-start level "
            "(the set point at 11.9 + 0.55 V) and the car will not crank after its next stop",
            _draw_alternator, "physics.alternator (charging_v, settle_v25 in VehicleSim.drive)",
            "charging_system", powertrains=frozenset({"ice"}),
        ),
    )
}


def parse_fault_spec(spec: str | None, vehicles: int | None = None,
                     chargers: int | None = None) -> dict[str, int]:
    """Parse ``weak_12v:3,dtc:2``; raise ValueError naming what is wrong.

    With ``vehicles`` / ``chargers`` given, also check that the fleet has enough assets of each
    kind (every asset carries at most one fault).
    """
    counts: dict[str, int] = {}
    if not spec:
        return counts
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, count_text = (p.strip() for p in part.partition(":"))
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}")
        if not sep:
            raise ValueError(f"fault {name!r} needs a count, e.g. {name}:3")
        try:
            count = int(count_text)
        except ValueError:
            raise ValueError(f"count of fault {name!r} must be an integer, got {count_text!r}"
                             ) from None
        if count < 0:
            raise ValueError(f"count of fault {name!r} must be >= 0, got {count}")
        if name in counts:
            raise ValueError(f"fault {name!r} is given twice")
        counts[name] = count
    for kind, available in (("vehicle", vehicles), ("charger", chargers)):
        if available is None:
            continue
        wanted = sum(c for n, c in counts.items() if FAULTS[n].asset == kind)
        if wanted > available:
            names = "+".join(f"{n}:{c}" for n, c in counts.items() if FAULTS[n].asset == kind)
            raise ValueError(f"{wanted} {kind} faults requested ({names}) but the fleet has only "
                             f"{available} {kind}s (each {kind} carries at most one fault)")
    return counts


def assign_faults(
    counts: Mapping[str, int], vehicles: int, chargers: int, rng: random.Random
) -> tuple[dict[int, str], dict[int, str]]:
    """Pick which vehicles / chargers get which fault (disjoint), deterministically."""
    vehicle_pool = rng.sample(range(vehicles), vehicles)
    charger_pool = rng.sample(range(chargers), chargers)
    by_vehicle: dict[int, str] = {}
    by_charger: dict[int, str] = {}
    for name in sorted(counts):
        pool, target = ((vehicle_pool, by_vehicle) if FAULTS[name].asset == "vehicle"
                        else (charger_pool, by_charger))
        for _ in range(counts[name]):
            if not pool:
                raise ValueError(f"not enough {FAULTS[name].asset}s for fault {name!r}")
            target[pool.pop()] = name
    return by_vehicle, by_charger


def draw_fault(name: str, rng: random.Random, start_ms: int,
               context: Mapping[str, Any]) -> FaultInstance:
    return FAULTS[name].draw(rng, start_ms, context)
