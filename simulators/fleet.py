"""A deterministic simulated fleet of EVs and chargers (pure: no I/O, no wall clock).

``Fleet.messages()`` yields ``(ts_ms, topic, payload)`` in non-decreasing simulated time, built
with the contract module, byte-identical for the same arguments (every call replays the same
stream). Each device is a generator walking its own timeline; ``heapq.merge`` interleaves them.
Simulated time is the region's local time (the daily routine and the weather read the clock
of ``ts`` directly).

Vehicles
    A home, a workplace (80 % commute), a model (``MODELS``) and habits drawn from the seed.
    Weekdays: commute out 06:30-09:00 and back 16:00-18:30 (10-60 min each), sometimes an
    evening errand; weekends / non-commuters: an outing (out and back) or one round trip;
    ~10 % of days the car stays put, and now and then (1.5 % of days) an absence of 2-5 days
    starts (the car sleeps where it is). While driving, telemetry every ``drive_interval_s``:
    speed (ramp up, AR(1) noise, traffic stops), odometer integrated from that speed, 12 V at
    the DC-DC's 13.6-14.4 V, SoC falling with distance (more in the cold), traction battery and
    coolant temperatures, the four tyre pressures (Gay-Lussac on a warming tyre), air
    temperature, location. Parked, a smaller report every ``parked_interval_s``. Events:
    ignition ON / OFF, ``trip_end`` (distance, duration, energy), ``charge_start`` /
    ``charge_end``, ``dtc`` and ``crank`` (a failed start). About 1 % of telemetry messages
    miss one signal and 0.5 % are lost entirely (their ``seq`` is spent, as on a real link).
Charging
    At home when the car arrives with SoC below its habit threshold (~35-55 %), until its target.
    At a public charger when the car arrives at work or an outing with SoC below ~30 % (or
    now and then anyway) and a charger is free before it leaves: the charger then reports the
    session (OCPP StatusNotification Preparing -> Charging -> Finishing -> Available and
    MeterValues every ``drive_interval_s`` with the VIN), and the car reports ``IsCharging``
    with the same SoC curve. Chargers also serve cars outside the fleet (no VIN) and send an
    ``Available`` heartbeat every ``parked_interval_s`` while idle.
Charging faults (their draws come from RNGs of their own, so every other draw is unchanged)
    A fault shapes a session when it is booked (fleet car) or begins (walk-in), so the car and
    the charger see the same session. ``charger_derating``: five minutes into each session
    after the onset the charger delivers only ``derating_fraction`` of what the car draws (the
    SoC, energy and the car's ``ChargeRate`` follow; DC chargers report a hotter stage;
    ``Power.Offered`` stays the rating). ``charger_fault``: with ``session_fault_prob`` a
    session ends early (2-50 % of its planned length) ``Faulted`` with one of the fault's
    error codes; the connector is ``Available`` again when the car leaves.
    ``inlet_fault``: the same for the faulty car's sessions at any charger
    (``EVCommunicationError`` ends as ``Finishing`` with the code, the others ``Faulted``). So
    that the fleet sees such a car at several chargers, it has no home wallbox and charges
    publicly at 70 % of its arrivals away from home (``INLET_FAULT_PUBLIC_PROB``; healthy
    cars: 4 %, or below 30 % SoC); its home sessions are not simulated as failing. A
    session cut short is unplugged 1-5 minutes after it stopped (the driver's app says so).
    Both faults also slow the start-up of every session on the worn side (``Preparing`` lasts
    longer before ``Charging``): a start-up step fails as often as the fault's sessions fail
    and is repeated, up to 3 times, 15-30 s each (``_startup_ms``; healthy equipment repeats
    one step in 2 % of sessions, and each charger has its own pace, 6-14 s AC, 20-40 s DC).
Retries (fleet cars; draws from the car's own ``charge-retry`` RNG, so a fleet without
charging faults is unchanged to the byte)
    A driver whose public session ends abnormally and who still needs charge does not drive
    off: if the SoC is still 5 points below the target and a session of at least 10 minutes
    (``RETRY_MIN_SESSION_MS``; a booking on arrival wants 15) fits before the next departure,
    they try again, at most ``MAX_RETRIES_PER_STOP`` (2) times per stop. Mostly at another
    charger (not one that already failed at this stop): the one where they can plug in
    soonest, counting the short drive there (1.3 x the straight distance at
    ``RETRY_HOP_KMH``, plus 2-5 minutes to park); ``SAME_CHARGER_RETRY_PROB`` (15 %) re-plug
    at the same charger 1-3 minutes after unplugging. The retry is booked when the failed
    session ends, under the coupling rule below, and faults shape it like any session. The
    short hop is not reported as a trip (no ignition, no telemetry while moving): the car
    reports from the next charger. Walk-in cars (no VIN) do not retry here.
Coupling
    A car books a charger only from the charger's committed time on (``committed_until``: the
    timestamp of the message the charger's generator has already handed to the merge), so the
    charger always learns of a session before its own clock reaches it. Devices run unbounded;
    ``messages(until_ms)`` cuts the merged stream, so a shorter run is exactly a prefix of a
    longer one.
Weather
    Ambient temperature = seasonal mean (about -0.5 °C mid-January, 19.5 °C mid-July) + a
    mean-reverting daily random walk with occasional multi-day cold snaps + a daily cycle
    (coldest 05:00, warmest 15:00, amplitude 5 °C).

12 V battery (lead-acid / AGM) physics, the ground truth the 12 V detector is scored against:

* healthy resting open-circuit voltage at 25 °C, ``V25``, drawn in [12.55, 12.80] V;
* measured resting voltage ``V25 + 0.0025 * (T_battery - 25)``; the battery temperature follows
  ambient with a 3 h first-order lag (ambient + 3 °C while driving);
* while ON the DC-DC converter charges: 13.6-14.4 V; after key-off the surface charge decays:
  ``V_rest + 0.35 * exp(-t / 1 h)``; charging the traction battery does not touch the 12 V;
* parked, a parasitic drain lowers V25 by 0.005 V/day, restored by the next drive; when the
  resting voltage falls below 12.35 V the parked car wakes its DC-DC for a 30 min top-up
  (14.0 V, +5 A, still OFF), at most once a day, which also restores the drain; the surface
  charge decay restarts at the end of the top-up;
* Gaussian measurement noise, sigma 0.015 V, on every 12 V reading;
* fault ``weak_12v``: from an onset in the first two days V25 declines linearly at 0.02-0.08
  V/day (not restored by drives or top-ups); at ``FAILURE_V25`` (the truth's ``failure_ts``)
  the car can no longer wake: it never drives, charges or tops up again, reports one failed
  ``crank`` event at its next planned departure and keeps reporting from where it is parked,
  its voltage still falling (V25 floored at 10.5 V, a flat battery);
* a bad OTA release (``Fleet.bad_release_since``, set when a car installs a release the
  simulator marks bad): from the install on, a module stays awake while parked, so the
  parked drain is ``BAD_RELEASE_DRAIN_V_PER_DAY`` faster and the parked current
  ``BAD_RELEASE_PARKED_CURRENT_A`` (drives and top-ups still restore the charge);
* fault ``dtc``: at its first transmission after an onset in the first five days the car
  reports a trouble code (``DTC_CODES``); ignored, it would stop the car two days later.

Tyres: each wheel's pressure at 20 °C (``tire_cold_kpa``) is set around the model's placard
(250, 280 or 230 kPa, ``ModelSpec.placard_kpa``; +/- 6 kPa per wheel); while driving the tyres
warm by up to 10 °C above ambient and the reported pressure follows Gay-Lussac, noise sigma 0.5
kPa (0.3 °C on the tyre temperature). Fault ``slow_leak``: from an onset in the first five days
one wheel's 20 °C pressure falls 2-8 kPa/day (floored at ``SLOW_LEAK_FLOOR_KPA``); the truth's
``failure_ts`` is when it reaches the car's own TPMS warning, 25 % below the placard. The car
keeps driving.

Traction-battery cells (``CellPack``), reported only by cars with the ``cell_drift`` fault and
by the healthy share ``cell_report_fraction`` of the fleet (0 by default, so the stream of
every other car is unchanged): ``CellVoltage.Min/Max/IdMin/IdMax`` in every telemetry message.

* ``CELLS_BY_MODEL`` cells in series; open-circuit cell voltage ``3.0 + 1.2 * SoC / 100`` V;
* the healthy resting spread (max - min) at 25 °C and mid SoC is drawn in 8-16 mV; it widens
  where the OCV curve is steep (below 20 % SoC up to x3.5, above 95 % up to x2.5), in the cold
  (x ``1 + 0.03 * (15 - T)`` below 15 °C, T the lagged pack temperature), under load while
  driving (+5-25 mV, cell resistances differ) and while charging (+3-15 mV); BMS readings
  carry 1.5 mV noise and mV resolution; the lowest cell is one of three "weakest" cells of
  that pack 60 % of the time, otherwise any cell;
* fault ``cell_drift``: from its onset one cell self-discharges, the spread at reference
  conditions growing ``rate_mv_per_day`` (2.5-6); that cell is the pack's minimum once its
  drift exceeds half the healthy spread; the truth's ``failure_ts`` is when the reference
  spread reaches the BMS limit (``BMS_SPREAD_LIMIT_MV`` = 100 mV) and the BMS would derate
  the car (the simulated car keeps driving: the detector is scored on the lead time).

Drive-unit cooling (``Thermal``), the ground truth the thermal detector is scored against:

* the traction pack's loop temperature (``hv``) follows ``max(ambient + 12, 22)`` °C while
  driving (1 h lag; the thermal management heats a cold pack) and ambient while parked (8 h);
* the drive unit's heat load is the traction power at the wheels (``road_load_kw``: rolling
  resistance, air drag, and the grade; abs, since regeneration heats it too), lagged 4 min;
  30 % of trips are hilly (a 1-4 % grade rising and falling every 3-15 min, from the car's own
  ``thermal-run`` RNG), which adds heat the speed does not show;
* the coolant rises above the pack by ``COOLANT_OFFSET_C`` + ``resistance * load`` (the
  resistance drawn per car in 0.45-0.75 °C/kW), lagging 5 min from a cold loop at each drive's
  start; the pack takes ``PACK_LOAD_SHARE`` of that rise too; noise 0.5 / 0.3 °C;
* while charging the car also reports its pack temperature, heated by the charge power
  (150 kW DC: about +20 °C), kept apart from ``hv`` so the drives are unchanged by it;
* fault ``coolant_pump``: from an onset in the first five days the load-driven rise grows by
  ``1 + growth * days`` (5-15 %/day); the truth's ``failure_ts`` is when the coolant at the
  reference condition (30 °C, 25 kW sustained) reaches the derate limit, 90 °C
  (``simulators.faults.coolant_pump_failure_ts``). The simulated car keeps driving.

All of this changes only the two temperature signals of the existing fleet's stream (every
other signal, event and timestamp is as before: no draw of the existing RNGs moved).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import takewhile
from operator import itemgetter
from typing import Any

import orjson

from ingest.contract import TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS, Kind, topic_for
from simulators.faults import (
    COOLANT_OFFSET_C,
    DERATING_FOLDBACK_AFTER_MS,
    FAILURE_V25,
    PACK_LOAD_SHARE,
    PLACARD_KPA,
    SLOW_LEAK_FLOOR_KPA,
    FaultInstance,
    assign_faults,
    derating_fraction,
    draw_fault,
    session_fault_prob,
)

SECOND_MS = 1000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
NEVER = 2**62
DEFAULT_START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday

# 12 V battery physics (see the module docstring; diagnostics/battery12v.py follows the same).
V25_RANGE = (12.55, 12.80)
TEMP_COEFF_V_PER_C = 0.0025
SURFACE_CHARGE_V = 0.35
SURFACE_TAU_MS = HOUR_MS
DCDC_V_RANGE = (13.6, 14.4)
TOPUP_BELOW_V = 12.35
TOPUP_MS = 30 * MINUTE_MS
TOPUP_V = 14.0
TOPUP_A = 5.0
TOPUP_MIN_GAP_MS = DAY_MS
DRAIN_V_PER_DAY = 0.005
NOISE_V = 0.015
BATTERY_LAG_MS = 3 * HOUR_MS
DRIVING_WARMUP_C = 3.0
PARKED_CURRENT_A = -0.05
DEAD_V25_FLOOR = 10.5
# A bad OTA release keeps a control unit awake while parked: ~1.2 A instead of the 0.05 A of
# a sleeping car, about 0.8 V/day off a 60 Ah battery's resting voltage (until the daily
# top-up). Two days of soak then show in the fleet's 12 V resting voltage (about -0.15 V on
# average, with drives recharging daily; the regression stop wants >= 0.10 V).
BAD_RELEASE_DRAIN_V_PER_DAY = 0.8
BAD_RELEASE_PARKED_CURRENT_A = -1.2

# Traction-battery cells (CellPack; see the module docstring).
CELLS_BY_MODEL = {"Aurora EV": 96, "Borealis EV": 108, "Cirrus EV": 88}
CELL_SPREAD_MV_RANGE = (8.0, 16.0)
CELL_NOISE_MV = 1.5

# Drive-unit cooling (``Thermal``; see the module docstring and simulators.faults).
MASS_KG_BY_MODEL = {"Aurora EV": 1950.0, "Borealis EV": 2250.0, "Cirrus EV": 1700.0}
CDA_M2 = 0.62
ROLLING_COEFF = 0.011
THERMAL_RESISTANCE_RANGE = (0.45, 0.75)  # °C of coolant rise per kW of traction power
LOAD_TAU_MS = 4 * MINUTE_MS  # the drive unit's thermal mass smooths the load
COOLANT_TAU_MS = 5 * MINUTE_MS  # the coolant's rise above the pack follows it
HILLY_TRIP_PROB = 0.3
HILL_GRADE_RANGE = (0.01, 0.04)
HILL_PERIOD_MIN = (3.0, 15.0)
CHARGE_HEAT_C_PER_KW = 0.13  # pack heating while charging: 150 kW DC about +20 °C
CHARGE_HEAT_TAU_MS = 30 * MINUTE_MS

# Routine.
IDLE_DAY_PROB = 0.10
AWAY_START_PROB = 0.015
AWAY_DAYS = (2, 5)
TRIP_MIN = (10.0, 60.0)
RAMP_MS = 2 * MINUTE_MS
TRAFFIC_STOP_PROB = 0.05
# Gaps: a signal missing from a message, or a whole telemetry message lost on the way.
MISSING_SIGNAL_PROB = 0.01
LOST_MESSAGE_PROB = 0.005

# Weather.
DAILY_AMPLITUDE_C = 5.0
COLDEST_HOUR, WARMEST_HOUR = 5.0, 15.0

# Charging.
CHARGE_EFFICIENCY = 0.92
PUBLIC_BELOW_SOC = 30.0
PUBLIC_ANYWAY_PROB = 0.04
INLET_FAULT_PUBLIC_PROB = 0.7  # cars with an inlet fault have no wallbox: public most days
PUBLIC_MIN_SESSION_MS = 15 * MINUTE_MS
PUBLIC_MAX_SESSION_MS = 3 * HOUR_MS
PLUG_TO_CHARGE_MS = 30 * SECOND_MS  # the plan's start-up allowance (booking arithmetic)
# Start-up, from plug-in (``Preparing``) to energy flowing (``Charging``): control pilot and
# lock, and for DC the SLAC / ISO 15118 link, the cable's isolation check and the precharge.
# Each charger has its own pace (drawn once), with seconds of jitter per session. Now and then
# a step fails once on healthy equipment and the charger repeats it (``STARTUP_RETRY_PROB``,
# either side: nobody is at fault). Worn contacts (``inlet_fault`` on the car,
# ``charger_fault`` on the charger) fail a step as often as their sessions fail, and the step
# is repeated up to ``STARTUP_MAX_RETRIES`` times; start-up then goes through.
STARTUP_AC_S = (6.0, 14.0)
STARTUP_DC_S = (20.0, 40.0)
STARTUP_JITTER_S = 3.0
STARTUP_RETRY_PROB = 0.02
STARTUP_RETRY_S = (15.0, 30.0)
STARTUP_MAX_RETRIES = 3
CHARGER_GAP_MS = 5 * MINUTE_MS
# A driver whose public session ends abnormally retries (see "Retries" in the module docstring).
MAX_RETRIES_PER_STOP = 2
SAME_CHARGER_RETRY_PROB = 0.15
REPLUG_MIN = (1.0, 3.0)  # unplug, check the cable, plug in again at the same charger
RETRY_HOP_KMH = 25.0  # the short drive to another charger in town
RETRY_PARK_MIN = (2.0, 5.0)  # finding the bay and plugging in at the other charger
# A booking on arrival skips a session under PUBLIC_MIN_SESSION_MS (not worth the detour); a
# driver already standing at a charger with too little charge takes a shorter one (a fast
# charger tops 45 -> 80 % up in ~11 minutes). Still longer than a derating charger's foldback.
RETRY_MIN_SESSION_MS = 10 * MINUTE_MS

Message = tuple[int, str, bytes]
Point = tuple[float, float]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    capacity_kwh: float
    kwh_per_km: float
    ac_kw: float
    dc_kw: float
    vds: str  # VIN characters 4-8 of this model
    placard_kpa: float = PLACARD_KPA  # cold tyre pressure on the door placard (at 20 °C)


# The models differ in pack size, consumption, charging power and tyre placard (a heavy car
# runs its tyres harder), as real fleets do: detectors must not assume one car's numbers.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("Aurora EV", 64.0, 0.17, 11.0, 120.0, "AE1B5", 250.0),
    ModelSpec("Borealis EV", 82.0, 0.20, 11.0, 150.0, "BE2C7", 280.0),
    ModelSpec("Cirrus EV", 52.0, 0.15, 7.4, 80.0, "CE3A1", 230.0),
)
CITY: Point = (48.137, 11.575)


# --------------------------------------------------------------------------------------------
# Weather


class Weather:
    """Ambient temperature for the fleet's region, a pure function of (seed, start, time)."""

    def __init__(self, seed: int, start_ms: int, mean_c: float | None = None) -> None:
        self.seed = seed
        self.start_ms = start_ms
        self.mean_c = mean_c  # a fixed mean instead of the seasonal one
        self._offsets: list[float] = []
        self._rng = random.Random(f"weather-{seed}")
        self._snap_left = 0
        self._snap_depth = 0.0

    def _offset(self, day: int) -> float:
        while len(self._offsets) <= day + 1:
            prev = self._offsets[-1] if self._offsets else 0.0
            # A mean-reverting random walk of daily weather, plus rare cold snaps.
            value = 0.7 * prev + self._rng.gauss(0, 2.0)
            if self._snap_left == 0 and self._rng.random() < 0.02:
                self._snap_left = self._rng.randint(3, 6)
                self._snap_depth = self._rng.uniform(6.0, 12.0)
            if self._snap_left:
                self._snap_left -= 1
                value -= self._snap_depth
            self._offsets.append(value)
        return self._offsets[day]

    def seasonal(self, ts: int) -> float:
        if self.mean_c is not None:
            return self.mean_c
        day_of_year = (ts / DAY_MS) % 365.2425  # epoch day 0 is 1 January
        return 9.5 - 10.0 * math.cos(2 * math.pi * (day_of_year - 15) / 365.2425)

    @staticmethod
    def daily(ts: int) -> float:
        hour = (ts % DAY_MS) / HOUR_MS
        if COLDEST_HOUR <= hour < WARMEST_HOUR:
            shape = -math.cos(math.pi * (hour - COLDEST_HOUR) / (WARMEST_HOUR - COLDEST_HOUR))
        else:
            shape = math.cos(math.pi * ((hour - WARMEST_HOUR) % 24) /
                             (24 - WARMEST_HOUR + COLDEST_HOUR))
        return DAILY_AMPLITUDE_C * shape

    def ambient(self, ts: int) -> float:
        days = (ts - self.start_ms) / DAY_MS
        day = max(0, int(days))
        frac = min(1.0, max(0.0, days - day))
        weather = self._offset(day) * (1 - frac) + self._offset(day + 1) * frac
        return max(-40.0, min(45.0, self.seasonal(ts) + weather + self.daily(ts)))


# --------------------------------------------------------------------------------------------
# 12 V battery


@dataclass
class Battery12V:
    v25_initial: float
    fault_onset: int | None = None
    fault_rate_v_per_day: float = 0.0
    drain_v: float = 0.0
    drain_ts: int = 0  # parasitic drain accounted up to here
    temp_c: float | None = None
    temp_ts: int = 0
    rest_start: int = 0  # key-off or end of the last top-up: the surface charge clock
    topup_until: int = -1
    last_topup: int = -NEVER
    extra_drain_since: int | None = None  # a bad OTA release installed at (event time)
    extra_drain_v_per_day: float = BAD_RELEASE_DRAIN_V_PER_DAY

    def v25(self, ts: int) -> float:
        decline = 0.0
        if self.fault_onset is not None and ts > self.fault_onset:
            decline = self.fault_rate_v_per_day * (ts - self.fault_onset) / DAY_MS
        return max(DEAD_V25_FLOOR, self.v25_initial - self.drain_v - decline)

    def failure_ts(self) -> int | None:
        if self.fault_onset is None:
            return None
        days = (self.v25_initial - FAILURE_V25) / self.fault_rate_v_per_day
        return self.fault_onset + int(days * DAY_MS)

    def follow_temperature(self, ts: int, target_c: float) -> None:
        if self.temp_c is None:
            self.temp_c, self.temp_ts = target_c, ts
            return
        dt = max(0, ts - self.temp_ts)
        self.temp_c += (target_c - self.temp_c) * (1 - math.exp(-dt / BATTERY_LAG_MS))
        self.temp_ts = ts

    def resting_v(self, ts: int) -> float:
        temp = 25.0 if self.temp_c is None else self.temp_c
        return self.v25(ts) + TEMP_COEFF_V_PER_C * (temp - 25.0)

    def accrue_drain(self, ts: int) -> None:
        if ts > self.drain_ts:
            self.drain_v += DRAIN_V_PER_DAY * (ts - self.drain_ts) / DAY_MS
            if self.extra_drain_since is not None:
                since = max(self.drain_ts, self.extra_drain_since)
                if ts > since:
                    self.drain_v += self.extra_drain_v_per_day * (ts - since) / DAY_MS
            self.drain_ts = ts

    def parked_current_a(self, ts: int) -> float:
        if self.extra_drain_since is not None and ts >= self.extra_drain_since:
            return BAD_RELEASE_PARKED_CURRENT_A
        return PARKED_CURRENT_A

    def recharged(self, ts: int) -> None:
        """The DC-DC refilled the battery (a drive or a top-up): the drain is gone."""
        self.drain_v = 0.0
        self.drain_ts = ts


@dataclass
class CellPack:
    """Min / max cell voltage of the traction battery, with its own RNG (see the docstring)."""

    cells: int
    base_spread_mv: float
    weak: tuple[int, int, int]
    rng: random.Random
    drift_onset: int | None = None
    drift_rate_mv_per_day: float = 0.0
    drift_cell: int = 0

    def drift_mv(self, ts: int) -> float:
        if self.drift_onset is None or ts <= self.drift_onset:
            return 0.0
        return self.drift_rate_mv_per_day * (ts - self.drift_onset) / DAY_MS

    def signals(self, ts: int, soc: float, temp_c: float, driving: bool,
                charging: bool) -> dict[str, Any]:
        rng = self.rng
        factor = (1.0 + 2.5 * max(0.0, (20.0 - soc) / 20.0)
                  + 1.5 * max(0.0, (soc - 95.0) / 5.0)) * (1.0 + 0.03 * max(0.0, 15.0 - temp_c))
        drift = self.drift_mv(ts)
        spread = (self.base_spread_mv + drift) * factor + rng.gauss(0, CELL_NOISE_MV)
        if driving:
            spread += rng.uniform(5.0, 25.0)
        elif charging:
            spread += rng.uniform(3.0, 15.0)
        spread = max(1.0, spread)
        ocv_mv = 3000.0 + 12.0 * soc
        if drift > self.base_spread_mv / 2:
            low = self.drift_cell
        elif rng.random() < 0.6:
            low = self.weak[rng.randrange(3)]
        else:
            low = rng.randrange(self.cells)
        high = rng.randrange(self.cells)
        if high == low:
            high = (high + 1) % self.cells
        vmax = ocv_mv + spread * 0.4
        vmin = vmax - spread
        return {
            "Vehicle.Powertrain.TractionBattery.CellVoltage.Min": round(vmin / 1000, 3),
            "Vehicle.Powertrain.TractionBattery.CellVoltage.Max": round(vmax / 1000, 3),
            "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMin": low,
            "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMax": high,
        }


def road_load_kw(speed_kmh: float, mass_kg: float, grade: float = 0.0) -> float:
    """Traction power at the wheels (kW): rolling resistance, air drag and the climb; a descent
    recovers energy but the drive unit heats with the power it handles either way (abs)."""
    v = speed_kmh / 3.6
    force = mass_kg * 9.81 * (ROLLING_COEFF + grade) + 0.5 * 1.2 * CDA_M2 * v * v
    return abs(force * v) / 1000.0


@dataclass
class Thermal:
    """The drive unit's cooling (see the module docstring); its own RNG draws the hills."""

    resistance: float  # healthy °C per kW
    mass_kg: float
    rng: random.Random
    pump_onset: int | None = None
    pump_growth_per_day: float = 0.0
    load_kw: float = 0.0  # lagged traction power of the current drive
    excess_c: float = 0.0  # coolant above the pack, lagging COOLANT_OFFSET_C + rise
    hill: tuple[float, float, float] = (0.0, 1.0, 0.0)  # grade, period ms, phase
    charge_pack: tuple[int, float] | None = None  # (ts, °C) of the pack while charging

    def charging_pack(self, ts: int, target_c: float, start_c: float) -> float:
        """The pack's temperature while charging (first order towards ``target_c``). Kept
        apart from the drive model's pack temperature, so the drives (and the cell voltages
        they report) stay those of the fleet before charging heat was modelled."""
        if self.charge_pack is None or ts - self.charge_pack[0] > CHARGE_HEAT_TAU_MS * 4:
            self.charge_pack = (ts, start_c)
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


# --------------------------------------------------------------------------------------------
# Static descriptions (what the seed decides once) and per-run state


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


@dataclass(frozen=True)
class ChargerSpec:
    index: int
    charger_id: str
    dc: bool
    power_kw: float
    location: Point
    mean_gap_h: float  # between sessions of cars outside the fleet
    fault: FaultInstance | None = None


@dataclass(frozen=True)
class Trip:
    depart: int
    arrive: int
    origin: Point
    dest: Point
    dest_place: str  # home | work | out
    loop: bool  # out and back within one drive (errand)
    cruise_kmh: float


@dataclass
class ChargeSession:
    """Energy flows from ``start`` to ``end``; the SoC is a pure function of time."""

    start: int
    end: int
    soc0: float
    pct_per_ms: float
    power_kw: float
    charger_id: str | None = None
    started: bool = False  # charge_start reported
    ended: bool = False
    # Faults (healthy sessions keep the defaults): from ``fold_at`` on only ``fold_factor`` of
    # the power flows (a derating charger); a session with a ``fault_code`` ends at ``end``
    # with that OCPP error code and status ``fault_status`` instead of finishing normally.
    fold_at: int = NEVER
    fold_factor: float = 1.0
    fault_code: str | None = None
    fault_status: str = "Faulted"
    unplug: int = NEVER  # public sessions: when the car leaves the charger

    def _full_power_ms(self, ts: int) -> float:
        """Milliseconds of charging at the session's full power equivalent to [start, ts]."""
        t = min(max(ts, self.start), self.end)
        if t <= self.fold_at:
            return t - self.start
        return (self.fold_at - self.start) + self.fold_factor * (t - self.fold_at)

    def soc_at(self, ts: int) -> float:
        if self.fold_factor == 1.0:  # the healthy arithmetic, unchanged to the last bit
            return self.soc0 + self.pct_per_ms * (min(max(ts, self.start), self.end) - self.start)
        return self.soc0 + self.pct_per_ms * self._full_power_ms(ts)

    def energy_kwh(self, ts: int) -> float:
        if self.fold_factor == 1.0:
            return self.power_kw * (min(max(ts, self.start), self.end) - self.start) / HOUR_MS
        return self.power_kw * self._full_power_ms(ts) / HOUR_MS

    def power_at(self, ts: int) -> float:
        """The power (kW) flowing at ``ts`` while the session charges."""
        return self.power_kw * self.fold_factor if ts >= self.fold_at else self.power_kw

    def charging(self, ts: int) -> bool:
        return self.start <= ts < self.end


@dataclass
class Booking:
    plug: int
    unplug: int
    vin: str
    session: ChargeSession


@dataclass
class _ChargerRun:
    spec: ChargerSpec
    rng: random.Random
    committed_until: int = -NEVER  # ts of the last message handed to the merge
    busy_until: int = -NEVER
    bookings: list[Booking] = field(default_factory=list)
    seq: int = 0
    energy_wh: float = 0.0
    transaction: int = 0
    fault_rng: random.Random | None = None  # draws of an injected fault, apart from ``rng``
    startup_rng: random.Random | None = None  # start-up draws (``_startup_ms``), apart too
    startup_s: float = 0.0  # this charger's start-up pace

    def __post_init__(self) -> None:
        if self.startup_rng is not None:
            self.startup_s = self.startup_rng.uniform(
                *(STARTUP_DC_S if self.spec.dc else STARTUP_AC_S))


@dataclass
class _VehicleRun:
    spec: VehicleSpec
    rng: random.Random
    battery: Battery12V
    soc: float
    odometer_m: float
    place: str = "home"
    seq: int = 0
    next_report: int = 0
    charge: ChargeSession | None = None
    hv_temp: float | None = None
    hv_ts: int = 0
    dtc_pending: tuple[int, str] | None = None
    failed_at: int = NEVER
    cranked: bool = False
    model_reported: bool = False
    cells: CellPack | None = None
    fault_rng: random.Random | None = None  # draws of an injected fault, apart from ``rng``
    startup_rng: random.Random | None = None  # inlet_fault: its start-up retries' draws
    thermal: Thermal | None = None
    # Retries after an abnormal public session: draws of their own (``retry_rng``), the
    # departure of the current stop and the retries it has left.
    retry_rng: random.Random | None = None
    stop_depart: int | None = None
    retries_left: int = 0
    stop_failed_at: list[str] = field(default_factory=list)  # chargers failed at this stop

    def dead(self, ts: int) -> bool:
        return ts >= self.failed_at


@dataclass
class _World:
    weather: Weather
    chargers: list[_ChargerRun]


# --------------------------------------------------------------------------------------------
# The fleet


class Fleet:
    def __init__(
        self,
        n_vehicles: int,
        n_chargers: int = 0,
        seed: int = 1,
        start_ms: int = DEFAULT_START_MS,
        faults: dict[str, int] | None = None,
        drive_interval_s: float = 60,
        parked_interval_s: float = 1800,
        cell_report_fraction: float = 0.0,
    ) -> None:
        if n_vehicles < 0 or n_chargers < 0:
            raise ValueError("fleet sizes must be >= 0")
        if drive_interval_s <= 0 or parked_interval_s <= 0:
            raise ValueError("intervals must be > 0")
        self.seed = seed
        self.start_ms = start_ms
        self.drive_ms = max(1, int(drive_interval_s * 1000))
        self.parked_ms = max(1, int(parked_interval_s * 1000))
        self.cell_report_fraction = cell_report_fraction
        rng = random.Random(f"fleet-{seed}")
        by_vehicle, by_charger = assign_faults(faults or {}, n_vehicles, n_chargers, rng)
        vins: set[str] = set()
        self.vehicles = [self._vehicle_spec(i, by_vehicle.get(i), vins)
                         for i in range(n_vehicles)]
        self.charger_specs = [self._charger_spec(i, by_charger.get(i)) for i in range(n_chargers)]
        self.chargers = [c.charger_id for c in self.charger_specs]
        # OTA hooks (simulators.ota_runtime): VIN -> event time a bad release was installed,
        # read at each parked report; and the per-run vehicle state of the latest
        # ``messages()`` call, so OTA reports share the car's one ``seq`` counter.
        self.bad_release_since: dict[str, int] = {}
        self._runs: dict[str, _VehicleRun] = {}

    def next_seq(self, vin: str) -> int:
        """The next ``seq`` of this car in the running stream (OTA reports use it too, so
        the cloud's per-device duplicate check sees one counter)."""
        return self._seq(self._runs[vin])

    def _vehicle_spec(self, i: int, fault: str | None, vins: set[str]) -> VehicleSpec:
        r = random.Random(f"vehicle-{self.seed}-{i}")
        model = MODELS[i % len(MODELS)]
        vin = _vin(r, model, vins)
        v25 = round(r.uniform(*V25_RANGE), 4)
        home = (CITY[0] + r.uniform(-0.15, 0.15), CITY[1] + r.uniform(-0.25, 0.25))
        work_km = r.uniform(4, 30)
        work = _offset_point(home, work_km, r.uniform(0, 2 * math.pi))
        avg_kmh = r.uniform(28, 55)
        # Cell parameters come from their own RNG so the draws above and below are unchanged.
        cell_rng = random.Random(f"cells-{self.seed}-{i}")
        cell_spread = round(cell_rng.uniform(*CELL_SPREAD_MV_RANGE), 2)
        reports_cells = fault == "cell_drift" or cell_rng.random() < self.cell_report_fraction
        thermal_rng = random.Random(f"thermal-{self.seed}-{i}")
        resistance = round(thermal_rng.uniform(*THERMAL_RESISTANCE_RANGE), 3)
        # slow_leak needs the tyre pressures, drawn below: it is drawn last, so every other
        # car's draws (and so the fleet's output) stay exactly as they were.
        instance = (draw_fault(fault, r, self.start_ms,
                               {"v25_initial": v25, "cells": CELLS_BY_MODEL[model.name],
                                "cell_spread_mv": cell_spread,
                                "thermal_resistance_c_per_kw": resistance})
                    if fault and fault != "slow_leak" else None)
        spec = VehicleSpec(
            index=i, vin=vin, model=model.name, spec=model, home=home, work=work,
            commuter=r.random() < 0.8,
            commute_min=_clamp(work_km * 1.3 / avg_kmh * 60, *TRIP_MIN),
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
                fault, r, self.start_ms,
                {"tire_cold_kpa": spec.tire_cold_kpa, "placard_kpa": model.placard_kpa}))
        return spec

    def _charger_spec(self, i: int, fault: str | None) -> ChargerSpec:
        r = random.Random(f"charger-{self.seed}-{i}")
        dc = r.random() < 0.5
        # The fault draws from its own RNG: the charger's other parameters stay as they were.
        instance = (draw_fault(fault, random.Random(f"charger-fault-{self.seed}-{i}"),
                               self.start_ms, {}) if fault else None)
        return ChargerSpec(
            index=i, charger_id=f"CP-{i + 1:04d}", dc=dc,
            power_kw=r.choice((50.0, 150.0)) if dc else 22.0,
            location=_offset_point(CITY, r.uniform(0.5, 12), r.uniform(0, 2 * math.pi)),
            mean_gap_h=r.uniform(3, 6) if dc else r.uniform(6, 10), fault=instance,
        )

    def truth(self) -> list[dict[str, Any]]:
        """Ground truth: one entry per injected fault (asset, fault, onset, failure, params)."""
        out: list[dict[str, Any]] = []
        for v in self.vehicles:
            if v.fault is not None:
                out.append({"vin": v.vin, "model": v.model, "fault": v.fault.name,
                            "onset_ts": v.fault.onset_ts, "failure_ts": v.fault.failure_ts,
                            "params": dict(v.fault.params)})
        for c in self.charger_specs:
            if c.fault is not None:
                out.append({"charger_id": c.charger_id, "fault": c.fault.name,
                            "onset_ts": c.fault.onset_ts, "failure_ts": c.fault.failure_ts,
                            "params": dict(c.fault.params)})
        return out

    def messages(self, until_ms: int | None = None) -> Iterator[Message]:
        """The message stream from the start, up to (excluding) ``until_ms``; every call replays
        the same stream, since all mutable state is created here."""
        world = _World(
            Weather(self.seed, self.start_ms),
            [_ChargerRun(c, random.Random(f"charger-run-{self.seed}-{c.index}"),
                         fault_rng=random.Random(f"charger-fault-run-{self.seed}-{c.index}")
                         if c.fault is not None else None,
                         startup_rng=random.Random(f"charger-startup-{self.seed}-{c.index}"))
             for c in self.charger_specs],
        )
        streams = [_silenced(spec.fault, self._vehicle(world, spec)) for spec in self.vehicles]
        streams += [_silenced(c.spec.fault, self._charger(world, c)) for c in world.chargers]
        merged = heapq.merge(*streams, key=itemgetter(0))
        if until_ms is None:
            return merged
        # The devices run unbounded and the merged stream is cut: a shorter run is exactly a
        # prefix of a longer one (nothing inside the model knows where the run ends).
        return takewhile(lambda m: m[0] < until_ms, merged)

    # ------------------------------------------------------------------ vehicles

    def _new_run(self, spec: VehicleSpec) -> _VehicleRun:
        battery = Battery12V(spec.v25_initial, drain_ts=self.start_ms,
                             rest_start=self.start_ms - 12 * HOUR_MS)
        run = _VehicleRun(spec, random.Random(f"vehicle-run-{self.seed}-{spec.index}"), battery,
                          soc=spec.soc, odometer_m=spec.odometer_m)
        self._runs[spec.vin] = run
        fault = spec.fault
        if fault is not None and fault.name == "weak_12v":
            battery.fault_onset = fault.onset_ts
            battery.fault_rate_v_per_day = float(fault.params["rate_v_per_day"])
            run.failed_at = fault.failure_ts if fault.failure_ts is not None else NEVER
        elif fault is not None and fault.name == "dtc":
            run.dtc_pending = (fault.onset_ts, str(fault.params["code"]))
        elif fault is not None and fault.name == "inlet_fault":
            run.fault_rng = random.Random(f"vehicle-fault-run-{self.seed}-{spec.index}")
            run.startup_rng = random.Random(f"vehicle-startup-{self.seed}-{spec.index}")
        run.retry_rng = random.Random(f"charge-retry-{self.seed}-{spec.index}")
        run.thermal = Thermal(spec.thermal_resistance, MASS_KG_BY_MODEL[spec.model],
                              random.Random(f"thermal-run-{self.seed}-{spec.index}"))
        if fault is not None and fault.name == "coolant_pump":
            run.thermal.pump_onset = fault.onset_ts
            run.thermal.pump_growth_per_day = float(fault.params["growth_per_day"])
        if spec.reports_cells:
            cell_rng = random.Random(f"cells-run-{self.seed}-{spec.index}")
            n = CELLS_BY_MODEL[spec.model]
            weak = (cell_rng.randrange(n), cell_rng.randrange(n), cell_rng.randrange(n))
            run.cells = CellPack(n, spec.cell_spread_mv, weak, cell_rng)
            if fault is not None and fault.name == "cell_drift":
                run.cells.drift_onset = fault.onset_ts
                run.cells.drift_rate_mv_per_day = float(fault.params["rate_mv_per_day"])
                run.cells.drift_cell = int(fault.params["cell"])
        return run

    def _vehicle(self, world: _World, spec: VehicleSpec) -> Iterator[Message]:
        v = self._new_run(spec)
        v.next_report = self.start_ms + v.rng.randrange(self.parked_ms)
        now = self.start_ms
        first_midnight = self.start_ms - self.start_ms % DAY_MS  # routines run on the clock
        day = 0
        away_until = 0
        while True:
            day_start = first_midnight + day * DAY_MS
            day_end = day_start + DAY_MS
            trips: list[Trip] = []
            if day_start >= away_until:
                if v.rng.random() < AWAY_START_PROB:  # away: the car sleeps for days
                    away_until = day_start + v.rng.randint(*AWAY_DAYS) * DAY_MS
                else:
                    trips = self._plan_day(v, day_start, day)
            for k, trip in enumerate(trips):
                if trip.depart < now:
                    continue
                yield from self._park(world, v, trip.depart)
                if v.dead(trip.depart):
                    if not v.cranked:  # the owner tries, the car cannot close its contactors
                        v.cranked = True
                        yield self._event(v, trip.depart, {
                            "type": "crank", "voltage_min": self._volts(
                                v, v.battery.resting_v(trip.depart) - 0.4),
                            "description": "no start: 12 V battery too weak to wake the car"})
                    break
                next_depart = trips[k + 1].depart if k + 1 < len(trips) else None
                yield from self._drive(world, v, trip, next_depart)
                now = trip.arrive
            yield from self._park(world, v, day_end)
            now = day_end
            day += 1

    def _plan_day(self, v: _VehicleRun, day_start: int, day: int) -> list[Trip]:
        s = v.spec
        rng = random.Random(f"plan-{self.seed}-{s.index}-{day}")
        if rng.random() < IDLE_DAY_PROB:
            return []  # a day without driving
        weekday = (day_start // DAY_MS + 3) % 7 < 5  # epoch day 0 was a Thursday
        trips: list[Trip] = []
        if s.commuter and weekday:
            out_min = _clamp(s.commute_min * rng.uniform(0.85, 1.3), *TRIP_MIN)
            depart = day_start + int(rng.uniform(6.5, 9.0) * HOUR_MS)
            trips.append(_trip(depart, out_min, s.home, s.work, "work"))
            back_min = _clamp(s.commute_min * rng.uniform(0.9, 1.4), *TRIP_MIN)
            back = day_start + int(rng.uniform(16.0, 18.5) * HOUR_MS)
            trips.append(_trip(back, back_min, s.work, s.home, "home"))
            if rng.random() < 0.3:  # an evening errand, out and back in one drive
                errand = max(trips[-1].arrive + 20 * MINUTE_MS,
                             day_start + int(rng.uniform(18.5, 20.5) * HOUR_MS))
                shop = _offset_point(s.home, rng.uniform(1.5, 6), rng.uniform(0, 2 * math.pi))
                trips.append(_trip(errand, rng.uniform(10, 30), s.home, shop, "home",
                                   loop=True))
            return trips
        spot = _offset_point(s.home, rng.uniform(3, 25), rng.uniform(0, 2 * math.pi))
        km = _distance_km(s.home, spot) * 1.3
        minutes = _clamp(km / rng.uniform(35, 65) * 60, *TRIP_MIN)
        if rng.random() < 0.6:  # an outing: there, a few hours, back
            depart = day_start + int(rng.uniform(9.5, 14.0) * HOUR_MS)
            trips.append(_trip(depart, minutes, s.home, spot, "out"))
            back = trips[-1].arrive + int(rng.uniform(1.0, 4.0) * HOUR_MS)
            trips.append(_trip(back, _clamp(minutes * rng.uniform(0.9, 1.2), *TRIP_MIN),
                               spot, s.home, "home"))
        else:
            depart = day_start + int(rng.uniform(9.5, 17.0) * HOUR_MS)
            trips.append(_trip(depart, _clamp(2 * minutes, *TRIP_MIN), s.home, spot, "home",
                               loop=True))
        return trips

    def _seq(self, v: _VehicleRun) -> int:
        v.seq += 1
        return v.seq

    def _event(self, v: _VehicleRun, ts: int, body: dict[str, Any]) -> Message:
        return ts, topic_for(Kind.VEHICLE_EVENT, v.spec.vin), orjson.dumps(
            {"ts": ts, "seq": self._seq(v), **body})

    def _telemetry(self, v: _VehicleRun, ts: int, signals: dict[str, Any],
                   droppable: tuple[str, ...]) -> Message | None:
        """A telemetry message, or None when it is lost on the way (its seq is spent)."""
        seq = self._seq(v)
        rng = v.rng
        if rng.random() < MISSING_SIGNAL_PROB:
            signals.pop(droppable[rng.randrange(len(droppable))], None)
        if not v.model_reported:  # identification is reported when the car wakes up
            v.model_reported = True
            signals["Vehicle.VehicleIdentification.Model"] = v.spec.model
        if rng.random() < LOST_MESSAGE_PROB:
            return None
        return ts, topic_for(Kind.VEHICLE_TELEMETRY, v.spec.vin), orjson.dumps(
            {"ts": ts, "seq": seq, "signals": signals})

    def _due_dtc(self, v: _VehicleRun, t: int) -> Iterator[Message]:
        """The car reports a trouble code with its first transmission after the onset."""
        if v.dtc_pending is not None and v.dtc_pending[0] <= t:
            code = v.dtc_pending[1]
            v.dtc_pending = None
            yield self._event(v, t, {"type": "dtc", "code": code, "state": "active"})

    def _volts(self, v: _VehicleRun, nominal: float) -> float:
        return round(min(19.9, max(0.1, nominal + v.rng.gauss(0, NOISE_V))), 3)

    def _follow_hv(self, v: _VehicleRun, ts: int, target: float, tau_ms: float) -> float:
        if v.hv_temp is None:
            v.hv_temp = target
        else:
            dt = max(0, ts - v.hv_ts)
            v.hv_temp += (target - v.hv_temp) * (1 - math.exp(-dt / tau_ms))
        v.hv_ts = ts
        return v.hv_temp

    def _drive(self, world: _World, v: _VehicleRun, trip: Trip,
               next_depart: int | None) -> Iterator[Message]:
        s, b, rng = v.spec, v.battery, v.rng
        yield from self._unplug(v, trip.depart)
        yield self._event(v, trip.depart, {"type": "ignition", "state": "ON"})
        v.place = "road"
        v.model_reported = False  # the car woke up: it reports its identification again
        weather = world.weather
        self._follow_hv(v, trip.depart, weather.ambient(trip.depart), 8 * HOUR_MS)
        duration = max(1, trip.arrive - trip.depart)
        dcdc_v = rng.uniform(DCDC_V_RANGE[0] + 0.1, DCDC_V_RANGE[1] - 0.1)
        odo0 = v.odometer_m
        energy = 0.0
        noise = 0.0
        d_lat, d_lon = trip.dest[0] - trip.origin[0], trip.dest[1] - trip.origin[1]
        capacity = s.spec.capacity_kwh
        thermal = v.thermal
        assert thermal is not None
        thermal.start_trip()
        t = trip.depart
        while t < trip.arrive:
            yield from self._due_dtc(v, t)
            elapsed = t - trip.depart
            dt = min(self.drive_ms, trip.arrive - t)
            ambient = weather.ambient(t)
            b.follow_temperature(t, ambient + DRIVING_WARMUP_C)
            hv = self._follow_hv(v, t, max(ambient + 12.0, 22.0), HOUR_MS)
            # The sample stands for the coming interval: ramp up, cruise with noise, slow down.
            ramp = min(1.0, (elapsed + dt / 2) / RAMP_MS, (trip.arrive - t - dt / 2) / RAMP_MS)
            noise = 0.75 * noise + rng.gauss(0, 0.12)
            speed = trip.cruise_kmh * max(0.05, ramp) * (1 + noise)
            if elapsed and rng.random() < TRAFFIC_STOP_PROB:
                speed = 0.0
            speed = _clamp(speed, 0.0, 180.0)
            progress = elapsed / duration
            if trip.loop:
                progress = 1 - abs(1 - 2 * progress)
            wiggle = 0.004 * math.sin(math.pi * progress)
            warm = 1 - math.exp(-elapsed / (15 * MINUTE_MS))
            rise = thermal.step(t, elapsed, self.drive_ms if elapsed else 0, speed)
            signals: dict[str, Any] = {
                "Vehicle.Speed": round(speed, 1),
                "Vehicle.IsMoving": speed > 0.5,
                "Vehicle.TraveledDistance": round(v.odometer_m, 1),
                "Vehicle.LowVoltageSystemState": "ON",
                "Vehicle.LowVoltageBattery.CurrentVoltage": self._volts(v, dcdc_v),
                "Vehicle.LowVoltageBattery.CurrentCurrent":
                    round(1.5 + 8.0 * math.exp(-elapsed / (20 * MINUTE_MS))
                          + rng.gauss(0, 0.3), 2),
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(v.soc, 2),
                "Vehicle.Powertrain.TractionBattery.StateOfHealth": s.soh,
                "Vehicle.Powertrain.TractionBattery.Temperature.Average":
                    round(hv + PACK_LOAD_SHARE * rise + rng.gauss(0, 0.3), 2),
                "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature":
                    round(hv + PACK_LOAD_SHARE * rise + thermal.excess_c
                          + rng.gauss(0, 0.5), 2),
                "Vehicle.Exterior.AirTemperature": round(ambient + rng.gauss(0, 0.2), 2),
                "Vehicle.CurrentLocation.Latitude":
                    round(trip.origin[0] + d_lat * progress + wiggle, 6),
                "Vehicle.CurrentLocation.Longitude":
                    round(trip.origin[1] + d_lon * progress - wiggle, 6),
            }
            tire_c = ambient + 10.0 * warm
            for path, cold_kpa, tpath in zip(TIRE_PRESSURE_SIGNALS, self._tire_cold_kpa(s, t),
                                             TIRE_TEMPERATURE_SIGNALS, strict=True):
                # Gay-Lussac: pressure follows absolute temperature (placard set at 20 °C).
                signals[path] = round((cold_kpa + 101.3) * (tire_c + 273.15) / 293.15 - 101.3
                                      + rng.gauss(0, 0.5), 1)
                signals[tpath] = round(tire_c + rng.gauss(0, 0.3), 1)
            if v.cells is not None:
                signals.update(v.cells.signals(t, v.soc, hv, driving=True, charging=False))
            message = self._telemetry(v, t, signals, _DRIVE_DROPPABLE)
            if message is not None:
                yield message
            # Integrate the interval this sample stands for.
            km = speed * dt / HOUR_MS
            kwh = km * s.kwh_per_km * (1 + 0.01 * max(0.0, 15.0 - ambient))
            v.odometer_m += km * 1000
            energy += kwh
            v.soc = max(1.0, v.soc - kwh / capacity * 100)
            t += self.drive_ms
        # Arrival.
        b.recharged(trip.arrive)
        b.rest_start = trip.arrive
        v.place = trip.dest_place
        v.next_report = trip.arrive
        yield self._event(v, trip.arrive, {"type": "ignition", "state": "OFF"})
        yield self._event(v, trip.arrive, {
            "type": "trip_end", "distance_m": round(v.odometer_m - odo0, 1),
            "duration_ms": trip.arrive - trip.depart,
            "energy_kwh": round(energy, 3)})
        self._plug_in(world, v, trip.arrive, next_depart)

    @staticmethod
    def _tire_cold_kpa(s: VehicleSpec, t: int) -> tuple[float, ...]:
        """The four tyres' pressures at 20 °C; a ``slow_leak`` lowers one of them linearly."""
        fault = s.fault
        if fault is None or fault.name != "slow_leak" or t <= fault.onset_ts:
            return s.tire_cold_kpa
        wheel = int(fault.params["wheel"])
        lost = float(fault.params["rate_kpa_per_day"]) * (t - fault.onset_ts) / DAY_MS
        cold = list(s.tire_cold_kpa)
        cold[wheel] = max(SLOW_LEAK_FLOOR_KPA, cold[wheel] - lost)
        return tuple(cold)

    def _plug_in(self, world: _World, v: _VehicleRun, arrive: int,
                 next_depart: int | None) -> None:
        s, rng = v.spec, v.rng
        if v.dead(arrive):
            return
        inlet_fault = s.fault is not None and s.fault.name == "inlet_fault"
        if v.place == "home":
            # A car with an inlet fault is modelled as one without a home wallbox: it charges
            # publicly, so the fleet sees its sessions at several chargers (attribution).
            if v.soc < s.charge_below_soc and not inlet_fault:
                start = arrive + int(rng.uniform(2, 15) * MINUTE_MS)
                power = s.home_kw * rng.uniform(0.95, 1.0)
                v.charge = _new_session(start, v.soc, s.charge_target_soc, power,
                                        s.spec.capacity_kwh, NEVER)
            return
        if next_depart is None or not world.chargers:
            return
        anyway = INLET_FAULT_PUBLIC_PROB if inlet_fault else PUBLIC_ANYWAY_PROB
        if v.soc < PUBLIC_BELOW_SOC or rng.random() < anyway:
            v.stop_depart, v.retries_left = next_depart, MAX_RETRIES_PER_STOP
            v.stop_failed_at = []
            v.charge = self._book_public(world, v, arrive, next_depart)

    def _book_public(self, world: _World, v: _VehicleRun, arrive: int,
                     depart: int) -> ChargeSession | None:
        """Book the first free public charger; its generator will run the session."""
        rng = v.rng
        n = len(world.chargers)
        first = rng.randrange(n)
        wanted = arrive + int(rng.uniform(2, 8) * MINUTE_MS)
        best: tuple[int, _ChargerRun] | None = None
        for k in range(n):
            c = world.chargers[(first + k) % n]
            plug = _free_from(c, wanted)
            if best is None or plug < best[0]:
                best = (plug, c)
        assert best is not None
        return self._reserve(v, best[1], best[0], depart, rng, PUBLIC_MIN_SESSION_MS)

    def _retry_public(self, world: _World, v: _VehicleRun,
                      failed: ChargeSession) -> ChargeSession | None:
        """After an abnormal end the driver, still short of charge, tries again: usually the
        charger free soonest (the drive there included) other than the one that failed, now
        and then the same one after re-plugging. Every draw comes from ``v.retry_rng``."""
        rng, depart = v.retry_rng, v.stop_depart
        if rng is None or depart is None or v.retries_left <= 0 or not world.chargers:
            return None
        v.retries_left -= 1
        v.stop_failed_at.append(str(failed.charger_id))
        was = next(c for c in world.chargers if c.spec.charger_id == failed.charger_id)
        # Not back to a charger that already failed at this stop.
        untried = [c for c in world.chargers if c.spec.charger_id not in v.stop_failed_at]
        same = not untried or rng.random() < SAME_CHARGER_RETRY_PROB
        if same:
            plug, charger = _free_from(was, failed.unplug + int(
                rng.uniform(*REPLUG_MIN) * MINUTE_MS)), was
        else:
            park = int(rng.uniform(*RETRY_PARK_MIN) * MINUTE_MS)
            plug, charger = min(
                ((_free_from(c, failed.unplug + park + int(
                    _distance_km(was.spec.location, c.spec.location) * 1.3 / RETRY_HOP_KMH
                    * HOUR_MS)), c)
                 for c in untried),
                key=lambda pc: (pc[0], pc[1].spec.index))
        return self._reserve(v, charger, plug, depart, rng, RETRY_MIN_SESSION_MS)

    def _reserve(self, v: _VehicleRun, charger: _ChargerRun, plug: int, depart: int,
                 rng: random.Random, min_session_ms: int) -> ChargeSession | None:
        """Book ``charger`` from ``plug`` if a session of ``min_session_ms`` fits before
        ``depart`` and the car needs it."""
        s = v.spec
        target = 80.0 if charger.spec.dc else s.charge_target_soc
        if v.soc >= target - 5:
            return None
        power = min(charger.spec.power_kw, s.spec.dc_kw if charger.spec.dc else s.spec.ac_kw)
        power *= rng.uniform(0.92, 0.98)
        latest = min(depart - 10 * MINUTE_MS, plug + PLUG_TO_CHARGE_MS + PUBLIC_MAX_SESSION_MS)
        linger = int(rng.uniform(1, 5) * MINUTE_MS)  # from the end of charging to unplugging
        inlet = s.fault if s.fault is not None and s.fault.name == "inlet_fault" else None
        session = _new_session(plug + _startup_ms(charger, plug, inlet, v.startup_rng), v.soc,
                               target, power, s.spec.capacity_kwh, latest,
                               charger.spec.charger_id)
        if session.end - session.start < min_session_ms:
            return None
        self._charger_faults(charger, session)
        if s.fault is not None and s.fault.name == "inlet_fault" and v.fault_rng is not None:
            _maybe_fail(session, s.fault, v.fault_rng, "Finishing")
        # After the faults: a session that stopped early is unplugged minutes after it stopped.
        session.unplug = session.end + linger
        charger.bookings.append(Booking(plug, session.unplug, s.vin, session))
        return session

    def _unplug(self, v: _VehicleRun, ts: int) -> Iterator[Message]:
        """The car leaves: a home session still running ends now."""
        session = v.charge
        if session is None:
            return
        if session.started and not session.ended:
            session.end = min(session.end, ts)
            session.ended = True
            yield self._charge_event(v, session.end, "charge_end", session)
        v.soc = session.soc_at(ts)
        v.charge = None

    def _charge_event(self, v: _VehicleRun, ts: int, kind: str,
                      session: ChargeSession) -> Message:
        body: dict[str, Any] = {"type": kind}
        if kind == "charge_end":
            body["energy_kwh"] = round(session.energy_kwh(ts), 3)
            body["duration_ms"] = ts - session.start
        if session.charger_id:
            body["description"] = f"public charger {session.charger_id}"
        return self._event(v, ts, body)

    def _park(self, world: _World, v: _VehicleRun, t1: int) -> Iterator[Message]:
        """Parked reports (and charge events) from ``v.next_report`` up to ``t1``."""
        end = t1
        b, rng = v.battery, v.rng
        while True:
            t = v.next_report
            session = v.charge
            if session is not None:
                event_ts = session.end if session.started else session.start
                if event_ts <= t and event_ts < end:
                    if not session.started:
                        session.started = True
                        yield self._charge_event(v, event_ts, "charge_start", session)
                    else:
                        session.ended = True
                        yield self._charge_event(v, event_ts, "charge_end", session)
                        v.soc = session.soc_at(event_ts)
                        v.charge = None
                        if session.fault_code is not None and session.charger_id is not None:
                            v.charge = self._retry_public(world, v, session)
                    continue
            if t >= end:
                return
            yield from self._due_dtc(v, t)
            ambient = world.weather.ambient(t)
            b.follow_temperature(t, ambient)
            b.extra_drain_since = self.bad_release_since.get(v.spec.vin)
            b.accrue_drain(t)
            current = round(b.parked_current_a(t) + rng.gauss(0, 0.005), 3)
            if b.topup_until > t:
                nominal, current = TOPUP_V, TOPUP_A
            elif (b.resting_v(t) < TOPUP_BELOW_V and t - b.last_topup >= TOPUP_MIN_GAP_MS
                  and not v.dead(t)):
                b.topup_until, b.last_topup = t + TOPUP_MS, t
                nominal, current = TOPUP_V, TOPUP_A
                b.recharged(t)
                b.rest_start = t + TOPUP_MS
            else:
                since = max(0, t - b.rest_start)
                nominal = b.resting_v(t) + SURFACE_CHARGE_V * math.exp(-since / SURFACE_TAU_MS)
            if session is not None and session.charging(t):
                soc, charging = session.soc_at(t), True
            else:
                soc, charging = (v.soc if session is None else session.soc_at(t)), False
            signals: dict[str, Any] = {
                "Vehicle.Speed": 0.0,
                "Vehicle.IsMoving": False,
                "Vehicle.LowVoltageSystemState": "OFF",
                "Vehicle.LowVoltageBattery.CurrentVoltage": self._volts(v, nominal),
                "Vehicle.LowVoltageBattery.CurrentCurrent": current,
                "Vehicle.Exterior.AirTemperature": round(ambient + rng.gauss(0, 0.2), 2),
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(soc, 2),
                "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": charging,
            }
            if charging and session is not None:
                signals["Vehicle.Powertrain.TractionBattery.Charging.ChargeRate"] = round(
                    session.power_at(t) * rng.uniform(0.98, 1.0), 2)
                # Charging heats the pack (fast charging by up to ~20 °C); the car reports it.
                assert v.thermal is not None
                pack = v.thermal.charging_pack(t, max(ambient + 5.0, 20.0)
                                               + CHARGE_HEAT_C_PER_KW * session.power_at(t),
                                               ambient if v.hv_temp is None else v.hv_temp)
                signals["Vehicle.Powertrain.TractionBattery.Temperature.Average"] = round(
                    pack + v.thermal.rng.gauss(0, 0.3), 2)
            if v.cells is not None:
                pack_c = ambient if b.temp_c is None else b.temp_c
                signals.update(v.cells.signals(t, soc, pack_c, driving=False, charging=charging))
            message = self._telemetry(v, t, signals, _PARKED_DROPPABLE)
            if message is not None:
                yield message
            step = self.parked_ms
            if b.topup_until > t:
                step = min(step, b.topup_until - t)
            v.next_report = t + step

    # ------------------------------------------------------------------ chargers

    def _anon_gap(self, c: _ChargerRun) -> int:
        return int(max(0.5, c.rng.expovariate(1 / c.spec.mean_gap_h)) * HOUR_MS)

    def _charger(self, world: _World, c: _ChargerRun) -> Iterator[Message]:
        rng = c.rng
        c.energy_wh = rng.uniform(1e5, 1e7)
        heartbeat = self.start_ms + rng.randrange(self.parked_ms)
        walk_in = heartbeat + self._anon_gap(c)  # next car from outside the fleet
        while True:
            booking = c.bookings[0] if c.bookings else None
            booked = booking.plug if booking is not None else NEVER
            t = min(heartbeat, walk_in, booked)
            if booking is not None and t == booked:
                c.bookings.pop(0)
                yield from self._session(world, c, booking.plug, booking.session,
                                         booking.unplug, booking.vin)
                after = booking.unplug
            elif t == walk_in:
                minutes = rng.uniform(20, 60) if c.spec.dc else rng.uniform(60, 240)
                power = min(c.spec.power_kw, rng.choice((50.0, 80.0, 120.0)) if c.spec.dc
                            else rng.choice((11.0, 22.0))) * rng.uniform(0.92, 0.98)
                latest = walk_in + PLUG_TO_CHARGE_MS + int(minutes * MINUTE_MS)
                if booking is not None:  # a fleet car has booked: be gone before it comes
                    latest = min(latest, booking.plug - CHARGER_GAP_MS - 5 * MINUTE_MS)
                session = _new_session(walk_in + _startup_ms(c, walk_in), rng.uniform(10, 60),
                                       95.0,
                                       power, rng.uniform(50, 90), latest)
                if session.end - session.start < PUBLIC_MIN_SESSION_MS:
                    walk_in = (booking.unplug if booking else walk_in) + self._anon_gap(c)
                    continue
                linger = int(rng.uniform(1, 5) * MINUTE_MS)
                self._charger_faults(c, session)
                # After the faults, as for a fleet car (``_reserve``): a driver whose session
                # stopped early unplugs minutes later, not at the planned end.
                unplug = session.end + linger
                yield from self._session(world, c, walk_in, session, unplug, None)
                after = unplug
            else:
                yield self._status(c, heartbeat, "Available")
                heartbeat += self.parked_ms
                continue
            heartbeat = after + self.parked_ms
            if walk_in <= after:
                walk_in = after + self._anon_gap(c)

    @staticmethod
    def _charger_faults(c: _ChargerRun, session: ChargeSession) -> None:
        """An injected charger fault shapes the session before either side runs it."""
        fault = c.spec.fault
        if fault is None or c.fault_rng is None:
            return
        if fault.name == "charger_derating" and session.start >= fault.onset_ts:
            session.fold_at = session.start + DERATING_FOLDBACK_AFTER_MS
            session.fold_factor = derating_fraction(fault, session.start)
        elif fault.name == "charger_fault":
            _maybe_fail(session, fault, c.fault_rng, "Faulted")

    def _charger_msg(self, c: _ChargerRun, kind: Kind, ts: int, body: dict[str, Any]) -> Message:
        c.seq += 1
        c.committed_until = ts
        return ts, topic_for(kind, c.spec.charger_id), orjson.dumps(
            {"ts": ts, "seq": c.seq, **body})

    def _status(self, c: _ChargerRun, ts: int, status: str,
                error_code: str = "NoError") -> Message:
        return self._charger_msg(c, Kind.CHARGER_STATUS, ts, {
            "connectorId": 1, "status": status, "errorCode": error_code})

    def _session(self, world: _World, c: _ChargerRun, plug: int, session: ChargeSession,
                 unplug: int, vin: str | None) -> Iterator[Message]:
        rng = c.rng
        c.busy_until = unplug
        c.transaction += 1
        transaction = (c.spec.index + 1) * 100_000 + c.transaction % 100_000
        energy0 = c.energy_wh
        offered = c.spec.power_kw * 1000
        yield self._status(c, plug, "Preparing")
        yield self._status(c, session.start, "Charging")
        t = session.start
        while True:
            last = t >= session.end
            t = min(t, session.end)
            soc = session.soc_at(t)
            power = session.power_at(t) * 1000 * rng.uniform(0.97, 1.01) if not last else 0.0
            volts = (330 + 0.8 * soc + rng.gauss(0, 1.5)) if c.spec.dc else 400 + rng.gauss(0, 2)
            amps = power / volts if c.spec.dc else power / (math.sqrt(3) * volts)
            measurands = {
                "Power.Active.Import": round(min(power, offered), 1),
                "Power.Offered": offered,
                "Current.Import": round(amps, 2),
                "Voltage": round(volts, 1),
                "Energy.Active.Import.Register": round(
                    energy0 + session.energy_kwh(t) * 1000, 1),
                "SoC": round(soc, 1),
            }
            if c.spec.dc:
                # A folded-back stage is hot: that is why it folds back.
                hot = 30.0 * (1.0 - session.fold_factor) if t >= session.fold_at else 0.0
                measurands["Temperature"] = round(world.weather.ambient(t) + 8 + hot
                                                  + 17 * power / offered + rng.gauss(0, 0.5), 1)
            body: dict[str, Any] = {"connectorId": 1, "transactionId": transaction,
                                    "measurands": measurands}
            if vin is not None:
                body["vin"] = vin
            yield self._charger_msg(c, Kind.CHARGER_METER, t, body)
            if last:
                break
            t += self.drive_ms
        c.energy_wh = energy0 + session.energy_kwh(session.end) * 1000
        if session.fault_code is not None:
            yield self._status(c, session.end, session.fault_status, session.fault_code)
        else:
            yield self._status(c, session.end, "Finishing")
        yield self._status(c, unplug, "Available")


def _startup_ms(c: _ChargerRun, plug: int, car_fault: FaultInstance | None = None,
                car_rng: random.Random | None = None) -> int:
    """Plug-in to energy flowing at ``c`` (see ``STARTUP_*``): the charger's pace, jitter, a
    healthy repeat now and then, and the repeats worn contacts need on either side."""
    rng = c.startup_rng
    if rng is None:
        return PLUG_TO_CHARGE_MS
    seconds = c.startup_s + rng.uniform(-STARTUP_JITTER_S, STARTUP_JITTER_S)
    retries = int(rng.random() < STARTUP_RETRY_PROB)
    for fault, draws in ((c.spec.fault, rng), (car_fault, car_rng)):
        if fault is None or draws is None or fault.name not in ("charger_fault", "inlet_fault"):
            continue
        worn = session_fault_prob(fault, plug)
        while retries < STARTUP_MAX_RETRIES and draws.random() < worn:
            retries += 1
    seconds += sum(rng.uniform(*STARTUP_RETRY_S) for _ in range(retries))
    return int(seconds * SECOND_MS)


def _free_from(c: _ChargerRun, wanted: int) -> int:
    """The earliest plug-in time at ``c`` from ``wanted`` on: after what its generator has
    committed, the session it runs and the bookings it has (the coupling rule)."""
    plug = max(wanted, c.committed_until, c.busy_until)
    if c.bookings:
        plug = max(plug, c.bookings[-1].unplug + CHARGER_GAP_MS)
    return plug


def _silenced(fault: FaultInstance | None, stream: Iterator[Message]) -> Iterator[Message]:
    """Faults ``silent`` / ``charger_silent``: nothing from the onset on. The stream must end
    (not just stop yielding), or the merge of all devices would wait on it forever."""
    if fault is None or fault.name not in ("silent", "charger_silent"):
        return stream
    return takewhile(lambda m: m[0] < fault.onset_ts, stream)


_DRIVE_DROPPABLE = (
    "Vehicle.Speed", "Vehicle.TraveledDistance", "Vehicle.LowVoltageBattery.CurrentVoltage",
    "Vehicle.LowVoltageBattery.CurrentCurrent",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
    "Vehicle.Powertrain.TractionBattery.Temperature.Average",
    "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature",
    "Vehicle.Exterior.AirTemperature", *TIRE_PRESSURE_SIGNALS,
)
_PARKED_DROPPABLE = (
    "Vehicle.Exterior.AirTemperature", "Vehicle.LowVoltageBattery.CurrentVoltage",
    "Vehicle.LowVoltageBattery.CurrentCurrent",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
)


def _maybe_fail(session: ChargeSession, fault: FaultInstance, rng: random.Random,
                soft_status: str) -> None:
    """With the fault's probability at the session's start, end it early with an error code.

    Codes that stop the hardware (ground fault, lock, temperature, meter) fault the connector;
    ``EVCommunicationError`` is reported with ``soft_status`` (a car that stops talking ends
    the session, the connector itself is fine).
    """
    if session.fault_code is not None or rng.random() >= session_fault_prob(fault, session.start):
        return
    codes = list(fault.params["codes"])
    code = codes[rng.randrange(len(codes))]
    session.end = session.start + int((session.end - session.start) * rng.uniform(0.02, 0.5))
    session.fault_code = code
    session.fault_status = soft_status if code == "EVCommunicationError" else "Faulted"


def _new_session(start: int, soc0: float, target: float, power_kw: float, capacity_kwh: float,
             latest_end: int, charger_id: str | None = None) -> ChargeSession:
    pct_per_ms = power_kw * CHARGE_EFFICIENCY / capacity_kwh * 100 / HOUR_MS
    full = start + int(max(0.0, target - soc0) / pct_per_ms)
    return ChargeSession(start, min(full, latest_end), soc0, pct_per_ms, power_kw, charger_id)


def _trip(depart: int, minutes: float, origin: Point, dest: Point, place: str,
          loop: bool = False) -> Trip:
    arrive = depart + int(minutes * MINUTE_MS)
    route_km = _distance_km(origin, dest) * 1.3 * (2 if loop else 1)
    # The ramps at both ends cost about a ramp's worth of cruising.
    cruising_h = max(minutes * MINUTE_MS - RAMP_MS, MINUTE_MS) / HOUR_MS
    return Trip(depart, arrive, origin, dest, place, loop,
                _clamp(route_km / cruising_h, 15.0, 130.0))


def _clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


def _offset_point(origin: Point, km: float, bearing: float) -> Point:
    lat = origin[0] + km * math.cos(bearing) / 111.2
    lon = origin[1] + km * math.sin(bearing) / (111.2 * math.cos(math.radians(origin[0])))
    return lat, lon


def _distance_km(a: Point, b: Point) -> float:
    dy = (b[0] - a[0]) * 111.2
    dx = (b[1] - a[1]) * 111.2 * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dx, dy)


# ISO 3779 VINs with the North-American check digit (position 9) and model year (position 10).
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_VIN_VALUES = {**{str(d): d for d in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
               **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MODEL_YEARS = "KLMNPRST"  # 2019-2026


def vin_check_digit(vin: str) -> str:
    total = sum(_VIN_VALUES[ch] * w for ch, w in zip(vin, _VIN_WEIGHTS, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)


def _vin(rng: random.Random, model: ModelSpec, taken: set[str]) -> str:
    while True:
        body = ("WCR" + model.vds + "0" + rng.choice(_MODEL_YEARS)
                + rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + f"{rng.randrange(10**6):06d}")
        vin = body[:8] + vin_check_digit(body) + body[9:]
        if vin not in taken:
            taken.add(vin)
            return vin
