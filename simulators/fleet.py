"""A deterministic simulated fleet of EVs and chargers (pure: no I/O, no wall clock).

``Fleet.messages()`` yields ``(ts_ms, topic, payload)`` in non-decreasing simulated time, built
with the contract module, byte-identical for the same arguments. Each device is a generator
walking its own timeline; ``heapq.merge`` interleaves them.

Vehicles: a daily routine (commute-like trips, ~10 % of days idle, occasional multi-day
parking), telemetry every ``drive_interval_s`` while driving and every ``parked_interval_s``
while parked, ignition / trip_end events, home charging when the traction battery is low.
Chargers: OCPP status heartbeats when idle, sessions with StatusNotification transitions and
MeterValues. Ambient temperature: a daily cycle around a slowly wandering weather offset with
occasional cold snaps.

12 V battery (lead-acid / AGM) physics, the ground truth the 12 V detector is scored against:

* healthy resting open-circuit voltage at 25 °C, ``V25``, drawn in [12.55, 12.80] V;
* measured resting voltage ``V25 + 0.0025 * (T_battery - 25)``; battery temperature follows
  ambient with a 3 h first-order lag (a few °C warmer while driving);
* while ON the DC-DC converter charges: 13.6-14.4 V; after key-off the surface charge decays:
  ``V_rest + 0.35 * exp(-t / 1 h)``;
* parked, a parasitic drain lowers V25 by 0.005 V/day, restored by the next drive; when the
  resting voltage falls below 12.35 V the parked car wakes its DC-DC for a 30 min top-up
  (14.0 V, +5 A, still OFF), at most once a day, which also restores the drain;
* Gaussian measurement noise, sigma 0.015 V;
* fault ``dtc``: at its first transmission after an onset in the first five days the car
  reports a trouble code (``DTC_CODES``); ignored, it would stop the car two days later.
* fault ``weak_12v``: from an onset in the first two days V25 declines linearly at 0.02-0.08
  V/day (not restored by charging); at ``FAILURE_V25`` the car can no longer wake: it stops
  driving and keeps reporting from where it is parked.
"""

from __future__ import annotations

import copy
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.contract import TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS, Kind, topic_for
from simulators.faults import DTC_CODES, DTC_FAILURE_AFTER_MS, FAILURE_V25, assign_faults

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
MODELS = ("Aurora EV", "Borealis EV", "Cirrus EV")
TEMP_COEFF_V_PER_C = 0.0025
SURFACE_CHARGE_V = 0.35
TOPUP_BELOW_V = 12.35
TOPUP_MS = 30 * 60_000
DRAIN_V_PER_DAY = 0.005
NOISE_V = 0.015
BATTERY_LAG_MS = 3 * HOUR_MS

Message = tuple[int, str, bytes]


class Weather:
    """Ambient temperature for the fleet's region, a pure function of (seed, time)."""

    def __init__(self, seed: int, start_ms: int, mean_c: float = 6.0) -> None:
        self.seed = seed
        self.start_ms = start_ms
        self.mean_c = mean_c
        self._offsets: list[float] = []
        self._rng = random.Random(f"weather-{seed}")
        self._snap_left = 0

    def _offset(self, day: int) -> float:
        while len(self._offsets) <= day + 1:
            prev = self._offsets[-1] if self._offsets else 0.0
            # A mean-reverting random walk of daily weather, plus rare cold snaps.
            value = 0.7 * prev + self._rng.gauss(0, 2.0)
            if self._snap_left == 0 and self._rng.random() < 0.04:
                self._snap_left = self._rng.randint(3, 6)
            if self._snap_left:
                self._snap_left -= 1
                value -= 12.0
            self._offsets.append(value)
        return self._offsets[day]

    def ambient(self, ts: int) -> float:
        days = (ts - self.start_ms) / DAY_MS
        day = max(0, int(days))
        frac = days - day
        weather = self._offset(day) * (1 - frac) + self._offset(day + 1) * frac
        hour = (ts % DAY_MS) / HOUR_MS
        daily = 5.0 * math.cos(2 * math.pi * (hour - 15) / 24)  # warmest 15:00, coldest 03:00
        return self.mean_c + weather + daily


@dataclass
class Battery12V:
    v25_initial: float
    fault_onset: int | None = None
    fault_rate_v_per_day: float = 0.0
    drain_v: float = 0.0
    temp_c: float = 10.0
    temp_ts: int = 0
    rest_start: int = 0  # key-off or end of the last top-up
    topup_until: int = -1
    last_topup: int = -DAY_MS

    def v25(self, ts: int) -> float:
        decline = 0.0
        if self.fault_onset is not None and ts > self.fault_onset:
            decline = self.fault_rate_v_per_day * (ts - self.fault_onset) / DAY_MS
        return self.v25_initial - self.drain_v - decline

    def failure_ts(self) -> int | None:
        if self.fault_onset is None:
            return None
        days = (self.v25_initial - FAILURE_V25) / self.fault_rate_v_per_day
        return self.fault_onset + int(days * DAY_MS)

    def follow_temperature(self, ts: int, target_c: float) -> None:
        dt = max(0, ts - self.temp_ts)
        self.temp_c += (target_c - self.temp_c) * (1 - math.exp(-dt / BATTERY_LAG_MS))
        self.temp_ts = ts

    def resting_v(self, ts: int) -> float:
        return self.v25(ts) + TEMP_COEFF_V_PER_C * (self.temp_c - 25.0)


@dataclass
class Vehicle:
    index: int
    vin: str
    model: str
    rng: random.Random
    battery: Battery12V
    home: tuple[float, float]
    soc: float
    odometer_m: float
    soh: float
    seq: int = 0
    fault: str | None = None
    dtc: tuple[int, str] | None = None  # (onset, code) of a `dtc` fault not yet reported
    dtc_reported_at: int | None = None
    tire_kpa: list[float] = field(default_factory=lambda: [250.0] * 4)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass(frozen=True)
class Trip:
    depart: int
    arrive: int
    km: float


class Fleet:
    def __init__(
        self,
        n_vehicles: int,
        n_chargers: int = 0,
        seed: int = 1,
        start_ms: int = 1_767_571_200_000,
        faults: dict[str, int] | None = None,
        drive_interval_s: float = 60,
        parked_interval_s: float = 1800,
    ) -> None:
        if n_vehicles < 0 or n_chargers < 0:
            raise ValueError("fleet sizes must be >= 0")
        if drive_interval_s <= 0 or parked_interval_s <= 0:
            raise ValueError("intervals must be > 0")
        self.seed = seed
        self.start_ms = start_ms
        self.drive_ms = int(drive_interval_s * 1000)
        self.parked_ms = int(parked_interval_s * 1000)
        self.weather = Weather(seed, start_ms)
        rng = random.Random(f"fleet-{seed}")
        by_vehicle, by_charger = assign_faults(faults or {}, n_vehicles, n_chargers, rng)
        vins: set[str] = set()
        self.vehicles: list[Vehicle] = []
        for i in range(n_vehicles):
            vrng = random.Random(f"vehicle-{seed}-{i}")
            vin = _vin(vrng, vins)
            battery = Battery12V(round(vrng.uniform(12.55, 12.80), 4), temp_c=8.0,
                                 temp_ts=start_ms, rest_start=start_ms - 12 * HOUR_MS)
            fault = by_vehicle.get(i)
            dtc = None
            if fault == "dtc":
                dtc = (start_ms + int(vrng.uniform(0.5, 5) * DAY_MS),
                       vrng.choice(sorted(DTC_CODES)))
            if fault == "weak_12v":
                battery.fault_onset = start_ms + int(vrng.uniform(0, 2) * DAY_MS)
                battery.fault_rate_v_per_day = round(vrng.uniform(0.02, 0.08), 4)
            self.vehicles.append(Vehicle(
                i, vin, MODELS[i % len(MODELS)], vrng, battery,
                home=(48.1 + vrng.uniform(-0.2, 0.2), 11.5 + vrng.uniform(-0.3, 0.3)),
                soc=vrng.uniform(50, 90), odometer_m=vrng.uniform(5e6, 6e7),
                soh=vrng.uniform(88, 99), fault=fault,
                tire_kpa=[vrng.uniform(245, 255) for _ in range(4)], dtc=dtc,
            ))
        self.chargers = [f"CP-{i + 1:04d}" for i in range(n_chargers)]
        self.charger_faults = {self.chargers[i]: f for i, f in by_charger.items()}

    def truth(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for v in self.vehicles:
            if v.fault == "dtc" and v.dtc is not None:
                onset, code = v.dtc
                out.append({"vin": v.vin, "model": v.model, "fault": "dtc", "onset_ts": onset,
                            "failure_ts": onset + DTC_FAILURE_AFTER_MS,
                            "params": {"code": code, "meaning": DTC_CODES[code]}})
            if v.fault == "weak_12v":
                b = v.battery
                out.append({"vin": v.vin, "model": v.model, "fault": "weak_12v",
                            "onset_ts": b.fault_onset, "failure_ts": b.failure_ts(),
                            "params": {"rate_v_per_day": b.fault_rate_v_per_day,
                                       "v25_initial": b.v25_initial}})
        return out

    def messages(self, until_ms: int | None = None) -> Iterator[Message]:
        """The message stream from the start; every call replays the same stream."""
        # Devices mutate as they run (battery, odometer, seq, RNG): run on fresh copies.
        self.weather = Weather(self.seed, self.start_ms)
        vehicles = copy.deepcopy(self.vehicles)
        streams = [self._vehicle(v, until_ms) for v in vehicles]
        streams += [self._charger(i, c, until_ms) for i, c in enumerate(self.chargers)]
        return heapq.merge(*streams, key=lambda m: m[0])

    # ------------------------------------------------------------------ vehicles

    def _plan_day(self, v: Vehicle, day_start: int) -> list[Trip]:
        rng = random.Random(f"plan-{self.seed}-{v.index}-{(day_start - self.start_ms) // DAY_MS}")
        if rng.random() < 0.10:
            return []  # a day at home
        trips: list[Trip] = []
        depart = day_start + int(rng.uniform(6.5, 9.0) * HOUR_MS)
        km = rng.uniform(5, 40)
        minutes = km / rng.uniform(30, 60) * 60
        trips.append(Trip(depart, depart + int(minutes * 60_000), km))
        back = day_start + int(rng.uniform(16.0, 18.5) * HOUR_MS)
        trips.append(Trip(back, back + int(minutes * rng.uniform(0.9, 1.3) * 60_000), km))
        if rng.random() < 0.3:
            eve = day_start + int(rng.uniform(19.5, 20.5) * HOUR_MS)
            ekm = rng.uniform(2, 15)
            trips.append(Trip(eve, eve + int(ekm / 35 * HOUR_MS), ekm))
        return trips

    def _vehicle(self, v: Vehicle, until_ms: int | None) -> Iterator[Message]:
        t = self.start_ms + v.rng.randrange(0, self.parked_ms)
        day_start = self.start_ms
        away_until = 0
        failed_at = v.battery.failure_ts()
        while until_ms is None or t < until_ms:
            day_end = day_start + DAY_MS
            trips: list[Trip] = []
            if day_start >= away_until:
                if v.rng.random() < 0.03:  # away: the car stays parked for several days
                    away_until = day_start + v.rng.randint(2, 5) * DAY_MS
                else:
                    trips = self._plan_day(v, day_start)
            for trip in trips:
                if trip.depart < t:
                    continue
                if failed_at is not None and trip.depart >= failed_at:
                    break  # the battery can no longer wake the car
                yield from self._parked(v, t, trip.depart, until_ms)
                if until_ms is not None and trip.depart >= until_ms:
                    return
                yield from self._drive(v, trip, until_ms)
                t = trip.arrive
            yield from self._parked(v, t, day_end, until_ms)
            t = max(t, day_end)
            day_start = day_end

    def _msg(self, v: Vehicle, kind: Kind, ts: int, body: dict[str, Any]) -> Message:
        return ts, topic_for(kind, v.vin), orjson.dumps({"ts": ts, "seq": v.next_seq(), **body})

    def _due_dtc(self, v: Vehicle, t: int) -> Iterator[Message]:
        """The car reports a trouble code with its first transmission after the onset."""
        if v.dtc is not None and v.dtc[0] <= t:
            code = v.dtc[1]
            v.dtc = None
            yield self._msg(v, Kind.VEHICLE_EVENT, t, {"type": "dtc", "code": code,
                                                       "state": "active"})

    def _volts(self, v: Vehicle, nominal: float) -> float:
        return round(min(19.9, max(0.1, nominal + v.rng.gauss(0, NOISE_V))), 3)

    def _drive(self, v: Vehicle, trip: Trip, until_ms: int | None) -> Iterator[Message]:
        b = v.battery
        yield self._msg(v, Kind.VEHICLE_EVENT, trip.depart, {"type": "ignition", "state": "ON"})
        duration = max(1, trip.arrive - trip.depart)
        start_odo, start_soc = v.odometer_m, v.soc
        t = trip.depart
        while t < trip.arrive:
            if until_ms is not None and t >= until_ms:
                return
            yield from self._due_dtc(v, t)
            progress = (t - trip.depart) / duration
            ambient = self.weather.ambient(t)
            b.follow_temperature(t, ambient + 3.0)
            v.odometer_m = start_odo + trip.km * 1000 * progress
            v.soc = max(3.0, start_soc - trip.km * 0.18 * progress)
            speed = max(0.0, trip.km / (duration / HOUR_MS) * v.rng.uniform(0.6, 1.4))
            signals: dict[str, Any] = {
                "Vehicle.Speed": round(min(speed, 180.0), 1),
                "Vehicle.IsMoving": speed > 0,
                "Vehicle.TraveledDistance": round(v.odometer_m, 1),
                "Vehicle.LowVoltageSystemState": "ON",
                "Vehicle.LowVoltageBattery.CurrentVoltage":
                    self._volts(v, v.rng.uniform(13.6, 14.4)),
                "Vehicle.LowVoltageBattery.CurrentCurrent": round(v.rng.uniform(2, 12), 2),
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(v.soc, 2),
                "Vehicle.Powertrain.TractionBattery.StateOfHealth": round(v.soh, 2),
                "Vehicle.Powertrain.TractionBattery.Temperature.Average":
                    round(ambient + 8 + 4 * progress + v.rng.gauss(0, 0.3), 2),
                "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature":
                    round(ambient + 20 + 15 * min(1.0, progress * 3) + v.rng.gauss(0, 0.5), 2),
                "Vehicle.Exterior.AirTemperature": round(ambient + v.rng.gauss(0, 0.2), 2),
                "Vehicle.CurrentLocation.Latitude":
                    round(v.home[0] + 0.05 * math.sin(progress * 3), 6),
                "Vehicle.CurrentLocation.Longitude": round(v.home[1] + 0.05 * progress, 6),
            }
            for path, kpa, tpath in zip(TIRE_PRESSURE_SIGNALS, v.tire_kpa, TIRE_TEMPERATURE_SIGNALS,
                                        strict=True):
                tire_c = ambient + 10 * min(1.0, progress * 4)
                # Gay-Lussac: pressure follows absolute temperature (placard is set at 20 °C).
                signals[path] = round((kpa + 101.3) * (tire_c + 273.15) / 293.15 - 101.3
                                      + v.rng.gauss(0, 0.5), 1)
                signals[tpath] = round(tire_c, 1)
            if v.rng.random() < 0.01:  # occasional gaps: a signal missing from a message
                signals.pop(v.rng.choice(sorted(signals)))
            if t == trip.depart:  # identification is reported when the car wakes up
                signals["Vehicle.VehicleIdentification.Model"] = v.model
            yield self._msg(v, Kind.VEHICLE_TELEMETRY, t, {"signals": signals})
            t += self.drive_ms
        v.odometer_m = start_odo + trip.km * 1000
        v.soc = max(3.0, start_soc - trip.km * 0.18)
        b.drain_v = 0.0  # the drive recharged the 12 V battery
        b.rest_start = trip.arrive
        yield self._msg(v, Kind.VEHICLE_EVENT, trip.arrive, {"type": "ignition", "state": "OFF"})
        yield self._msg(v, Kind.VEHICLE_EVENT, trip.arrive,
                        {"type": "trip_end", "distance_m": round(trip.km * 1000, 1)})

    def _parked(self, v: Vehicle, t0: int, t1: int, until_ms: int | None) -> Iterator[Message]:
        b = v.battery
        t = t0
        end = t1 if until_ms is None else min(t1, until_ms)
        last = t0
        charging = v.soc < 50 and v.rng.random() < 0.8  # plugged in at home tonight
        while t < end:
            yield from self._due_dtc(v, t)
            ambient = self.weather.ambient(t)
            b.follow_temperature(t, ambient)
            b.drain_v += DRAIN_V_PER_DAY * (t - last) / DAY_MS
            last = t
            if charging:
                v.soc = min(90.0, v.soc + 7.0 * (self.parked_ms / HOUR_MS) / 0.6)
                charging = v.soc < 90.0
            current = -0.05
            if b.topup_until > t:
                nominal, current = 14.0, 5.0
            elif (b.resting_v(t) < TOPUP_BELOW_V and t - b.last_topup >= DAY_MS
                  and not self._dead(v, t)):
                b.topup_until, b.last_topup = t + TOPUP_MS, t
                nominal, current = 14.0, 5.0
                b.drain_v = 0.0
                b.rest_start = t + TOPUP_MS
            else:
                since = max(0, t - b.rest_start)
                nominal = b.resting_v(t) + SURFACE_CHARGE_V * math.exp(-since / HOUR_MS)
            signals: dict[str, Any] = {
                "Vehicle.Speed": 0.0,
                "Vehicle.IsMoving": False,
                "Vehicle.LowVoltageSystemState": "OFF",
                "Vehicle.LowVoltageBattery.CurrentVoltage": self._volts(v, nominal),
                "Vehicle.LowVoltageBattery.CurrentCurrent": current,
                "Vehicle.Exterior.AirTemperature": round(ambient + v.rng.gauss(0, 0.2), 2),
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(v.soc, 2),
                "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": charging,
            }
            if v.rng.random() < 0.01:
                signals.pop("Vehicle.Exterior.AirTemperature")
            if v.rng.random() >= 0.005:  # and now and then a message never makes it out
                yield self._msg(v, Kind.VEHICLE_TELEMETRY, t, {"signals": signals})
            step = self.parked_ms
            if b.topup_until > t:
                step = min(step, b.topup_until - t)
            t += step

    def _dead(self, v: Vehicle, ts: int) -> bool:
        failed_at = v.battery.failure_ts()
        return failed_at is not None and ts >= failed_at

    # ------------------------------------------------------------------ chargers

    def _charger(self, index: int, charger_id: str, until_ms: int | None) -> Iterator[Message]:
        rng = random.Random(f"charger-{self.seed}-{index}")
        seq = 0
        energy_wh = rng.uniform(1e5, 1e7)
        transaction = index * 100_000

        def msg(kind: Kind, ts: int, body: dict[str, Any]) -> Message:
            nonlocal seq
            seq += 1
            return ts, topic_for(kind, charger_id), orjson.dumps({"ts": ts, "seq": seq, **body})

        def status(ts: int, value: str) -> Message:
            return msg(Kind.CHARGER_STATUS, ts, {"connectorId": 1, "status": value,
                                                 "errorCode": "NoError"})

        t = self.start_ms + rng.randrange(0, self.parked_ms)
        while until_ms is None or t < until_ms:
            # Idle: heartbeat until the next session starts.
            session_at = t + int(rng.uniform(2, 10) * HOUR_MS)
            while t < session_at and (until_ms is None or t < until_ms):
                yield status(t, "Available")
                t += self.parked_ms
            if until_ms is not None and t >= until_ms:
                return
            transaction += 1
            offered = rng.choice((11_000.0, 22_000.0, 50_000.0))
            soc = rng.uniform(10, 60)
            yield status(t, "Preparing")
            t += 60_000
            yield status(t, "Charging")
            end = t + int(rng.uniform(0.5, 1.5) * HOUR_MS)
            while t < end and (until_ms is None or t < until_ms):
                power = offered * rng.uniform(0.93, 0.99)
                energy_wh += power * self.drive_ms / HOUR_MS
                soc = min(100.0, soc + power / 1000 * self.drive_ms / HOUR_MS / 0.6)
                yield msg(Kind.CHARGER_METER, t, {
                    "connectorId": 1, "transactionId": transaction,
                    "measurands": {
                        "Power.Active.Import": round(power, 1),
                        "Power.Offered": offered,
                        "Current.Import": round(power / 400, 2),
                        "Voltage": round(400 + rng.gauss(0, 2), 1),
                        "Energy.Active.Import.Register": round(energy_wh, 1),
                        "SoC": round(soc, 1),
                    }})
                t += self.drive_ms
            yield status(t, "Finishing")
            t += 120_000
            yield status(t, "Available")
            t += self.parked_ms


def _vin(rng: random.Random, taken: set[str]) -> str:
    while True:
        vin = "WCR" + "".join(rng.choice(VIN_CHARS) for _ in range(14))
        if vin not in taken:
            taken.add(vin)
            return vin
