"""What ``ownercare eval`` simulates: a scenario (seed, fleet size, days, fault mix) and its
MQTT messages.

Default fault mix (:func:`default_fault_mix`): every registered fault gets
``max(1, assets // 50)`` assets of its kind (2 %), in name order, as long as at most half of
that kind's assets are faulty; the rest stay healthy as look-alikes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from io import BufferedIOBase
from pathlib import Path

from simulators.faults import FAULTS
from simulators.fleet import Fleet
from vocab.eventtime import DAY_MS

# Healthy cars report cell voltages only in the fleets that score the cell detector (so the
# simulator's output is otherwise unchanged); then all of them do, as look-alikes.
CELL_REPORT_FRACTION = {"cell_drift": 1.0}

Message = tuple[str, bytes]


@dataclass(frozen=True)
class Scenario:
    seed: int
    vehicles: int
    chargers: int
    days: int
    faults: Mapping[str, int] = field(default_factory=dict)
    drive_interval_s: float = 60.0
    parked_interval_s: float = 1800.0

    def fleet(self) -> Fleet:
        return Fleet(self.vehicles, self.chargers, seed=self.seed, faults=dict(self.faults),
                     drive_interval_s=self.drive_interval_s,
                     parked_interval_s=self.parked_interval_s,
                     cell_report_fraction=cell_report_fraction(self.faults))

    def end_ms(self, fleet: Fleet) -> int:
        return fleet.start_ms + self.days * DAY_MS


def cell_report_fraction(faults: Mapping[str, int]) -> float:
    return max((CELL_REPORT_FRACTION.get(f, 0.0) for f in faults if faults[f]), default=0.0)


def default_fault_mix(vehicles: int, chargers: int) -> dict[str, int]:
    """Every registered fault on 2 % of its asset kind (at least one), at most half faulty."""
    mix: dict[str, int] = {}
    for kind, assets in (("vehicle", vehicles), ("charger", chargers)):
        per_fault, budget = max(1, assets // 50), assets // 2
        for name in sorted(n for n, spec in FAULTS.items() if spec.asset == kind):
            count = min(per_fault, budget)
            if count:
                mix[name] = count
                budget -= count
    return mix


def open_record(path: Path) -> BufferedIOBase:
    """The file ``--record`` writes: gzip-compressed when its name ends in ``.gz``.

    A recording is one JSON object per message, the same few keys and VINs on every line, so
    it compresses about tenfold; level 6 (zlib's default) keeps the simulator the bottleneck.
    """
    if path.name.endswith(".gz"):
        return gzip.open(path, "wb", compresslevel=6)
    return path.open("wb")


def raw_stream(scenario: Scenario, record: Path | None = None) -> Iterator[Message]:
    """The scenario's MQTT messages (topic, payload); with ``record``, also written there as
    JSON lines ``{"topic": ..., "payload": {...}}`` (what ``ownercare replay`` reads),
    gzip-compressed when the name ends in ``.gz`` (:func:`open_record`)."""
    fleet = scenario.fleet()
    messages = fleet.messages(scenario.end_ms(fleet))
    if record is None:
        for _ts, topic, payload in messages:
            yield topic, payload
        return
    with open_record(record) as out:
        for _ts, topic, payload in messages:
            out.write(b'{"topic":' + json.dumps(topic).encode() + b',"payload":' + payload
                      + b"}\n")
            yield topic, payload
