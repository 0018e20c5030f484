"""What each detector made of a recording: assessed, abstained (and why), raised, or nothing.

``ownercare replay`` prints the alerts; on real data the silences matter as much: a detector
that never assessed anything has not vouched for the car. This runs the same detectors over
the same records (``ownercare.evaluation.run.detect``), each wrapped so that every assessment
it returns is tallied, and abstention reasons are grouped with their numbers blanked (the
last one is kept whole as the example).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnostics import registry
from diagnostics.base import Assessment, Detector, Outcome
from diagnostics.offline import OfflineDiagnostics
from diagnostics.pipeline import VehiclePipeline
from ownercare.evaluation.run import detect
from ownercare.replay import format_of, in_event_time_order, read_file

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@dataclass
class Tally:
    """One detector's answers over the whole recording."""

    calls: int = 0  # records and sweeps it was asked about
    assessments: int = 0
    active: int = 0
    abstentions: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def note(self, outcome: Outcome) -> Outcome:
        self.calls += 1
        assessment: Assessment | None = outcome[1]
        if assessment is not None:
            self.assessments += 1
            if assessment.abstain_reason is not None:
                pattern = _NUMBER.sub("N", assessment.abstain_reason)
                self.abstentions[pattern] += 1
                self.examples[pattern] = assessment.abstain_reason
            elif assessment.active:
                self.active += 1
        return outcome


class Watched(Detector):
    """``inner`` with every outcome tallied; the pipeline sees the inner detector's name,
    version, alarm policy and sweep capability."""

    def __init__(self, inner: Detector, tally: Tally) -> None:
        self.inner, self.tally = inner, tally
        for attr in ("name", "version", "alarm_policy", "sweeps"):
            setattr(self, attr, getattr(inner, attr))

    def new_state(self) -> dict[str, Any]:
        return self.inner.new_state()

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
               ) -> Outcome:
        return self.tally.note(self.inner.update(state, ts_ms, signals))

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        return self.tally.note(self.inner.on_event(state, ts_ms, event))

    def sweep(self, state: dict[str, Any], ts_ms: int) -> Outcome:
        return self.tally.note(self.inner.sweep(state, ts_ms))

    def sweep_times(self, state: Mapping[str, Any], since_ms: int, upto_ms: int,
                    interval_ms: int) -> list[int]:
        return self.inner.sweep_times(state, since_ms, upto_ms, interval_ms)


def census(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """Replay ``path`` (as ``ownercare replay`` reads it) and describe every vehicle
    detector's answers and every alert; ``bad_lines`` are the lines replay would reject."""
    parsed = read_file(path, fmt or format_of(path))
    tallies = {t: Tally() for t in registry.DETECTORS["vehicle"]}
    detectors = {t: Watched(d, tallies[t]) for t, d in registry.build("vehicle").items()}
    diagnostics = OfflineDiagnostics(vehicle_pipeline=VehiclePipeline(detectors))
    last = max((r["ts"] for _n, r in parsed.records), default=0)
    alerts = detect(in_event_time_order(parsed), last + 1, diagnostics=diagnostics)
    days = {(r["id"], r["ts"] // 86_400_000) for _n, r in parsed.records}
    first: dict[str, dict[str, Any]] = {}
    latest: dict[str, dict[str, Any]] = {}
    upserts: Counter[str] = Counter()
    for alert in alerts:  # upserts: the first says what was raised, the last how it ended
        first.setdefault(alert["id"], alert)
        latest[alert["id"]] = alert
        upserts[alert["id"]] += 1
    return {
        "records": len(parsed.records),
        "bad_lines": len(parsed.errors),
        "vehicles": len({r["id"] for _n, r in parsed.records}),
        "vehicle_days": len(days),
        "alert_upserts": len(alerts),
        "alerts": [{"raised": {k: first[i].get(k) for k in ("severity", "title", "evidence")},
                    **{k: a.get(k) for k in ("asset_id", "type", "severity", "status",
                                             "first_seen", "last_seen")},
                    "upserts": upserts[i]}
                   for i, a in latest.items()],
        "detectors": {t: {"version": detectors[t].version,
                          "calls": s.calls, "assessments": s.assessments,
                          "active": s.active,
                          "abstentions": [{"reason": s.examples[p], "times": n}
                                          for p, n in s.abstentions.most_common()]}
                      for t, s in tallies.items()},
    }
