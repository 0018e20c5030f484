"""Charger silence (alert type ``charger_silent``) on charger records, keyed by charger id.

The detector is the charger detector of ``diagnostics.registry`` that sweeps
(``Detector.sweeps``): ``diagnostics.silence.ChargerSilence``, whose physics and rules are
those of ``diagnostics/silence.py``. Its sweeps need a clock per source partition, which the
charger pipeline's table does not keep, so it runs in this pipeline, with its own per-charger
states (``{"det": detector state, "alert": alarm-hygiene state, "part": source partition}``)
and its own sweep clock:

* ``process`` for one in-memory stream (``diagnostics/offline.py``): the clock lives in the
  pipeline;
* ``process_source`` for the worker (``worker/agents.py``, agent ``charger-silence``): the
  states, one sweep clock per source partition and the partition's last applied offset live
  in the changelogged table, with the write order and catch-up rules of
  ``diagnostics/pipeline.py`` (alerts first, then the changed charger states, the clock, the
  position last).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from diagnostics import alerting, registry
from diagnostics.base import Assessment, Detector
from diagnostics.pipeline import (
    Sweeper,
    clock_write,
    source_clock,
    states_in,
    sweep_partition,
    table_writes,
)
from diagnostics.silence import SWEEP_INTERVAL_MS, Span, Watermark, new_clock, sweep_due

SilenceState = dict[str, Any]  # one charger's: {"det": ..., "alert": ..., "part": ...}


class ChargerSilencePipeline:
    """Runs the sweeping charger detector; call with the charger records in event-time order.

    ``detectors`` (alert type -> detector) defaults to the charger detectors of the registry
    that sweep; a charger's state holds one detector's, so there must be exactly one.
    """

    def __init__(self, detectors: Mapping[str, Detector] | None = None,
                 interval_ms: int = SWEEP_INTERVAL_MS) -> None:
        chosen = (dict(detectors) if detectors is not None
                  else registry.build("charger", sweeps=True))
        if len(chosen) != 1:
            raise ValueError("the charger silence pipeline runs exactly one detector, "
                             f"got {sorted(chosen)}")
        ((self.alert_type, self.detector),) = chosen.items()
        self.interval_ms = interval_ms
        self.clock = new_clock()  # the in-memory stream's clock (``process``/``advance``)

    def process(self, records: Iterable[Mapping[str, Any]],
                states: MutableMapping[str, SilenceState]
                ) -> tuple[list[dict[str, Any]], set[str]]:
        """Return (alert upserts, charger ids whose state changed)."""
        batch = [r for r in records if str(r["kind"]).startswith("charger_")]

        def sweep_all(span: Span) -> tuple[list[dict[str, Any]], set[str]]:
            return self._sweep(states.items(), span)

        return self._reports(batch, states, None, Watermark(self.clock, self.interval_ms),
                             sweep_all)

    def advance(self, ts_ms: int, states: MutableMapping[str, SilenceState]
                ) -> tuple[list[dict[str, Any]], set[str]]:
        """Move the in-memory clock to ``ts_ms`` (a time the caller vouches for, such as the
        end of a recorded stream); sweep every charger if a boundary passed."""
        span = sweep_due(self.clock, ts_ms, self.interval_ms)
        if span is None:
            return [], set()
        return self._sweep(states.items(), span)

    def process_source(self, states: Mapping[str, Any], partition: int, offset: int,
                       records: Iterable[Mapping[str, Any]]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The worker's step for the source record at (``partition``, ``offset``).

        Like ``VehiclePipeline.process_source``: returns (alert upserts, table writes) and
        writes nothing itself; the caller delivers the alerts, then makes the writes in order.
        """
        batch = [r for r in records if str(r["kind"]).startswith("charger_")]
        local = states_in(states, batch)
        # A replayed record the clock already holds does not report to it (see
        # ``diagnostics/pipeline.py``, "Sweeps").
        clock = source_clock(states, partition, offset)
        before = None if clock is None else dict(clock)

        def sweep_mine(span: Span) -> tuple[list[dict[str, Any]], set[str]]:
            return sweep_partition(states, local, partition, span, self._sweep)

        alerts, changed = self._reports(
            batch, local, partition,
            None if clock is None else Watermark(clock, self.interval_ms), sweep_mine)
        return alerts, table_writes(states, local, changed, partition, offset,
                                    clock_write(clock, before, offset))

    def _reports(self, batch: list[Mapping[str, Any]], states: MutableMapping[str, SilenceState],
                 partition: int | None, watermark: Watermark | None, on_sweep: Sweeper
                 ) -> tuple[list[dict[str, Any]], set[str]]:
        """Each record reports to the ``watermark`` (``silence.Watermark``: one charger cannot
        move it far); the boundaries it moves past are swept before the record is processed,
        so the alerts do not depend on how the records were batched."""
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        for record in batch:
            cid, ts = record["id"], int(record["ts"])
            span = None
            if watermark is not None:
                watermark.report(str(cid), ts)
                span = watermark.sweep_at()
            if span is not None:
                swept_alerts, swept = on_sweep(span)
                alerts += swept_alerts
                changed |= swept
            state = states.get(cid)
            if state is None:
                state = states[cid] = {"det": self.detector.new_state(),
                                       "alert": alerting.new_alert_state()}
                changed.add(cid)
            if partition is not None and state.get("part") != partition:
                state["part"] = partition
                changed.add(cid)
            # Any record is a report: meter values to ``update``, status notifications to
            # ``on_event``, as in the charger pipeline.
            if record["kind"] == "charger_meter":
                state_changed, assessment = self.detector.update(state["det"], ts,
                                                                 record["data"])
            else:
                state_changed, assessment = self.detector.on_event(state["det"], ts,
                                                                   record["data"])
            if state_changed:
                changed.add(cid)
            self._apply(state, cid, assessment, ts, alerts, changed)
        return alerts, changed

    def _sweep(self, states: Iterable[tuple[str, SilenceState]], span: Span
               ) -> tuple[list[dict[str, Any]], set[str]]:
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        for cid, state in sorted(states, key=lambda item: item[0]):
            for boundary in self.detector.sweep_times(state["det"], *span, self.interval_ms):
                state_changed, assessment = self.detector.sweep(state["det"], boundary)
                if state_changed:
                    changed.add(cid)
                self._apply(state, cid, assessment, boundary, alerts, changed)
        return alerts, changed

    def _apply(self, state: SilenceState, cid: str, assessment: Assessment | None, ts: int,
               alerts: list[dict[str, Any]], changed: set[str]) -> None:
        if assessment is None:
            return
        alert = alerting.apply(state["alert"], asset_kind="charger", asset_id=cid,
                               alert_type=self.alert_type, detector=self.detector.name,
                               detector_version=self.detector.version, assessment=assessment,
                               ts_ms=ts, policy=self.detector.alarm_policy)
        if alert is not None:
            alerts.append(alert)
            changed.add(cid)
