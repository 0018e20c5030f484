"""Every detector the worker runs, over a stream of canonical records, without any broker.

``ownercare backtest``, ``ownercare eval`` and ``ownercare replay`` all feed recorded or
simulated telemetry through this one class, so what they score is exactly what the worker
runs: the same pipelines, the same alarm hygiene, the same event-time rules. The worker splits
the same work across Faust agents (``worker/agents.py``); here it runs in one process:
vehicle records go to the vehicle pipeline, charger records to the charger silence pipeline
and the charger pipeline, and the charging sessions the charger pipeline sees finish, and the cars'
own accounts of their public sessions, go on to the fleet's charging-fault attribution in
event-time order (in the worker: through the ``ownercare.charging-outcomes`` topic; see
``diagnostics/attribution_order.py``); ``finish`` releases what it still holds.

Records are the canonical dicts of ``ingest.contract.validate`` (``kind``, ``id``, ``ts``,
``seq``, ``data``), in event-time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from diagnostics.attribution import AssetState, ChargingAttribution, car_accounts
from diagnostics.attribution_order import CAR, CHARGER, ClockTicks, OrderedAttribution
from diagnostics.charger_pipeline import ChargerPipeline, ChargerState
from diagnostics.charger_silence import ChargerSilencePipeline
from diagnostics.pipeline import VehiclePipeline, VehicleState
from diagnostics.silence import Span, Watermark, new_clock


class OfflineDiagnostics:
    """All the worker's pipelines over one record stream; keeps every asset's state in memory.

    The whole stream is one source partition here: one sweep clock for the vehicles (silence,
    see ``diagnostics/silence.py``) and one in the charger silence pipeline.
    """

    def __init__(self, vehicle_pipeline: VehiclePipeline | None = None,
                 charger_pipeline: ChargerPipeline | None = None,
                 attribution: ChargingAttribution | None = None,
                 charger_silence: ChargerSilencePipeline | None = None) -> None:
        self.vehicles = vehicle_pipeline or VehiclePipeline()
        self.vehicle_states: dict[str, VehicleState] = {}
        self.vehicle_clock = new_clock()
        self.chargers = charger_pipeline or ChargerPipeline()
        self.charger_states: dict[str, ChargerState] = {}
        self.attribution = attribution or ChargingAttribution()
        self.attribution_states: dict[str, AssetState] = {}
        # As in the worker: the attribution takes its inputs in event-time order, each stream
        # ticking its clock as it goes.
        self.ordered_attribution = OrderedAttribution(self.attribution)
        self.car_ticks, self.charger_ticks = ClockTicks(CAR), ClockTicks(CHARGER)
        # Charger silence has its own per-charger states (as in the worker: its own table).
        self.charger_silence = charger_silence or ChargerSilencePipeline()
        self.silence_states: dict[str, dict[str, Any]] = {}
        # Every finished charging session the charger pipeline reported (for scoring).
        self.session_outcomes: list[dict[str, Any]] = []

    def process(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Alert upserts caused by ``records`` (in the order the worker would emit them)."""
        batch = list(records)
        vehicle_records = [r for r in batch if r["kind"].startswith("vehicle_")]
        charger_records = [r for r in batch if r["kind"].startswith("charger_")]
        alerts: list[dict[str, Any]] = []
        if vehicle_records:
            watermark = Watermark(self.vehicle_clock, self.vehicles.sweep_interval_ms)

            def sweep_all(span: Span) -> tuple[list[dict[str, Any]], set[str]]:
                return self.vehicles.sweep(self.vehicle_states.items(), span)

            alerts.extend(self.vehicles.process(
                vehicle_records, self.vehicle_states, None, watermark,
                sweep_all if self.vehicles.sweepers else None)[0])
            alerts.extend(self._attribute(car_accounts(vehicle_records),
                                          self.car_ticks.after(0, vehicle_records)))
        if charger_records:
            alerts.extend(self.charger_silence.process(charger_records, self.silence_states)[0])
            charger_alerts, _, outcomes = self.chargers.process(charger_records,
                                                                self.charger_states)
            alerts.extend(charger_alerts)
            self.session_outcomes.extend(outcomes)
            alerts.extend(self._attribute(outcomes, self.charger_ticks.after(0, charger_records)))
        return alerts

    def _attribute(self, items: list[dict[str, Any]], tick: dict[str, Any] | None
                   ) -> list[dict[str, Any]]:
        if tick is not None:
            items = [*items, tick]
        if not items:
            return []
        return self.ordered_attribution.process(items, self.attribution_states)[0]

    def finish(self, ts_ms: int) -> list[dict[str, Any]]:
        """Alerts due at the end of the stream (event time ``ts_ms``): the last sweeps, then
        pending openings and clearances of alarm hygiene whose time has come without a later
        message."""
        alerts: list[dict[str, Any]] = []
        if self.vehicle_states:
            span = self.vehicles.advance_clock(self.vehicle_clock, [{"ts": ts_ms}])
            if span is not None:
                alerts.extend(self.vehicles.sweep(self.vehicle_states.items(), span)[0])
            alerts.extend(self.vehicles.due(self.vehicle_states, ts_ms))
        if self.silence_states:
            alerts.extend(self.charger_silence.advance(ts_ms, self.silence_states)[0])
        if self.charger_states:
            alerts.extend(self.chargers.due(self.charger_states, ts_ms))
        alerts.extend(self.ordered_attribution.flush(self.attribution_states)[0])
        return alerts
