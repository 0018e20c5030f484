"""Per-vehicle diagnostics over a micro-batch of canonical records (no I/O, event time only).

The Faust agent hands each decoded batch to ``VehiclePipeline.process`` together with the
per-vehicle state table; the pipeline drops duplicates, runs every detector and turns their
assessments into alert upserts through the alarm-hygiene state machine. Keeping this out of
the agent makes it testable without brokers and reusable for replay and back-testing.

Restarts (state survives restarts, a killed worker loses no alert)
------------------------------------------------------------------
The per-vehicle states live in a changelogged Faust table, and the consumer resumes from its
committed offset. Nothing in Faust guarantees that the table a restarted worker recovers is as
new as that offset: recovery stops at the changelog's high watermark as the broker reports it,
and Tansu's memory engine reports it one past the *first* record of the last produced batch, so
the rest of that batch (the newest states of some vehicles) can be left out. The records
between the state and the offset would then never reach the detectors again: a parking period
observed from its middle, a resting sample lost, alerts that differ from an uninterrupted run.

So the table also holds, per source partition, the offset of the last source record whose
effects it contains (``position_key``), written *after* that record's vehicle states, which
are written *after* its alerts were delivered (``process_source``). A recovered table is a
prefix of its changelog, so its position never claims more than its states hold. When the
position is behind the record the agent received, it first replays the gap from Kafka
(``catch_up_from``). Replayed or redelivered records that the states already contain are
dropped by the ``seq`` check below (or, if they changed nothing the first time, change nothing
again), so the result is that of an uninterrupted run whatever part of the changelog was lost.

Sweeps (silence, ``diagnostics/silence.py``)
--------------------------------------------
Detectors that declare the sweep capability (``Detector.sweeps``, ``diagnostics/base.py``) are
also asked about every vehicle (``sweep(state, ts_ms)``) when the event time of the fleet passes
a sweep boundary: the table keeps one clock per source partition
(``sweep_key``: the watermark and the last boundary swept), and each vehicle state names its
partition (``part``), so a partition's sweep covers exactly its own vehicles. The clock is
written with the states and before the position, so it obeys the same prefix rule.

The position can also trail the clock (``worker/checkpoint.py`` caps it by the view writer's
durable offset), so a restart may replay records the clock already holds. A replayed report is
then judged against a later clock than it first met: a report that was held ahead of the clock
and later voided (``silence.Watermark``; possible when assets' reports reach Kafka out of
event-time order) is now within the clock's lead and confirmed, the clock moves past where the
uninterrupted run had it, and a boundary is swept before the reports that came after it, which
can open a false ``vehicle_silent``. So the clock also records the source offset of the last
record that changed it (``at``, written only when it changes anyway), and a record at or below
it does not report to the clock (``source_clock``): the records after ``at`` left it unchanged
the first time, and they meet the same clock again, so the replay sweeps exactly as the
uninterrupted run did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from diagnostics import alerting, registry
from diagnostics.base import Assessment, Detector
from diagnostics.silence import SWEEP_INTERVAL_MS, Span, Watermark, new_clock

# A device's seq counts its messages; a jump larger than this (over eleven days of 1 Hz
# messages lost) is not believed until the device's next message continues from it.
MAX_SEQ_JUMP = 1_000_000

VehicleState = dict[str, Any]
# Sweeps the boundaries of a span; returns (alert upserts, assets whose state changed).
Sweeper = Callable[[Span], tuple[list[dict[str, Any]], set[str]]]
POSITION_PREFIX = "#position/"  # table keys of the source positions; a VIN never has a "#"
SWEEP_PREFIX = "#sweep/"  # table keys of the partitions' sweep clocks


def sweep_key(partition: int) -> str:
    """The table key holding the sweep clock (watermark, last boundary) of ``partition``."""
    return f"{SWEEP_PREFIX}{partition}"


def position_key(partition: int) -> str:
    """The table key holding the last applied source offset of ``partition``."""
    return f"{POSITION_PREFIX}{partition}"


def source_clock(states: Mapping[str, Any], partition: int, offset: int
                 ) -> dict[str, Any] | None:
    """A working copy of ``partition``'s sweep clock for its source record at ``offset``, or
    None when the clock already holds that record (a replay from a position behind it: see the
    module doc): such a record must not report to it."""
    clock = dict(states.get(sweep_key(partition)) or new_clock())
    at = clock.get("at")
    return None if at is not None and offset <= int(at) else clock


def clock_write(clock: dict[str, Any] | None, before: Mapping[str, Any] | None, offset: int
                ) -> dict[str, Any] | None:
    """The clock to write after the source record at ``offset`` (None: it did not change),
    marked with that offset as the last record it holds."""
    if clock is None or clock == before:
        return None
    clock["at"] = offset
    return clock


def catch_up_from(position: int | None, offset: int) -> int | None:
    """The first source offset to replay before ``offset``, or None when nothing is missing.

    ``position`` is the table's last applied offset of the partition (None: the table holds
    nothing of it, so everything from the partition's start is missing).
    """
    first_missing = 0 if position is None else position + 1
    return first_missing if first_missing < offset else None


# ------------------------------------------------------------- the worker's table step
# Every ``process_source`` (vehicles, chargers, charger silence, attribution) works the same
# way on the worker's table: read the states of the assets in the record, change them in
# memory, return the writes -- the changed states, then the partition's position -- for the
# caller to make after it delivered the alerts.


def states_in(states: Mapping[str, Any], batch: Iterable[Mapping[str, Any]]
              ) -> dict[str, Any]:
    """The table's states of the assets in ``batch`` (a new asset is absent: the write
    adds it)."""
    local: dict[str, Any] = {}
    for record in batch:
        key = record["id"]
        if key not in local:
            state = states.get(key)
            if state is not None:
                local[key] = state
    return local


def sweep_partition(
    states: Mapping[str, Any],
    local: dict[str, Any],
    partition: int,
    span: Span,
    sweep: Callable[[Iterable[tuple[str, Any]], Span], tuple[list[dict[str, Any]], set[str]]],
) -> tuple[list[dict[str, Any]], set[str]]:
    """Sweep this partition's assets -- those in the table and those new in this record
    (``local``) -- over the boundaries of ``span``; the swept states join ``local``."""
    mine = {key: value for key, value in states.items()
            if not key.startswith("#") and value is not None and value.get("part") == partition}
    mine.update(local)
    alerts, swept = sweep(mine.items(), span)
    local.update((key, mine[key]) for key in swept)
    return alerts, swept


def table_writes(states: Mapping[str, Any], local: Mapping[str, Any], changed: Iterable[str],
                 partition: int, offset: int, clock: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The writes of one source record, in the order to make them: the changed states, the
    partition's sweep clock if given, then its position."""
    writes: dict[str, Any] = {key: local[key] for key in sorted(changed)}
    if clock is not None:
        writes[sweep_key(partition)] = clock
    # A redelivered record (at or below the position) leaves the position where it is.
    position: int | None = states.get(position_key(partition))
    writes[position_key(partition)] = offset if position is None else max(position, offset)
    return writes


def mark_seq(state: VehicleState, seq: int) -> None:
    """Move the vehicle's seq mark to ``seq``, unless it jumps more than ``MAX_SEQ_JUMP`` above
    a mark already set (a device's counter may start anywhere): such a seq is held (``seqj``)
    and becomes the mark only when the next seq continues from it, so one wrong seq cannot
    make the device's next messages look like duplicates."""
    held = state.pop("seqj", None)
    if state["seq"] < 0 or seq - state["seq"] <= MAX_SEQ_JUMP or (held is not None
                                               and 0 < seq - held <= MAX_SEQ_JUMP):
        state["seq"] = seq
    else:
        state["seqj"] = seq


def new_vehicle_state(detectors: Mapping[str, Detector]) -> VehicleState:
    return {
        "seq": -1,
        "ts": 0,
        "det": {alert_type: d.new_state() for alert_type, d in detectors.items()},
        # An alert type's hygiene state appears with its first assessment: most vehicles
        # never have one, and an empty state per alert type would be half of every state's
        # bytes.
        "alerts": {},
    }


class VehiclePipeline:
    """Runs the vehicle detectors over canonical records, one vehicle state per VIN."""

    def __init__(self, detectors: Mapping[str, Detector] | None = None,
                 sweep_interval_ms: int = SWEEP_INTERVAL_MS) -> None:
        self.detectors: dict[str, Detector] = (
            dict(detectors) if detectors is not None else registry.build("vehicle"))
        self.sweepers = {t: d for t, d in self.detectors.items() if d.sweeps}
        self.sweep_interval_ms = sweep_interval_ms
        self.duplicates = 0

    def process(
        self, records: Iterable[Mapping[str, Any]], states: MutableMapping[str, VehicleState],
        partition: int | None = None, watermark: Watermark | None = None,
        on_sweep: Sweeper | None = None,
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """Return (alert upserts, VINs whose state changed and must be persisted); each record
        reports to the partition's sweep ``watermark`` if given.

        With ``on_sweep``, the boundaries a record's report moves the watermark past are swept
        before the record is processed, as if every record came alone: a silence that begins
        and ends within one batch is still seen, and the alerts do not depend on batching."""
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        for record in records:
            vin = record["id"]
            state = states.get(vin)
            if state is None:
                state = new_vehicle_state(self.detectors)
                states[vin] = state
                changed.add(vin)
            if partition is not None and state.get("part") != partition:
                state["part"] = partition  # whose sweeps cover this vehicle
                changed.add(vin)
            ts, seq = int(record["ts"]), int(record["seq"])
            # At-least-once delivery: a redelivered message has a seq we have already seen.
            # A lower seq with a newer ts is a device that restarted its counter, not a duplicate.
            # Every record the clock does not hold yet (``source_clock``), even a redelivered
            # one, reports to it: a recovered table may hold a record's states without the
            # clock write that followed them.
            if watermark is not None:
                watermark.report(vin, ts)
                span = watermark.sweep_at() if on_sweep is not None else None
                if span is not None and on_sweep is not None:
                    swept_alerts, swept = on_sweep(span)
                    alerts += swept_alerts
                    changed |= swept
            if seq <= state["seq"] and ts <= state["ts"]:
                self.duplicates += 1
                continue
            state["ts"] = max(ts, state["ts"])
            mark_seq(state, seq)
            kind = record["kind"]
            for alert_type, detector in self.detectors.items():
                det_state = state["det"].setdefault(alert_type, detector.new_state())
                if kind == "vehicle_telemetry":
                    state_changed, assessment = detector.update(
                        det_state, ts, record["data"]["signals"])
                elif kind == "vehicle_event":
                    state_changed, assessment = detector.on_event(det_state, ts, record["data"])
                else:
                    continue
                if state_changed:
                    changed.add(vin)
                self._alert(state, vin, alert_type, detector, assessment, ts, alerts, changed)
        return alerts, changed

    def _alert(self, state: VehicleState, vin: str, alert_type: str, detector: Detector,
               assessment: Assessment | None, ts: int, alerts: list[dict[str, Any]],
               changed: set[str]) -> None:
        alert_states = state["alerts"]
        alert_state = alert_states.get(alert_type)
        if assessment is None:
            if alert_state is None or alert_state.get("pending") is None:
                return
            # A pending opening or clearance falls due with time, not with news.
            alert = alerting.due(
                alert_state, asset_kind="vehicle", asset_id=vin, alert_type=alert_type,
                detector=detector.name, detector_version=detector.version, ts_ms=ts,
                policy=detector.alarm_policy, related=alert_states)
        else:
            # Alarm hygiene may change its state without emitting (a pending opening or
            # clearance): persist it whenever it saw an assessment.
            changed.add(vin)
            if alert_state is None:
                alert_state = alert_states[alert_type] = alerting.new_alert_state()
            alert = alerting.apply(
                alert_state,
                asset_kind="vehicle",
                asset_id=vin,
                alert_type=alert_type,
                detector=detector.name,
                detector_version=detector.version,
                assessment=assessment,
                ts_ms=ts,
                policy=detector.alarm_policy,
                related=alert_states,
            )
        if alert is not None:
            alerts.append(alert)
            changed.add(vin)

    def sweep(self, states: Iterable[tuple[str, VehicleState]], span: Span
              ) -> tuple[list[dict[str, Any]], set[str]]:
        """Ask the sweeping detectors about each (VIN, state) at the boundaries of ``span``
        each needs (``Detector.sweep_times``), in event-time order per vehicle."""
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        since, upto = span
        for vin, state in sorted(states, key=lambda item: item[0]):
            for alert_type, detector in self.sweepers.items():
                det_state = state["det"].get(alert_type)
                if det_state is None:
                    continue
                for boundary_ms in detector.sweep_times(det_state, since, upto,
                                                        self.sweep_interval_ms):
                    state_changed, assessment = detector.sweep(det_state, boundary_ms)
                    if state_changed:
                        changed.add(vin)
                    self._alert(state, vin, alert_type, detector, assessment, boundary_ms,
                                alerts, changed)
        return alerts, changed

    def advance_clock(self, clock: dict[str, Any], records: list[Mapping[str, Any]]
                      ) -> Span | None:
        """Move ``clock`` to the newest event time of ``records``: the boundaries to sweep."""
        if not records or not self.sweepers:
            return None
        watermark = Watermark(clock, self.sweep_interval_ms)
        for r in records:
            watermark.report(r.get("id"), int(r["ts"]))  # no id: the caller's end of stream
        return watermark.sweep_at()

    def due(self, states: Mapping[str, VehicleState], ts_ms: int) -> list[dict[str, Any]]:
        """Alerts whose pending opening or clearance is due at event time ``ts_ms`` (the end
        of a recorded stream: no later message of the vehicle will bring them)."""
        alerts = []
        for vin, state in states.items():
            if vin.startswith("#"):  # the table's positions and sweep clocks
                continue
            alert_states = state["alerts"]
            for alert_type, detector in self.detectors.items():
                alert_state = alert_states.get(alert_type)
                if alert_state is None or alert_state.get("pending") is None:
                    continue
                alert = alerting.due(
                    alert_state, asset_kind="vehicle", asset_id=vin, alert_type=alert_type,
                    detector=detector.name, detector_version=detector.version, ts_ms=ts_ms,
                    policy=detector.alarm_policy, related=alert_states)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def process_source(
        self,
        states: Mapping[str, Any],
        partition: int,
        offset: int,
        records: Iterable[Mapping[str, Any]],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Process the source record at (``partition``, ``offset``) without writing ``states``.

        Returns (alert upserts, table writes). The caller delivers the alerts first and then
        makes the writes in their order: the changed vehicle states, then the partition's new
        position. States are updated in place (the objects ``states`` holds), but a vehicle
        seen for the first time is not added: the write does that.
        """
        batch = list(records)
        local = states_in(states, batch)
        clock = source_clock(states, partition, offset)
        before = None if clock is None else dict(clock)
        watermark = None if clock is None else Watermark(clock, self.sweep_interval_ms)

        def sweep_mine(span: Span) -> tuple[list[dict[str, Any]], set[str]]:
            return sweep_partition(states, local, partition, span, self.sweep)

        alerts, changed = self.process(batch, local, partition, watermark,
                                       sweep_mine if self.sweepers else None)
        return alerts, table_writes(states, local, changed, partition, offset,
                                    clock_write(clock, before, offset))


class LatestValues:
    """The newest value per (asset, signal) of everything added since the last ``drain``.

    The API's latest-values view is written in coalesced flushes: a fleet at 1 Hz repeats every
    signal every second, and writing each repetition costs more than all the detectors.
    ``add`` keeps, per asset and signal, the value with the newest event time (the later
    arrival wins a tie), so a flush holds one value per signal, not every message of the fleet.
    """

    def __init__(self) -> None:
        # (kind, asset) -> [newest ts of the asset, {path: value}, {path: ts}]
        self._pending: dict[tuple[str, str], list[Any]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        pending = self._pending
        for r in records:
            kind, data = r["kind"], r["data"]
            values: Mapping[str, object]
            if kind == "vehicle_telemetry":
                key, values = ("vehicle", r["id"]), data["signals"]
            elif kind == "charger_status":
                prefix = f"OCPP.Connector{data['connectorId']}."
                key = ("charger", r["id"])
                values = {prefix + "Status": data["status"],
                          prefix + "ErrorCode": data["errorCode"]}
            elif kind == "charger_meter":
                prefix = f"OCPP.Connector{data['connectorId']}."
                key = ("charger", r["id"])
                values = {prefix + name: v for name, v in data["measurands"].items()}
            else:
                continue
            ts = int(r["ts"])
            entry = pending.get(key)
            if entry is None:
                pending[key] = [ts, dict(values), dict.fromkeys(values, ts)]
            elif ts >= entry[0]:
                # In event-time order, the common case: newer than every value held, so each
                # signal takes it; dict.update does that without a Python loop per signal.
                entry[0] = ts
                entry[1].update(values)
                entry[2].update(dict.fromkeys(values, ts))
            else:
                newest, stamps = entry[1], entry[2]
                for path, value in values.items():
                    seen = stamps.get(path)
                    if seen is None or ts >= seen:
                        newest[path], stamps[path] = value, ts

    def drain(self) -> list[tuple[str, str, str, object, int]]:
        """Rows (asset_kind, asset_id, path, value, ts) and forget them."""
        rows = [(kind, asset, path, value, stamps[path])
                for (kind, asset), (_ts, newest, stamps) in self._pending.items()
                for path, value in newest.items()]
        self._pending = {}
        return rows


def latest_signal_rows(
    records: Iterable[Mapping[str, Any]],
) -> list[tuple[str, str, str, object, int]]:
    """Coalesce records into the newest value per (asset, signal) for the latest-values view."""
    latest = LatestValues()
    latest.add(records)
    return latest.drain()
