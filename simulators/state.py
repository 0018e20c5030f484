"""What changes during a run: each car's state, the world the devices share, the run's pace.

Why it matters
--------------
``Fleet.messages()`` must replay the same stream at every call, so nothing it changes may
outlive the call: every mutable object of a run is created here, from the frozen specs
(``simulators.spec``), when the run starts. Each device's RNGs are named after the seed, the
device and their purpose, so a draw of one concern never shifts another's.

Rules
-----
* ``RunSettings``: the seed, the start and the reporting intervals, fixed for a run.
* ``VehicleRun``: a car's physics (12 V battery, cooling, cells), its position in the routine,
  its charging session and its one ``seq`` counter (OTA reports use it too).
* ``World``: what every device sees (the weather, the chargers' runs).
* A car whose 12 V battery failed (``failed_at``) is dead from then on: it never drives,
  charges or tops up again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from simulators.physics.battery12v import Battery12V
from simulators.physics.cells import CellPack
from simulators.physics.charging import ChargeSession
from simulators.physics.thermal import Thermal
from simulators.physics.weather import Weather
from simulators.public_charging import ChargerRun
from simulators.spec import VehicleSpec
from simulators.stream import NEVER


@dataclass(frozen=True)
class RunSettings:
    seed: int
    start_ms: int
    drive_ms: int  # telemetry interval while driving (and of a charger's meter values)
    parked_ms: int  # telemetry interval while parked (and of a charger's heartbeat)


@dataclass
class VehicleRun:
    spec: VehicleSpec
    rng: random.Random
    battery: Battery12V
    thermal: Thermal
    soc: float
    odometer_m: float
    place: str = "home"
    seq: int = 0
    next_report: int = 0
    charge: ChargeSession | None = None
    dtc_pending: tuple[int, str] | None = None
    failed_at: int = NEVER
    cranked: bool = False
    model_reported: bool = False
    cells: CellPack | None = None
    fault_rng: random.Random | None = None  # draws of an injected fault, apart from ``rng``
    startup_rng: random.Random | None = None  # inlet_fault: its start-up retries' draws
    # Retries after an abnormal public session: draws of their own (``retry_rng``), the
    # departure of the current stop and the retries it has left.
    retry_rng: random.Random | None = None
    stop_depart: int | None = None
    retries_left: int = 0
    stop_failed_at: list[str] = field(default_factory=list)  # chargers failed at this stop
    # Cars with an engine: fuel level (%), engine coolant (°C) and when it was last followed.
    fuel_pct: float = 0.0
    engine_c: float | None = None
    engine_ts: int = 0

    def dead(self, ts: int) -> bool:
        return ts >= self.failed_at

    def next_seq(self) -> int:
        """The car's next ``seq`` (telemetry, events and OTA reports share one counter, so
        the cloud's per-device duplicate check sees one sequence)."""
        self.seq += 1
        return self.seq


@dataclass
class World:
    weather: Weather
    chargers: list[ChargerRun]
