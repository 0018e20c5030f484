"""A simulated car: its timeline of drives and parked hours, as the car reports it.

Why it matters
--------------
This is what the cloud sees of a car: the telemetry and events a real one sends, with the
habits, physics, faults and gaps of a real one. Every detector is scored on it, so each signal
carries the physics it is read for (``simulators.physics``) and the stream carries the flaws
a real link has.

Rules
-----
* The car follows its daily routine (``simulators.routine``); now and then (``AWAY_*``) it
  stands for days where it is.
* While driving, telemetry every ``drive_ms``: speed (ramp up, AR(1) noise, traffic stops),
  odometer integrated from that speed, 12 V at the DC-DC's 13.6-14.4 V, SoC falling with
  distance (more in the cold), traction battery and coolant temperatures, the four tyre
  pressures and temperatures, air temperature, location (and the cell voltages, if the car
  reports them). Each sample stands for the interval after it.
* Parked, a smaller report every ``parked_ms``: 12 V voltage and current (with the top-ups),
  air temperature, SoC and whether it is charging (with the charge rate and the pack
  temperature while it is).
* Cars with an engine (``spec.powertrain`` other than ``bev``; ``simulators.physics.engine``)
  also report ``CombustionEngine.IsRunning``, ``.Speed`` and ``.EngineCoolant.Temperature``
  while driving and ``FuelSystem.RelativeLevel``; hybrids report no motor coolant, a hybrid
  never plugs in, and a combustion car reports no traction battery and, while its engine
  runs, the alternator's charging voltage instead of the DC-DC's (the battery's own in a
  stop-start pause); its ``trip_end`` carries no ``energy_kwh``.
* Events: ignition ON / OFF, ``trip_end`` (distance, duration, energy), ``charge_start`` /
  ``charge_end`` (at a public charger naming it: ``charger_id``), ``dtc`` and ``crank`` (a
  failed start, once, when the 12 V battery has failed). Fault ``dtc``: the car reports the
  trouble code (``faults.DTC_CODES``) with its first transmission after an onset in the first
  five days; ignored, it would stop the car two days later (the truth's ``failure_ts``).
* Gaps, as on a real link: ``MISSING_SIGNAL_PROB`` (1 %) of telemetry messages miss one
  signal and ``LOST_MESSAGE_PROB`` (0.5 %) are lost entirely (their ``seq`` is spent). The
  car reports its model and curb weight when it wakes up (its first telemetry of a drive or
  of the run).
* The car's own draws (when it first reports, absences, speed, noise, gaps, charging
  habits) come from its ``vehicle-run`` RNG in the order of the code below: that order is
  part of the stream, and moving one draw changes every later one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ingest.contract import TIRE_PRESSURE_SIGNALS, Kind, topic_for
from simulators.booking import plug_in, retry_public
from simulators.faults import PACK_LOAD_SHARE, alternator_v
from simulators.physics import engine
from simulators.physics.battery12v import (
    CRANK_DIP_V,
    DRIVING_WARMUP_C,
    PARKED_CURRENT_NOISE_A,
    Battery12V,
    draw_dcdc_v,
    driving_current_a,
    measured_v,
)
from simulators.physics.cells import CellPack
from simulators.physics.charging import ChargeSession
from simulators.physics.thermal import COOLANT_NOISE_C, PACK_NOISE_C, Thermal
from simulators.physics.tyres import cold_pressures, driving_tyre_c, tyre_signals
from simulators.routine import AWAY_DAYS, AWAY_START_PROB, RAMP_MS, Trip, clamp, plan_day
from simulators.spec import VehicleSpec
from simulators.state import RunSettings, VehicleRun, World
from simulators.stream import NEVER, Message
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS

TRAFFIC_STOP_PROB = 0.05
# Gaps: a signal missing from a message, or a whole telemetry message lost on the way.
MISSING_SIGNAL_PROB = 0.01
LOST_MESSAGE_PROB = 0.005
AIR_TEMP_NOISE_C = 0.2
STARTING_REST_MS = 12 * HOUR_MS  # at the start every car has stood since the evening before

DRIVE_DROPPABLE = (
    "Vehicle.Speed", "Vehicle.TraveledDistance", "Vehicle.LowVoltageBattery.CurrentVoltage",
    "Vehicle.LowVoltageBattery.CurrentCurrent",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
    "Vehicle.Powertrain.TractionBattery.Temperature.Average",
    "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature",
    "Vehicle.Exterior.AirTemperature", *TIRE_PRESSURE_SIGNALS,
)
PARKED_DROPPABLE = (
    "Vehicle.Exterior.AirTemperature", "Vehicle.LowVoltageBattery.CurrentVoltage",
    "Vehicle.LowVoltageBattery.CurrentCurrent",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
)
ENGINE_RUNNING = "Vehicle.Powertrain.CombustionEngine.IsRunning"
ENGINE_SPEED = "Vehicle.Powertrain.CombustionEngine.Speed"
ENGINE_COOLANT = "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature"
FUEL_LEVEL = "Vehicle.Powertrain.FuelSystem.RelativeLevel"
MOTOR_COOLANT = "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature"
# What a car without a traction battery does not report; hybrids report no motor coolant.
TRACTION_ONLY = (
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
    "Vehicle.Powertrain.TractionBattery.StateOfHealth",
    "Vehicle.Powertrain.TractionBattery.Temperature.Average",
    "Vehicle.Powertrain.TractionBattery.Charging.IsCharging",
)
ENGINE_DRIVE_DROPPABLE = (*(d for d in DRIVE_DROPPABLE if d not in TRACTION_ONLY
                            and d != MOTOR_COOLANT), ENGINE_SPEED, ENGINE_COOLANT, FUEL_LEVEL)
ENGINE_PARKED_DROPPABLE = (*(d for d in PARKED_DROPPABLE if d not in TRACTION_ONLY),
                           FUEL_LEVEL)


class VehicleSim:
    """The cars of one run: ``stream(spec)`` is one car's message stream."""

    def __init__(self, settings: RunSettings, world: World, runs: dict[str, VehicleRun],
                 bad_release_since: Callable[[str], int | None]) -> None:
        self.settings = settings
        self.world = world
        self.runs = runs  # VIN -> the car's run state, registered as each stream starts
        self.bad_release_since = bad_release_since  # VIN -> a bad OTA release installed at

    def new_run(self, spec: VehicleSpec) -> VehicleRun:
        seed, start_ms = self.settings.seed, self.settings.start_ms
        battery = Battery12V(spec.v25_initial, drain_ts=start_ms,
                             rest_start=start_ms - STARTING_REST_MS)
        thermal = Thermal(spec.thermal_resistance, spec.spec.mass_kg,
                          random.Random(f"thermal-run-{seed}-{spec.index}"))
        run = VehicleRun(spec, random.Random(f"vehicle-run-{seed}-{spec.index}"), battery,
                         thermal, soc=spec.soc, odometer_m=spec.odometer_m)
        self.runs[spec.vin] = run
        fault = spec.fault
        if spec.powertrain == "ice":
            battery.tops_up = False  # no DC-DC: only the running engine charges the 12 V
        run.fuel_pct = spec.fuel_pct
        if fault is not None and fault.name == "alternator":
            run.failed_at = fault.failure_ts if fault.failure_ts is not None else NEVER
        if fault is not None and fault.name == "weak_12v":
            battery.fault_onset = fault.onset_ts
            battery.fault_rate_v_per_day = float(fault.params["rate_v_per_day"])
            run.failed_at = fault.failure_ts if fault.failure_ts is not None else NEVER
        elif fault is not None and fault.name == "dtc":
            run.dtc_pending = (fault.onset_ts, str(fault.params["code"]))
        elif fault is not None and fault.name == "inlet_fault":
            run.fault_rng = random.Random(f"vehicle-fault-run-{seed}-{spec.index}")
            run.startup_rng = random.Random(f"vehicle-startup-{seed}-{spec.index}")
        run.retry_rng = random.Random(f"charge-retry-{seed}-{spec.index}")
        if fault is not None and fault.name == "coolant_pump":
            thermal.pump_onset = fault.onset_ts
            thermal.pump_growth_per_day = float(fault.params["growth_per_day"])
        if spec.reports_cells:
            run.cells = CellPack.draw(spec.spec.cells, spec.cell_spread_mv,
                                      random.Random(f"cells-run-{seed}-{spec.index}"))
            if fault is not None and fault.name == "cell_drift":
                run.cells.drift_onset = fault.onset_ts
                run.cells.drift_rate_mv_per_day = float(fault.params["rate_mv_per_day"])
                run.cells.drift_cell = int(fault.params["cell"])
        return run

    def stream(self, spec: VehicleSpec) -> Iterator[Message]:
        """The car's messages from the start of the run, unbounded."""
        start_ms = self.settings.start_ms
        v = self.new_run(spec)
        v.next_report = start_ms + v.rng.randrange(self.settings.parked_ms)
        now = start_ms
        first_midnight = start_ms - start_ms % DAY_MS  # routines run on the clock
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
                    trips = plan_day(self.settings.seed, v.spec, day_start, day)
            for k, trip in enumerate(trips):
                if trip.depart < now:
                    continue
                yield from self.park(v, trip.depart)
                if v.dead(trip.depart):
                    if not v.cranked:  # the owner tries, the car cannot close its contactors
                        v.cranked = True
                        yield self.event(v, trip.depart, {
                            "type": "crank", "voltage_min": measured_v(
                                v.battery.resting_v(trip.depart) - CRANK_DIP_V, v.rng),
                            "description": "no start: 12 V battery too weak to "
                                           + ("crank the engine" if spec.powertrain == "ice"
                                              else "wake the car")})
                    break
                next_depart = trips[k + 1].depart if k + 1 < len(trips) else None
                yield from self.drive(v, trip, next_depart)
                now = trip.arrive
            yield from self.park(v, day_end)
            now = day_end
            day += 1

    # ------------------------------------------------------------------ messages

    def event(self, v: VehicleRun, ts: int, body: dict[str, Any]) -> Message:
        return ts, topic_for(Kind.VEHICLE_EVENT, v.spec.vin), orjson.dumps(
            {"ts": ts, "seq": v.next_seq(), **body})

    def telemetry(self, v: VehicleRun, ts: int, signals: dict[str, Any],
                  droppable: tuple[str, ...]) -> Message | None:
        """A telemetry message, or None when it is lost on the way (its seq is spent)."""
        seq = v.next_seq()
        rng = v.rng
        if rng.random() < MISSING_SIGNAL_PROB:
            signals.pop(droppable[rng.randrange(len(droppable))], None)
        if not v.model_reported:  # identification is reported when the car wakes up
            v.model_reported = True
            signals["Vehicle.VehicleIdentification.Model"] = v.spec.model
            signals["Vehicle.CurbWeight"] = round(v.spec.spec.mass_kg)
        if rng.random() < LOST_MESSAGE_PROB:
            return None
        return ts, topic_for(Kind.VEHICLE_TELEMETRY, v.spec.vin), orjson.dumps(
            {"ts": ts, "seq": seq, "signals": signals})

    def due_dtc(self, v: VehicleRun, t: int) -> Iterator[Message]:
        """The car reports a trouble code with its first transmission after the onset."""
        if v.dtc_pending is not None and v.dtc_pending[0] <= t:
            code = v.dtc_pending[1]
            v.dtc_pending = None
            yield self.event(v, t, {"type": "dtc", "code": code, "state": "active"})

    def charge_event(self, v: VehicleRun, ts: int, kind: str,
                     session: ChargeSession) -> Message:
        body: dict[str, Any] = {"type": kind}
        if kind == "charge_end":
            body["energy_kwh"] = round(session.energy_kwh(ts), 3)
            body["duration_ms"] = ts - session.start
        if session.charger_id:
            body["description"] = f"public charger {session.charger_id}"
            body["charger_id"] = session.charger_id
        return self.event(v, ts, body)

    # ------------------------------------------------------------------ driving

    def drive(self, v: VehicleRun, trip: Trip, next_depart: int | None) -> Iterator[Message]:
        s, b, rng = v.spec, v.battery, v.rng
        drive_ms = self.settings.drive_ms
        yield from self.unplug(v, trip.depart)
        yield self.event(v, trip.depart, {"type": "ignition", "state": "ON"})
        v.place = "road"
        v.model_reported = False  # the car woke up: it reports its identification again
        weather = self.world.weather
        thermal = v.thermal
        thermal.pack_parked(trip.depart, weather.ambient(trip.depart))
        duration = max(1, trip.arrive - trip.depart)
        dcdc_v = draw_dcdc_v(rng)
        odo0 = v.odometer_m
        energy = 0.0
        noise = 0.0
        d_lat, d_lon = trip.dest[0] - trip.origin[0], trip.dest[1] - trip.origin[1]
        capacity = s.spec.capacity_kwh
        thermal.start_trip()
        t = trip.depart
        while t < trip.arrive:
            yield from self.due_dtc(v, t)
            elapsed = t - trip.depart
            dt = min(drive_ms, trip.arrive - t)
            ambient = weather.ambient(t)
            b.follow_temperature(t, ambient + DRIVING_WARMUP_C)
            hv = thermal.pack_driving(t, ambient)
            # The sample stands for the coming interval: ramp up, cruise with noise, slow down.
            ramp = min(1.0, (elapsed + dt / 2) / RAMP_MS, (trip.arrive - t - dt / 2) / RAMP_MS)
            noise = 0.75 * noise + rng.gauss(0, 0.12)
            speed = trip.cruise_kmh * max(0.05, ramp) * (1 + noise)
            if elapsed and rng.random() < TRAFFIC_STOP_PROB:
                speed = 0.0
            speed = clamp(speed, 0.0, 180.0)
            progress = elapsed / duration
            if trip.loop:
                progress = 1 - abs(1 - 2 * progress)
            wiggle = 0.004 * math.sin(math.pi * progress)
            rise = thermal.step(t, elapsed, drive_ms if elapsed else 0, speed)
            signals: dict[str, Any] = {
                "Vehicle.Speed": round(speed, 1),
                "Vehicle.IsMoving": speed > 0.5,
                "Vehicle.TraveledDistance": round(v.odometer_m),  # VSS: uint32 m
                "Vehicle.LowVoltageSystemState": "ON",
                "Vehicle.LowVoltageBattery.CurrentVoltage": measured_v(dcdc_v, rng),
                "Vehicle.LowVoltageBattery.CurrentCurrent": driving_current_a(elapsed, rng),
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(v.soc, 2),
                "Vehicle.Powertrain.TractionBattery.StateOfHealth": s.soh,
                "Vehicle.Powertrain.TractionBattery.Temperature.Average":
                    round(hv + PACK_LOAD_SHARE * rise + rng.gauss(0, PACK_NOISE_C), 2),
                "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature":
                    round(hv + PACK_LOAD_SHARE * rise + thermal.excess_c
                          + rng.gauss(0, COOLANT_NOISE_C), 2),
                "Vehicle.Exterior.AirTemperature":
                    round(ambient + rng.gauss(0, AIR_TEMP_NOISE_C), 2),
                "Vehicle.CurrentLocation.Latitude":
                    round(trip.origin[0] + d_lat * progress + wiggle, 6),
                "Vehicle.CurrentLocation.Longitude":
                    round(trip.origin[1] + d_lon * progress - wiggle, 6),
            }
            signals.update(tyre_signals(cold_pressures(s.tire_cold_kpa, s.fault, t),
                                        driving_tyre_c(ambient, elapsed), rng))
            if v.cells is not None:
                signals.update(v.cells.signals(t, v.soc, hv, driving=True, charging=False))
            running = False
            if s.has_engine:
                running = engine.runs(s.powertrain, speed, elapsed, v.soc)
                self.engine_signals(v, t, signals, running, speed, ambient, elapsed)
            message = self.telemetry(v, t, signals,
                                     ENGINE_DRIVE_DROPPABLE if s.has_engine else DRIVE_DROPPABLE)
            if message is not None:
                yield message
            # Integrate the interval this sample stands for.
            km = speed * dt / HOUR_MS
            v.odometer_m += km * 1000
            if running:
                v.fuel_pct = max(0.0, v.fuel_pct - engine.fuel_l(
                    km, dt, s.spec.fuel_l_per_100km * s.fuel_factor, ambient)
                    / s.spec.tank_l * 100)
            if s.powertrain == "hev":  # the engine charges the pack, driving drains it
                v.soc = clamp(v.soc + (0.4 if running else -0.6) * dt / MINUTE_MS, 40.0, 75.0)
            elif capacity > 0 and not running:
                kwh = km * s.kwh_per_km * (1 + 0.01 * max(0.0, 15.0 - ambient))
                energy += kwh
                floor = engine.PHEV_FLOOR_SOC if s.powertrain == "phev" else 1.0
                v.soc = max(floor, v.soc - kwh / capacity * 100)
            t += drive_ms
        # Arrival.
        b.key_off(trip.arrive)
        if s.powertrain == "ice":
            b.cap_v25 = engine.rest_cap_v25(alternator_v(s.fault, s.alternator_v, trip.arrive))
        if s.has_engine and v.fuel_pct < engine.REFILL_BELOW_PCT:
            v.fuel_pct = 100.0  # filled up on the way
        v.place = trip.dest_place
        v.next_report = trip.arrive
        yield self.event(v, trip.arrive, {"type": "ignition", "state": "OFF"})
        trip_end: dict[str, Any] = {
            "type": "trip_end", "distance_m": round(v.odometer_m - odo0, 1),
            "duration_ms": trip.arrive - trip.depart}
        if s.has_traction_battery:
            trip_end["energy_kwh"] = round(energy, 3)
        yield self.event(v, trip.arrive, trip_end)
        plug_in(self.world.chargers, v, trip.arrive, next_depart)

    def engine_signals(self, v: VehicleRun, t: int, signals: dict[str, Any], running: bool,
                       speed: float, ambient: float, elapsed: int) -> None:
        """A car with an engine: its engine and fuel signals, and, in a combustion car, the
        12 V the running alternator (or, in a stop-start pause, the battery) holds."""
        s, rng, b = v.spec, v.rng, v.battery
        if v.engine_c is None:
            v.engine_c = ambient
        else:  # parked since the last drive, or running (or paused) since the last sample
            v.engine_c = engine.coolant_c(v.engine_c, ambient, t - v.engine_ts,
                                          running and elapsed > 0)
        v.engine_ts = t
        signals[ENGINE_RUNNING] = running
        signals[ENGINE_SPEED] = engine.rpm(speed, rng) if running else 0.0
        signals[ENGINE_COOLANT] = round(v.engine_c + rng.gauss(0, engine.COOLANT_NOISE_C), 1)
        signals[FUEL_LEVEL] = int(round(v.fuel_pct))
        signals.pop(MOTOR_COOLANT, None)
        if s.powertrain != "ice":
            return
        for path in TRACTION_ONLY:
            signals.pop(path, None)
        battery_c = ambient if b.temp_c is None else b.temp_c
        if running:
            bus = engine.charging_v(alternator_v(s.fault, s.alternator_v, t), battery_c,
                                    idle=speed < 1.0) + rng.gauss(0, engine.RIPPLE_V)
            signals["Vehicle.LowVoltageBattery.CurrentVoltage"] = measured_v(bus, rng)
            signals["Vehicle.LowVoltageBattery.CurrentCurrent"] = engine.charging_current_a(
                bus, driving_current_a(elapsed, rng))
        else:  # a stop-start pause: the battery carries the car
            signals["Vehicle.LowVoltageBattery.CurrentVoltage"] = measured_v(
                b.resting_v(t) - engine.PAUSE_SAG_V, rng)
            signals["Vehicle.LowVoltageBattery.CurrentCurrent"] = round(
                engine.PAUSE_CURRENT_A + rng.gauss(0, 1.0), 2)

    def unplug(self, v: VehicleRun, ts: int) -> Iterator[Message]:
        """The car leaves: a home session still running ends now."""
        session = v.charge
        if session is None:
            return
        if session.started and not session.ended:
            session.end = min(session.end, ts)
            session.ended = True
            yield self.charge_event(v, session.end, "charge_end", session)
        v.soc = session.soc_at(ts)
        v.charge = None

    # ------------------------------------------------------------------ parked

    def park(self, v: VehicleRun, t1: int) -> Iterator[Message]:
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
                        yield self.charge_event(v, event_ts, "charge_start", session)
                    else:
                        session.ended = True
                        yield self.charge_event(v, event_ts, "charge_end", session)
                        v.soc = session.soc_at(event_ts)
                        v.charge = None
                        if session.fault_code is not None and session.charger_id is not None:
                            v.charge = retry_public(self.world.chargers, v, session)
                    continue
            if t >= end:
                return
            yield from self.due_dtc(v, t)
            ambient = self.world.weather.ambient(t)
            nominal, current = b.parked(t, ambient, self.bad_release_since(v.spec.vin),
                                        rng.gauss(0, PARKED_CURRENT_NOISE_A),
                                        can_wake=not v.dead(t))
            if session is not None and session.charging(t):
                soc, charging = session.soc_at(t), True
            else:
                soc, charging = (v.soc if session is None else session.soc_at(t)), False
            signals: dict[str, Any] = {
                "Vehicle.Speed": 0.0,
                "Vehicle.IsMoving": False,
                "Vehicle.LowVoltageSystemState": "OFF",
                "Vehicle.LowVoltageBattery.CurrentVoltage": measured_v(nominal, rng),
                "Vehicle.LowVoltageBattery.CurrentCurrent": current,
                "Vehicle.Exterior.AirTemperature":
                    round(ambient + rng.gauss(0, AIR_TEMP_NOISE_C), 2),
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(soc, 2),
                "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": charging,
            }
            if charging and session is not None:
                # VSS: W into the pack (ChargeRate is km of range per hour, not power).
                signals["Vehicle.Powertrain.TractionBattery.CurrentPower"] = round(
                    session.power_at(t) * 1000 * rng.uniform(0.98, 1.0), 1)
                # Charging heats the pack (fast charging by up to ~20 °C); the car reports it.
                pack = v.thermal.charging_pack(t, ambient, session.power_at(t))
                signals["Vehicle.Powertrain.TractionBattery.Temperature.Average"] = round(
                    pack + v.thermal.rng.gauss(0, PACK_NOISE_C), 2)
            if v.cells is not None:
                pack_c = ambient if b.temp_c is None else b.temp_c
                signals.update(v.cells.signals(t, soc, pack_c, driving=False, charging=charging))
            if v.spec.has_engine:
                signals[ENGINE_RUNNING] = False
                signals[FUEL_LEVEL] = int(round(v.fuel_pct))
                if not v.spec.plugs_in:
                    signals.pop("Vehicle.Powertrain.TractionBattery.Charging.IsCharging")
                if not v.spec.has_traction_battery:
                    signals.pop("Vehicle.Powertrain.TractionBattery.StateOfCharge.Current")
            message = self.telemetry(v, t, signals, ENGINE_PARKED_DROPPABLE
                                     if v.spec.has_engine else PARKED_DROPPABLE)
            if message is not None:
                yield message
            step = self.settings.parked_ms
            if b.topup_until > t:
                step = min(step, b.topup_until - t)
            v.next_report = t + step
