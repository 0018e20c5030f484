"""Fault injection: the registry of injectable faults and the ``--faults`` spec parser.

Each fault is labelled: the simulator writes the ground truth (which asset, which fault, when it
started, when the asset would fail) so tests and ``ownercare eval`` can score the detectors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

# 12 V battery physics shared with the fleet model. The detector (diagnostics.battery12v) is
# written against the same physics but must not import it: the simulator is the ground truth.
FAILURE_V25 = 11.9  # below this resting voltage (at 25 °C) the car cannot wake its HV system


@dataclass(frozen=True)
class FaultSpec:
    name: str
    asset: Literal["vehicle", "charger"]
    description: str


FAULTS: dict[str, FaultSpec] = {
    "weak_12v": FaultSpec(
        "weak_12v", "vehicle",
        "12 V battery losing capacity: resting voltage declines 0.02-0.08 V/day until the car "
        "cannot start",
    ),
    "dtc": FaultSpec(
        "dtc", "vehicle",
        "the car sets a diagnostic trouble code at its first report after the onset; left "
        "alone, the fault stops the car two days later",
    ),
}

# Codes a `dtc` fault sets (SAE J2012), with what they mean.
DTC_CODES: dict[str, str] = {
    "P0AA6": "hybrid/EV battery voltage system isolation fault",
    "C0035": "left front wheel speed sensor circuit",
    "P0A7F": "hybrid/EV battery pack deterioration",
    "U0100": "lost communication with the powertrain control module",
}
DTC_FAILURE_AFTER_MS = 2 * 86_400_000


def parse_fault_spec(spec: str | None, vehicles: int, chargers: int) -> dict[str, int]:
    """Parse ``weak_12v:3,slow_leak:2``; raise ValueError naming what is wrong."""
    counts: dict[str, int] = {}
    if not spec:
        return counts
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, count_text = part.partition(":")
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
        wanted = sum(c for n, c in counts.items() if FAULTS[n].asset == kind)
        if wanted > available:
            raise ValueError(f"{wanted} {kind} faults requested but the fleet has only "
                             f"{available} {kind}s (each {kind} carries at most one fault)")
    return counts


def assign_faults(
    counts: dict[str, int], vehicles: int, chargers: int, rng: random.Random
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
            target[pool.pop()] = name
    return by_vehicle, by_charger
