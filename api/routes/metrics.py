"""``GET /metrics`` in the Prometheus text format (any valid key; see api.metrics)."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import Viewer
from api.deps import SettingsDep, StoreDep
from api.metrics import (
    KAFKA_TIMEOUT_S,
    ServiceReports,
    Snapshot,
    alert_counts,
    consumer_lag,
    restart_metrics,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text exposition format"}})
async def metrics(request: Request, store: StoreDep, settings: SettingsDep,
                  _who: Viewer) -> Response:
    """Ingest and dead-letter counters of every bridge, detector counters of every worker,
    the worker group's consumer lag, alerts by type, severity and status, webhook
    deliveries by webhook and state with this replica's delivery counters, and this
    replica's HTTP request counts and durations by route (docs/operations.md lists them all).

    Scrape with a key: Prometheus' ``authorization: {credentials: <key>}``.
    """
    reports: ServiceReports = request.app.state.service_reports
    try:
        lag: dict[tuple[str, int], int] | None = await asyncio.wait_for(
            consumer_lag(settings.kafka_bootstrap, settings.worker_app_id), KAFKA_TIMEOUT_S)
    except Exception as exc:  # Kafka away: everything else is still worth serving
        log.warning("metrics_lag_unavailable error=%r", exc)
        lag = None
    rows = await asyncio.to_thread(alert_counts, store)
    webhooks = await asyncio.to_thread(request.app.state.webhook_dispatcher.metrics)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(reports.current(), lag, settings.worker_app_id, rows,
                               time.time(), extra=[*webhooks,
                                                   *request.app.state.http_metrics.collect(),
                                                   *restart_metrics(settings.state_dir)]))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
