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
trip is not a fault).

What the signal's own history rules out
---------------------------------------
A score event becomes evidence only if the signal's own history says such a move is not its
routine -- judged from what the signal did, never from its name, so a signal nobody listed
is judged the same way:

* **too new**: nothing before ``history_days`` of the signal (its first sample): until then
  its range is what the first days happened to show;
* **one-way**: a signal that has never moved back against the event's direction (from one
  sample to the next) is a counter (the odometer, energy totals: new highs are its nature)
  or a consumable before its first refill (a tank's new lows);
* **a sawtooth**: a signal that has come back against the event's direction in a single step
  (two samples at most two sampling intervals apart: across a longer gap anything may have
  happened, a tyre cools overnight) by ``routine_return`` of its range or more (a tank
  refilled): going there and being reset is its cycle, not a drift.

What the fleet rules out
------------------------
The weather moves the same signal of every car (a cold snap: every parked car's air
temperature sets new lows, and nothing else of a parked car moves with it). The cars of a
source partition (a random share of the fleet) are counted per signal and ``shared_ms`` of
event time: how many reported it, how many had an event high, how many low. An event is
*shared* -- never isolated (``generic_rule.py``) -- when, in its bucket or the neighbouring
one nearer to it, at least ``fleet_min`` other cars and ``fleet_share`` of the other cars
reporting the signal had an event in the same direction. Decided once, when the event has
settled (``shared_ms`` after it), so later data never changes it; the order of a partition's
records is fixed, so a replay or a restart decides the same. What the whole fleet does at
once (a bad software release) is not this detector's to find.

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
* ``<VIN>|<signal>``: ``{"g": GenericScorer state, "p"/"pt": last value and its time,
  "t0": first sample, "inc"/"dec": ever rose or fell, "up"/"dn": largest rise and fall
  in one step, "fb": the fleet buckets it was last counted in, "x": [value, previous low,
  previous high, score] of its last directional event}``, about 2.7 KB of JSON when mature
  (``GenericScorer``'s own is bounded well under 4 KiB);
* ``#fleet/<partition>|<signal>``: ``{bucket: [reporting, high, low]}``, the last
  ``FLEET_BUCKETS`` buckets, written when a car is first counted in one.

Alarm hygiene is ``alerting.py``'s (hold-off, flapping); the evidence names the signal, the
direction, on how many days it had isolated events, how far it travelled, and the last value
against the range it left. The detector does not know which signals a specific detector
reads, so a fault one of them explains may raise this alert too.

Off by default (``OWNERCARE_GENERIC_DETECTOR``): on the simulator's fleet it keeps within
the false-alert target but catches none of the simulated faults, so it has no lead to show
(docs/quality.md, "In the worker").
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
FLEET_PREFIX = "#fleet/"  # "#fleet/<partition>|<signal>": how many cars had events
# Buckets (of the rule's shared_ms, 12 h) of the fleet's counts kept: an event settles one
# bucket after it and looks one either side; the rest is slack for a car whose next sample
# comes late.
FLEET_BUCKETS = 8
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
    version: ClassVar[str] = "1.1.0"
    # A drift pauses now and then (the scorer rests after an event, a car is parked for
    # days): its evidence coming back within two weeks is the same problem, the same alert.
    alarm_policy: ClassVar[AlarmPolicy] = AlarmPolicy(hold_off_ms=14 * DAY_MS)

    def __init__(self, sample_s: float = 300.0, event_score: float = 0.5,
                 rule: EventRule | None = None, scorer: GenericScorer | None = None,
                 history_days: float = 7.0, routine_return: float = 0.5,
                 fleet_share: float = 0.1, fleet_min: int = 3) -> None:
        if not (sample_s > 0 and 0 < event_score <= 1 and history_days >= 0
                and routine_return > 0 and 0 <= fleet_share <= 1 and fleet_min >= 1):
            raise ValueError("need sample_s > 0, 0 < event_score <= 1, history_days >= 0, "
                             "routine_return > 0, 0 <= fleet_share <= 1 and fleet_min >= 1")
        self.fleet_share, self.fleet_min = fleet_share, fleet_min
        self.sample_s = sample_s
        self.history_ms = int(history_days * DAY_MS)
        self.routine_return = routine_return
        self.event_score = event_score
        self.rule = rule or EventRule()
        self.scorer = scorer or GenericScorer()
        self._sample_ms = int(sample_s * SECOND_MS)
        self.scores = 0  # values scored since start (a counter for benchmarks)

    def new_vehicle_state(self) -> dict[str, Any]:
        return {"t": None, "part": None, "rule": self.rule.new_state(), "act": [],
                "alert": None}

    def new_signal_state(self) -> dict[str, Any]:
        return {"g": self.scorer.new_state(), "p": None, "pt": None, "t0": None,
                "inc": False, "dec": False, "up": 0.0, "dn": 0.0, "x": None}

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
            self._learn_steps(sstate, ts, value)
            self._count_in_fleet(ts, path, sstate, 0, vstate, states, changed)
            score = scorer.score_one(g, ts, value)
            self.scores += 1
            changed.add(key)
            if score < self.event_score or not n:
                continue
            # Which side of the range it left or leans to: a drift that stays inside the
            # range (a level shift) still has a side, the middle of what the signal has done.
            middle = (lo + hi) / 2
            direction = 1 if value > middle else -1 if value < middle else 0
            if not direction:
                continue
            # Every car's event tells the fleet, even one that is no evidence for its car.
            self._count_in_fleet(ts, path, sstate, 1 if direction > 0 else 2, vstate, states,
                                 changed)
            if self._telling(sstate, ts, direction, hi - lo):
                sstate["x"] = [round(value, 4), round(lo, 4), round(hi, 4), round(score, 3)]
                rule.note(vstate["rule"], ts, path, direction, value, hi - lo)

    def _learn_steps(self, sstate: dict[str, Any], ts: int, value: float) -> None:
        """The signal's largest rise and fall from one sample to the next (samples at most
        two sampling intervals apart: a gap is not a step), and when it was first seen."""
        if sstate.get("t0") is None:
            # A state of 1.0.0 has scored values already but kept no history: take it as
            # known (the old rules judged it), not as new.
            known = bool(sstate["g"]["n"])
            sstate["t0"] = ts - self.history_ms if known else ts
            sstate.setdefault("inc", known)
        prev, prev_ts = sstate["p"], sstate.get("pt")
        if prev is not None:
            if value > prev:
                sstate["inc"] = True
            elif value < prev:
                sstate["dec"] = True
            if prev_ts is not None and 0 < ts - prev_ts <= 2 * self._sample_ms:
                step = value - prev
                if step > sstate.get("up", 0.0):
                    sstate["up"] = round(step, 4)
                elif -step > sstate.get("dn", 0.0):
                    sstate["dn"] = round(-step, 4)
        sstate["p"], sstate["pt"] = value, ts

    def _telling(self, sstate: dict[str, Any], ts: int, direction: int,
                 span: float) -> bool:
        """Is an event of this signal in ``direction`` evidence at all, by the signal's own
        history? Not before ``history_days`` of it (its range is still being learned); not
        for a signal that has never stepped back the other way (a counter's new highs, a
        consumable's new lows before its first refill are its nature); and not for one whose
        history has it come back in one step by ``routine_return`` of its range or more (a
        sawtooth: a tank or a charge used up and refilled -- going there is routine)."""
        if ts - int(sstate.get("t0") or ts) < self.history_ms:
            return False
        if not sstate.get("dec" if direction > 0 else "inc"):
            return False
        back = float(sstate.get("dn" if direction > 0 else "up", 0.0))
        return back < self.routine_return * span

    def _judge(self, vin: str, ts: int, vstate: dict[str, Any],
               states: Mapping[str, Any]) -> dict[str, Any] | None:
        rule = self.rule
        rule.forget(vstate["rule"], ts)
        self._settle(vin, ts, vstate, states)
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

    # ------------------------------------------------------------------ the fleet
    def _fleet_key(self, vstate: Mapping[str, Any], path: str) -> str:
        part = vstate["part"]
        return f"{FLEET_PREFIX}{'' if part is None else part}{SIGNAL_SEP}{path}"

    def _count_in_fleet(self, ts: int, path: str, sstate: dict[str, Any], column: int,
                        vstate: Mapping[str, Any], states: MutableMapping[str, Any],
                        changed: set[str]) -> None:
        """Count this car once per ``shared_ms`` bucket of event time in the fleet's ledger of
        ``path``: ``column`` 0 as reporting the signal, 1 (2) as having had an event high
        (low). The car's signal state remembers the bucket it last counted in per column."""
        bucket = ts // self.rule.shared_ms
        marks = sstate.get("fb") or [None, None, None]
        if marks[column] == bucket:
            return
        marks[column] = bucket
        sstate["fb"] = marks
        key = self._fleet_key(vstate, path)
        ledger = states.get(key)
        if ledger is None:
            ledger = states[key] = {}
        row = ledger.get(str(bucket))
        if row is None:
            row = ledger[str(bucket)] = [0, 0, 0]
            for old in [b for b in ledger if int(b) <= bucket - FLEET_BUCKETS]:
                del ledger[old]
        row[column] += 1
        changed.add(key)

    def _settle(self, vin: str, ts: int, vstate: dict[str, Any],
                states: Mapping[str, Any]) -> None:
        """Mark each event that has just settled (``shared_ms`` old: the other cars have had
        their chance to report the same) as shared with the fleet or not, once: shared when,
        in its bucket of event time or the neighbouring one nearer to it, at least
        ``fleet_min`` other cars and ``fleet_share`` of the other cars reporting the signal
        had an event in the same direction (a cold snap moves every car's air temperature; a
        leak, one car's tyre)."""
        shared_ms = self.rule.shared_ms
        for event in vstate["rule"]["ev"]:
            at = int(event[0])
            if len(event) > 5 or at > ts - shared_ms:
                continue
            ledger = states.get(self._fleet_key(vstate, event[1])) or {}
            bucket = at // shared_ms
            near = bucket - 1 if at - bucket * shared_ms < shared_ms // 2 else bucket + 1
            column = 1 if int(event[2]) > 0 else 2
            shared = False
            for b, own in ((bucket, 1), (near, 0)):
                row = ledger.get(str(b))
                if row is None:
                    continue
                others, reporting = int(row[column]) - own, int(row[0]) - own
                if others >= self.fleet_min and others >= self.fleet_share * reporting:
                    shared = True
            event.append(shared)

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
