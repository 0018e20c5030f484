"""The generic detector on every numeric signal of a car (alert type ``signal_drift``).

Why it matters
--------------
The specific detectors know their physics; a real car fails in ways nobody wrote a model for,
and the signal catalogue keeps widening. This pipeline runs ``GenericScorer``
(``generic.py``) on *every* numeric signal a car reports -- whatever the record carries, no
list to maintain -- and raises one ``signal_drift`` alert per car when a signal keeps moving
somewhere it has never been, alone and in one direction, day after day
(``generic_rule.py``: that is the evidence a score event alone is not).

What is scored
--------------
Numbers (not booleans, strings, lists) except identifiers (a leaf named ``Id...``, such as
the cell number of the lowest cell) and where the car is (``Vehicle.CurrentLocation.*``: a
trip is not a fault). Counters (the odometer, energy totals) are scored but never evidence: a
signal whose value has never decreased is taken for a counter, and its new highs are its
nature.

Sampling and state writes
-------------------------
One value per signal per ``sample_s`` of event time (the first message of a car at least
``sample_s`` after the one last sampled; all signals of that message): a car at 1 Hz costs
one table lookup per message and one score per signal every ``sample_s``. Deterministic in
event time, so a replay or a restarted worker samples the same messages. The states live in
their own table (the worker's ``generic-diagnostics``), not in the vehicle state, each under
its own key so a sample rewrites only what it changed and no key outgrows a few KiB:

* ``<VIN>``: ``{"t": last sample, "part": source partition, "rule": events (generic_rule),
  "act": the anomalous signals last reported, "alert": alarm hygiene}``;
* ``<VIN>|<signal>``: ``{"g": GenericScorer state, "p": last value, "dec": ever decreased,
  "x": [value, previous low, previous high, score] of its last directional event}``,
  about 2.6 KB of JSON when mature (``GenericScorer``'s own is bounded well under 4 KiB).

Alarm hygiene is ``alerting.py``'s (hold-off, flapping); the evidence names the signal, the
direction, on how many days it had isolated events, how far it travelled, and the last value
against the range it left. The detector does not know which signals a specific detector
reads, so a fault one of them explains may raise this alert too.

Off by default (``OWNERCARE_GENERIC_DETECTOR``): on the simulator's healthy fleet it raises
far more than the false-alert target allows (docs/quality.md, "In the worker").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

from diagnostics import alerting
from diagnostics.base import AlarmPolicy, Assessment
from diagnostics.generic import GenericScorer
from diagnostics.generic_rule import EventRule
from diagnostics.pipeline import position_key
from vocab.eventtime import DAY_MS, SECOND_MS

ALERT_TYPE = "signal_drift"
SIGNAL_SEP = "|"  # "<VIN>|<signal path>": a VIN and a VSS path never contain "|"
NOT_HEALTH = ("Vehicle.CurrentLocation.",)  # where the car is, not how it is
ACTION = (
    "No call needed yet: one signal of this car keeps reaching values it has not had before, "
    "day after day, while its other signals stay in their usual range. If another alert on "
    "this car explains it, follow that one. Otherwise look at the signal's history in the "
    "vehicle view; if the drift goes on, book a workshop check of the system that signal "
    "measures.")


def signal_key(vin: str, path: str) -> str:
    """The table key of one signal's state."""
    return f"{vin}{SIGNAL_SEP}{path}"


def is_identifier(path: str) -> bool:
    leaf = path.rsplit(".", 1)[-1]
    return leaf.startswith("Id") or leaf.endswith("Id")


def scored_signals(signals: Mapping[str, object]) -> Iterator[tuple[str, float]]:
    """The (path, value) pairs of a telemetry record the generic detector scores, in path
    order (the order does not change a score; it keeps the writes' order stable)."""
    for path in sorted(signals):
        value = signals[path]
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value) or path.startswith(NOT_HEALTH) or is_identifier(path):
            continue
        yield path, float(value)


class GenericSignals:
    """Samples, scores and judges every numeric signal of every car; see the module doc."""

    name: ClassVar[str] = "generic_signals"
    version: ClassVar[str] = "1.0.0"
    # A drift pauses now and then (the scorer rests after an event, a car is parked for
    # days): its evidence coming back within two weeks is the same problem, the same alert.
    alarm_policy: ClassVar[AlarmPolicy] = AlarmPolicy(hold_off_ms=14 * DAY_MS)

    def __init__(self, sample_s: float = 300.0, event_score: float = 0.5,
                 rule: EventRule | None = None, scorer: GenericScorer | None = None) -> None:
        if not (sample_s > 0 and 0 < event_score <= 1):
            raise ValueError("need sample_s > 0 and 0 < event_score <= 1")
        self.sample_s = sample_s
        self.event_score = event_score
        self.rule = rule or EventRule()
        self.scorer = scorer or GenericScorer()
        self._sample_ms = int(sample_s * SECOND_MS)
        self.scores = 0  # values scored since start (a counter for benchmarks)

    def new_vehicle_state(self) -> dict[str, Any]:
        return {"t": None, "part": None, "rule": self.rule.new_state(), "act": [],
                "alert": None}

    def new_signal_state(self) -> dict[str, Any]:
        return {"g": self.scorer.new_state(), "p": None, "dec": False, "x": None}

    # ------------------------------------------------------------------ records
    def process(self, records: Iterable[Mapping[str, Any]], states: MutableMapping[str, Any],
                partition: int | None = None) -> tuple[list[dict[str, Any]], set[str]]:
        """Alert upserts and the keys of ``states`` changed (written into ``states``)."""
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        sample_ms = self._sample_ms
        for record in records:
            if record["kind"] != "vehicle_telemetry":
                continue
            vin, ts = record["id"], int(record["ts"])
            vstate = states.get(vin)
            if vstate is not None and vstate["t"] is not None and ts - vstate["t"] < sample_ms:
                # Not due (or late, or redelivered): the one cost of most messages.
                if vstate["alert"] is not None and vstate["alert"].get("pending") is not None:
                    alert = self._due(vin, vstate, ts)
                    if alert is not None:
                        alerts.append(alert)
                        changed.add(vin)
                continue
            if vstate is None:
                vstate = states[vin] = self.new_vehicle_state()
            if partition is not None:
                vstate["part"] = partition
            vstate["t"] = ts
            changed.add(vin)
            self._sample(vin, ts, record["data"]["signals"], vstate, states, changed)
            alert = self._judge(vin, ts, vstate, states)
            if alert is not None:
                alerts.append(alert)
        return alerts, changed

    def _sample(self, vin: str, ts: int, signals: Mapping[str, object],
                vstate: dict[str, Any], states: MutableMapping[str, Any],
                changed: set[str]) -> None:
        scorer, rule = self.scorer, self.rule
        for path, value in scored_signals(signals):
            key = signal_key(vin, path)
            sstate = states.get(key)
            if sstate is None:
                sstate = states[key] = self.new_signal_state()
            g = sstate["g"]
            n, lo, hi = int(g["n"]), float(g["lo"]), float(g["hi"])
            if sstate["p"] is not None and value < sstate["p"]:
                sstate["dec"] = True
            sstate["p"] = value
            score = scorer.score_one(g, ts, value)
            self.scores += 1
            changed.add(key)
            if score < self.event_score or not n or not sstate["dec"]:
                continue
            # Which side of the range it left or leans to: a drift that stays inside the
            # range (a level shift) still has a side, the middle of what the signal has done.
            middle = (lo + hi) / 2
            direction = 1 if value > middle else -1 if value < middle else 0
            if direction:
                sstate["x"] = [round(value, 4), round(lo, 4), round(hi, 4), round(score, 3)]
                rule.note(vstate["rule"], ts, path, direction, value, hi - lo)

    def _judge(self, vin: str, ts: int, vstate: dict[str, Any],
               states: Mapping[str, Any]) -> dict[str, Any] | None:
        rule = self.rule
        rule.forget(vstate["rule"], ts)
        found = rule.anomalous(vstate["rule"], ts, vstate["act"]) if vstate["rule"]["ev"] \
            else {}
        if sorted(found) == vstate["act"]:
            return self._due(vin, vstate, ts) if vstate["alert"] is not None \
                and vstate["alert"].get("pending") is not None else None
        vstate["act"] = sorted(found)
        assessment = self._assess(vin, found, states)
        if vstate["alert"] is None:
            vstate["alert"] = alerting.new_alert_state()
        return alerting.apply(
            vstate["alert"], asset_kind="vehicle", asset_id=vin, alert_type=ALERT_TYPE,
            detector=self.name, detector_version=self.version, assessment=assessment,
            ts_ms=ts, policy=self.alarm_policy)

    def _due(self, vin: str, vstate: dict[str, Any], ts: int) -> dict[str, Any] | None:
        return alerting.due(vstate["alert"], asset_kind="vehicle", asset_id=vin,
                            alert_type=ALERT_TYPE, detector=self.name,
                            detector_version=self.version, ts_ms=ts, policy=self.alarm_policy)

    def _assess(self, vin: str, found: Mapping[str, Mapping[str, Any]],
                states: Mapping[str, Any]) -> Assessment:
        if not found:
            return Assessment(active=False, title="Signals back within their usual range",
                              evidence={"signals": []})
        # The signal with the most days of evidence (ties: the path order).
        path = max(sorted(found), key=lambda p: int(found[p]["days"]))
        worst = found[path]
        sstate = states.get(signal_key(vin, path)) or {}
        value, low, high, score = sstate.get("x") or [None, None, None, None]
        direction = "high" if worst["direction"] > 0 else "low"
        short = path.removeprefix("Vehicle.")
        return Assessment(
            active=True, severity="info",
            title=f"{short} keeps reaching new {direction}s",
            evidence={"signal": path, "direction": direction, "days": worst["days"],
                      "travel": worst["travel"],
                      "first_event": worst["first"], "last_event": worst["last"],
                      "value": value, "previous_low": low, "previous_high": high,
                      "score": score, "signals": sorted(found)},
            recommended_action=ACTION)

    # ------------------------------------------------------------------ the worker's step
    def process_source(self, states: Mapping[str, Any], partition: int, offset: int,
                       records: Iterable[Mapping[str, Any]]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The worker's step for the source record at (``partition``, ``offset``): (alert
        upserts, table writes), as ``VehiclePipeline.process_source``: states are changed in
        place, new keys only through the writes, the partition's position written last."""
        local = _Overlay(states)
        alerts, changed = self.process(records, local, partition)
        writes: dict[str, Any] = {key: local[key] for key in sorted(changed)}
        position: int | None = states.get(position_key(partition))
        writes[position_key(partition)] = offset if position is None else max(position, offset)
        return alerts, writes

    def due(self, states: Mapping[str, Any], ts_ms: int) -> list[dict[str, Any]]:
        """Pending openings or clearances due at ``ts_ms`` (the end of a recorded stream)."""
        alerts = []
        for vin in sorted(k for k in states if not k.startswith("#") and SIGNAL_SEP not in k):
            vstate = states[vin]
            if vstate["alert"] is not None and vstate["alert"].get("pending") is not None:
                alert = self._due(vin, vstate, ts_ms)
                if alert is not None:
                    alerts.append(alert)
        return alerts


class _Overlay(dict[str, Any]):
    """New keys in a dict of its own, existing ones read (and changed in place) from the
    table, which is written only by the caller."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        super().__init__()
        self.base = base

    def get(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        value = self.base.get(key)
        if value is None:
            return default
        dict.__setitem__(self, key, value)
        return value
