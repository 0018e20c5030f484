"""Every detector the worker runs, over a stream of canonical records, without any broker.

``ownercare backtest``, ``ownercare eval`` and ``ownercare replay`` all feed recorded or
simulated telemetry through this one class, so what they score is exactly what the worker
runs: the same pipelines, the same alarm hygiene, the same event-time rules. The worker splits
the same work across Faust agents (``diagnostics/agents.py``); here it runs in one process.

Records are the canonical dicts of ``ingest.contract.validate`` (``kind``, ``id``, ``ts``,
``seq``, ``data``), in event-time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from diagnostics.pipeline import VehiclePipeline, VehicleState


class OfflineDiagnostics:
    """All the worker's pipelines over one record stream; keeps every asset's state in memory."""

    def __init__(self, vehicle_pipeline: VehiclePipeline | None = None) -> None:
        self.vehicles = vehicle_pipeline or VehiclePipeline()
        self.vehicle_states: dict[str, VehicleState] = {}

    def process(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Alert upserts caused by ``records`` (in the order the worker would emit them)."""
        vehicle_records = [r for r in records if r["kind"].startswith("vehicle_")]
        alerts: list[dict[str, Any]] = []
        if vehicle_records:
            alerts.extend(self.vehicles.process(vehicle_records, self.vehicle_states)[0])
        return alerts

    def finish(self, ts_ms: int) -> list[dict[str, Any]]:
        """Alerts due at the end of the stream (event time ``ts_ms``): pending openings and
        clearances of alarm hygiene whose time has come without a later message."""
        return self.vehicles.due(self.vehicle_states, ts_ms)
