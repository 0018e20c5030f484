"""A scenario through the detectors: every record through the offline diagnostics (what the
worker runs, without brokers), collecting every alert upsert."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnostics.generic_signals import GenericSignals
from diagnostics.offline import OfflineDiagnostics
from ownercare.evaluation.scenario import Scenario
from ownercare.evaluation.simprocess import simulated_records

Alert = dict[str, Any]
# Called after each record went through the detectors: the record, the diagnostics (every
# asset's detector states, as they are now) and the alert upserts that record caused.
Observer = Callable[[Mapping[str, Any], OfflineDiagnostics, list[Alert]], None]


@dataclass
class Run:
    """What a scenario produced: the truth, every alert upsert in emission order, counts."""

    scenario: Scenario
    truth: list[dict[str, Any]]
    alerts: list[Alert]
    messages: int
    start_ms: int
    end_ms: int
    # Every charging session the charger pipeline finished (scores derating per session).
    session_outcomes: list[dict[str, Any]] = field(default_factory=list)


def detect(records: Iterable[Mapping[str, Any]], end_ms: int,
           observe: Observer | None = None,
           diagnostics: OfflineDiagnostics | None = None,
           generic: GenericSignals | None = None) -> list[Alert]:
    """Every canonical record through the offline diagnostics, one at a time, then ``finish``.

    ``eval`` and ``replay`` both call this, so they score the same thing. ``generic``: also
    the generic detector on every numeric signal (the worker's ``diagnose-generic`` agent,
    ``OWNERCARE_GENERIC_DETECTOR``), its alerts after the record's others.
    """
    diagnostics = diagnostics or OfflineDiagnostics()
    generic_states: dict[str, Any] = {}
    alerts: list[Alert] = []
    for record in records:
        caused = diagnostics.process([record])
        if generic is not None and record["kind"] == "vehicle_telemetry":
            caused += generic.process([record], generic_states)[0]
        alerts.extend(caused)
        if observe is not None:
            observe(record, diagnostics, caused)
    alerts.extend(diagnostics.finish(end_ms))
    if generic is not None:
        alerts.extend(generic.due(generic_states, end_ms))
    return alerts


def run_scenario(scenario: Scenario, processes: int = 2, observe: Observer | None = None,
                 record: Path | None = None, generic: GenericSignals | None = None) -> Run:
    """Simulate ``scenario`` and run the detectors over it (``record``: see
    :func:`~ownercare.evaluation.scenario.raw_stream`; ``generic``: see :func:`detect`)."""
    fleet = scenario.fleet()
    end_ms = scenario.end_ms(fleet)
    counter = [0]

    def counted() -> Iterator[dict[str, Any]]:
        for item in simulated_records(scenario, processes, record):
            counter[0] += 1
            yield item

    diagnostics = OfflineDiagnostics()
    alerts = detect(counted(), end_ms, observe, diagnostics, generic)
    return Run(scenario, fleet.truth(), alerts, counter[0], fleet.start_ms, end_ms,
               diagnostics.session_outcomes)
