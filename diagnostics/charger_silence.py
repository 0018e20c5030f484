"""Charger silence (alert type ``charger_silent``) on charger records, keyed by charger id.

The physics and the rules are those of ``diagnostics/silence.py`` (a charger heartbeats every
few minutes while idle and sends meter values while charging, so a long session is not a
silence). This module is self-contained, with its own per-charger states
(``{"det": detector state, "alert": alarm-hygiene state, "part": source partition}``) and its
own sweep clock, so a charger pipeline can adopt it as it is:

* ``process`` for one in-memory stream (``diagnostics/offline.py``): the clock lives in the
  tracker;
* ``process_source`` for the worker (``worker/agents.py``, agent ``charger-silence``): the
  states, one sweep clock per source partition and the partition's last applied offset live
  in the changelogged table, with the write order and catch-up rules of
  ``diagnostics/pipeline.py`` (alerts first, then the changed charger states, the clock, the
  position last).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, ClassVar

from diagnostics import alerting
from diagnostics.base import Assessment
from diagnostics.pipeline import states_in, sweep_key, sweep_partition, table_writes
from diagnostics.silence import SWEEP_INTERVAL_MS, Silence, new_clock, sweep_due

ChargerState = dict[str, Any]


class ChargerSilence:
    """Charger silence tracker; call with the charger records in event-time order."""

    alert_type: ClassVar[str] = "charger_silent"

    def __init__(self, detector: Silence | None = None,
                 interval_ms: int = SWEEP_INTERVAL_MS) -> None:
        self.detector = detector or Silence(asset="charger")
        self.interval_ms = interval_ms
        self.clock = new_clock()  # the in-memory stream's clock (``process``/``advance``)

    def process(self, records: Iterable[Mapping[str, Any]],
                states: MutableMapping[str, ChargerState]
                ) -> tuple[list[dict[str, Any]], set[str]]:
        """Return (alert upserts, charger ids whose state changed)."""
        batch = [r for r in records if str(r["kind"]).startswith("charger_")]
        alerts, changed = self._reports(batch, states, None)
        if batch:
            swept_alerts, swept = self.advance(max(int(r["ts"]) for r in batch), states)
            alerts += swept_alerts
            changed |= swept
        return alerts, changed

    def advance(self, ts_ms: int, states: MutableMapping[str, ChargerState]
                ) -> tuple[list[dict[str, Any]], set[str]]:
        """Move the in-memory clock to ``ts_ms``; sweep every charger if a boundary passed."""
        boundary = sweep_due(self.clock, ts_ms, self.interval_ms)
        if boundary is None:
            return [], set()
        return self._sweep(states.items(), boundary)

    def process_source(self, states: Mapping[str, Any], partition: int, offset: int,
                       records: Iterable[Mapping[str, Any]]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The worker's step for the source record at (``partition``, ``offset``).

        Like ``VehiclePipeline.process_source``: returns (alert upserts, table writes) and
        writes nothing itself; the caller delivers the alerts, then makes the writes in order.
        """
        batch = [r for r in records if str(r["kind"]).startswith("charger_")]
        local = states_in(states, batch)
        alerts, changed = self._reports(batch, local, partition)
        clock = dict(states.get(sweep_key(partition)) or new_clock())
        before = dict(clock)
        boundary = (sweep_due(clock, max(int(r["ts"]) for r in batch), self.interval_ms)
                    if batch else None)
        if boundary is not None:
            swept_alerts, swept = sweep_partition(states, local, partition, boundary,
                                                  self._sweep)
            alerts += swept_alerts
            changed |= swept
        return alerts, table_writes(states, local, changed, partition, offset,
                                    clock if clock != before else None)

    def _reports(self, batch: list[Mapping[str, Any]], states: MutableMapping[str, ChargerState],
                 partition: int | None) -> tuple[list[dict[str, Any]], set[str]]:
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        for record in batch:
            cid, ts = record["id"], int(record["ts"])
            state = states.get(cid)
            if state is None:
                state = states[cid] = {"det": self.detector.new_state(),
                                       "alert": alerting.new_alert_state()}
                changed.add(cid)
            if partition is not None and state.get("part") != partition:
                state["part"] = partition
                changed.add(cid)
            state_changed, assessment = self.detector.report(state["det"], ts)
            if state_changed:
                changed.add(cid)
            self._apply(state, cid, assessment, ts, alerts, changed)
        return alerts, changed

    def _sweep(self, states: Iterable[tuple[str, ChargerState]], boundary: int
               ) -> tuple[list[dict[str, Any]], set[str]]:
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        for cid, state in sorted(states, key=lambda item: item[0]):
            _, assessment = self.detector.sweep(state["det"], boundary)
            self._apply(state, cid, assessment, boundary, alerts, changed)
        return alerts, changed

    def _apply(self, state: ChargerState, cid: str, assessment: Assessment | None, ts: int,
               alerts: list[dict[str, Any]], changed: set[str]) -> None:
        if assessment is None:
            return
        alert = alerting.apply(state["alert"], asset_kind="charger", asset_id=cid,
                               alert_type=self.alert_type, detector=self.detector.name,
                               detector_version=self.detector.version, assessment=assessment,
                               ts_ms=ts)
        if alert is not None:
            alerts.append(alert)
            changed.add(cid)
