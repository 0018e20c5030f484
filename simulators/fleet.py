"""A deterministic simulated fleet of cars (electric, hybrid, combustion) and chargers (pure:
no I/O, no wall clock).

Why it matters
--------------
Every detector is scored against this fleet: its faults are labelled (``truth()``: which
asset, which fault, onset, failure), its physics is the ground truth, and a score means
something only if the same arguments give the same stream, so a run can be replayed, compared
and explained.

Rules
-----
* ``Fleet.messages()`` yields ``(ts_ms, topic, payload)`` in non-decreasing simulated time,
  built with the contract module, byte-identical for the same arguments (every call replays
  the same stream: all mutable state is created by the call, ``simulators.state``).
* Each device is a generator walking its own timeline (``simulators.vehicle``,
  ``simulators.charger``); ``heapq.merge`` interleaves them. A car books a charger only from
  the time the charger's generator has already committed to the merge
  (``simulators.public_charging``), so the charger always learns of a session before its own
  clock reaches it.
* Devices run unbounded; ``messages(until_ms)`` cuts the merged stream, so a shorter run is
  exactly a prefix of a longer one (nothing inside the model knows where the run ends).
* Simulated time is the region's local time (the daily routine and the weather read the clock
  of ``ts`` directly).

Where the model lives, top-down
-------------------------------
``fleet`` (this module: the fleet, its truth and the merge) > ``vehicle`` / ``charger`` (the
devices' timelines) > ``booking`` (where a car charges, retries) > ``state`` (a run's mutable
state) > ``public_charging`` (what car and charger share, the coupling, start-up and charging
faults) > ``population`` (the seed's draws) > ``routine`` (when a car drives where) > ``spec``
(models and fixed descriptions) > ``physics`` (weather, 12 V battery, tyres, cooling, cells,
charging) > ``geo``, ``vin``, ``stream`` > ``faults`` (the registry of injectable faults).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Mapping
from datetime import datetime
from itertools import takewhile
from operator import itemgetter
from typing import Any

from simulators.charger import ChargerSim
from simulators.faults import assign_faults
from simulators.physics.weather import Weather
from simulators.population import (
    DEFAULT_POWERTRAIN_MIX,
    check_powertrain_mix,
    draw_charger,
    draw_vehicle,
)
from simulators.public_charging import ChargerRun
from simulators.spec import ChargerSpec, VehicleSpec
from simulators.state import RunSettings, VehicleRun, World
from simulators.stream import Message, silenced
from simulators.vehicle import VehicleSim
from vocab.eventtime import SECOND_MS

DEFAULT_START = "2026-01-05T00:00:00Z"  # a Monday, midnight: every car is parked at home
DEFAULT_START_MS = int(datetime.fromisoformat(DEFAULT_START.replace("Z", "+00:00")).timestamp()
                       * SECOND_MS)
DEFAULT_DRIVE_INTERVAL_S = 60.0
DEFAULT_PARKED_INTERVAL_S = 1800.0


class Fleet:
    def __init__(
        self,
        n_vehicles: int,
        n_chargers: int = 0,
        seed: int = 1,
        start_ms: int = DEFAULT_START_MS,
        faults: dict[str, int] | None = None,
        drive_interval_s: float = DEFAULT_DRIVE_INTERVAL_S,
        parked_interval_s: float = DEFAULT_PARKED_INTERVAL_S,
        cell_report_fraction: float = 0.0,
        powertrain_mix: Mapping[str, float] | None = None,
    ) -> None:
        if n_vehicles < 0 or n_chargers < 0:
            raise ValueError("fleet sizes must be >= 0")
        if drive_interval_s <= 0 or parked_interval_s <= 0:
            raise ValueError("intervals must be > 0")
        self.seed = seed
        self.start_ms = start_ms
        self.drive_ms = max(1, int(drive_interval_s * SECOND_MS))
        self.parked_ms = max(1, int(parked_interval_s * SECOND_MS))
        self.cell_report_fraction = cell_report_fraction
        # Weights by powertrain (``population.DEFAULT_POWERTRAIN_MIX`` when None).
        self.powertrain_mix = check_powertrain_mix(
            DEFAULT_POWERTRAIN_MIX if powertrain_mix is None else powertrain_mix)
        rng = random.Random(f"fleet-{seed}")
        by_vehicle, by_charger = assign_faults(faults or {}, n_vehicles, n_chargers, rng)
        vins: set[str] = set()
        self.vehicles: list[VehicleSpec] = [
            draw_vehicle(seed, start_ms, i, by_vehicle.get(i), vins, cell_report_fraction,
                         self.powertrain_mix)
            for i in range(n_vehicles)]
        self.charger_specs: list[ChargerSpec] = [
            draw_charger(seed, start_ms, i, by_charger.get(i)) for i in range(n_chargers)]
        self.chargers = [c.charger_id for c in self.charger_specs]
        # OTA hooks (simulators.ota_runtime): VIN -> event time a bad release was installed,
        # read at each parked report; and the per-run vehicle state of the latest
        # ``messages()`` call, so OTA reports share the car's one ``seq`` counter.
        self.bad_release_since: dict[str, int] = {}
        self._runs: dict[str, VehicleRun] = {}

    def next_seq(self, vin: str) -> int:
        """The next ``seq`` of this car in the running stream (OTA reports use it too, so
        the cloud's per-device duplicate check sees one counter)."""
        return self._runs[vin].next_seq()

    def vehicle_run(self, vin: str) -> VehicleRun | None:
        """The car's state in the running stream (remote commands read its 12 V battery)."""
        return self._runs.get(vin)

    def truth(self) -> list[dict[str, Any]]:
        """Ground truth: one entry per injected fault (asset, fault, onset, failure, params)."""
        out: list[dict[str, Any]] = []
        for v in self.vehicles:
            if v.fault is not None:
                out.append({"vin": v.vin, "model": v.model, "powertrain": v.powertrain,
                            "fault": v.fault.name,
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
        settings = RunSettings(self.seed, self.start_ms, self.drive_ms, self.parked_ms)
        world = World(
            Weather(self.seed, self.start_ms),
            [ChargerRun(c, random.Random(f"charger-run-{self.seed}-{c.index}"),
                        fault_rng=random.Random(f"charger-fault-run-{self.seed}-{c.index}")
                        if c.fault is not None else None,
                        startup_rng=random.Random(f"charger-startup-{self.seed}-{c.index}"))
             for c in self.charger_specs],
        )
        vehicles = VehicleSim(settings, world, self._runs,
                              lambda vin: self.bad_release_since.get(vin))
        chargers = ChargerSim(settings, world)
        streams = [silenced(spec.fault, vehicles.stream(spec)) for spec in self.vehicles]
        streams += [silenced(c.spec.fault, chargers.stream(c)) for c in world.chargers]
        merged = heapq.merge(*streams, key=itemgetter(0))
        if until_ms is None:
            return merged
        # The devices run unbounded and the merged stream is cut: a shorter run is exactly a
        # prefix of a longer one (nothing inside the model knows where the run ends).
        return takewhile(lambda m: m[0] < until_ms, merged)
