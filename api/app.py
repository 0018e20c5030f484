"""The staff API: ``create_app()`` builds it (nothing is created at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from api import problems
from api.auth import SECURITY, SECURITY_SCHEMES, RateLimiter
from api.console import mount as mount_console
from api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from api.limits import BodySizeLimit, no_nul_characters
from api.metrics import ServiceReports
from api.routes import (
    alerts,
    cases,
    chargers,
    commands,
    contract,
    fleet,
    health,
    keys,
    metrics,
    ota,
    quality,
    survey,
    vehicles,
    webhooks,
)
from api.webhook_dispatch import Dispatcher
from config.settings import ApiSettings, mask_url
from ingest.catalogue import load_catalogue
from storage.cases import CaseStore
from storage.keys import KeyStore
from storage.store import Store

log = logging.getLogger(__name__)

TAGS = [
    {"name": "alerts", "description": "Proactive-care alerts with their evidence, and a live "
                                      "stream of alert changes (server-sent events)."},
    {"name": "cases", "description": "Care cases: every alert opens or joins its asset's "
                                     "case; staff work it from new to resolved, with an "
                                     "audit trail and an SLA due time by severity."},
    {"name": "quality", "description": "Detector precision from staff outcome labels."},
    {"name": "vehicles", "description": "Vehicles with a health summary, and each vehicle's "
                                        "health card: latest signals, open alerts, daily "
                                        "trends of the health indicators."},
    {"name": "chargers", "description": "Chargers: connector status, charging sessions, "
                                        "faults and the share attributable to the charger."},
    {"name": "fleet", "description": "Fleet overview: open alerts by type and severity, "
                                     "asset counts, top faulty chargers."},
    {"name": "metrics", "description": "Prometheus metrics of the whole service."},
    {"name": "keys", "description": "API keys and their roles (admin only)."},
    {"name": "webhooks", "description": "Signed HTTPS callbacks for alert and case events, "
                                        "retried with backoff, with a dead-letter list "
                                        "(admin only)."},
    {"name": "ota", "description": "Over-the-air updates: signed releases, health-gated "
                                   "campaigns in waves, progress, why cars wait."},
    {"name": "commands", "description": "Remote support: signed commands to a car (snapshot, "
                                        "12 V battery test, wake, clear trouble codes) and "
                                        "their results."},
    {"name": "health", "description": "Liveness and readiness probes (no key needed)."},
]


def create_app(settings: ApiSettings | None = None, store: Store | None = None) -> FastAPI:
    """Build the API. Without ``store`` it opens ``settings.effective_database_url`` and
    closes it on shutdown; a store passed in belongs to the caller. A bad VSS overlay raises
    ``ingest.catalogue.OverlayError`` naming the file, the node and why."""
    settings = settings or ApiSettings()
    catalogue = load_catalogue(settings.vss_overlay_paths)  # before anything is opened
    owned = store is None
    store = store or Store(settings.effective_database_url, case_sla_hours=settings.case_sla)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("api_start database=%s kafka=%s", mask_url(store.url), settings.kafka_bootstrap)
        follower = asyncio.create_task(app.state.service_reports.follow(),
                                       name="service-reports")
        async with dispatcher.running():  # webhook deliveries, until shutdown
            yield
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        if owned:
            store.close()
        log.info("api_stop")

    app = FastAPI(
        title="ownercare API",
        version="0.1.0",
        description="For owner-experience (customer-care) staff: proactive-care alerts with "
                    "evidence, vehicle health, a live alert stream. Every endpoint except "
                    "/health needs an API key (`Authorization: Bearer <key>` or "
                    "`X-API-Key: <key>`) whose role allows it. Times are epoch ms named for "
                    "their clock: `*_event_ms` (the devices' event time), `*_wall_ms` (the "
                    "server's). Errors are RFC 9457 `application/problem+json`.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        dependencies=[Depends(no_nul_characters)],
    )
    app.state.settings = settings
    app.state.catalogue = catalogue
    app.state.store = store
    app.state.keys = KeyStore(store)
    app.state.cases = CaseStore(store)
    app.state.service_reports = ServiceReports(settings.kafka_bootstrap)
    app.state.webhook_dispatcher = dispatcher = Dispatcher(store, settings)
    app.state.rate_limiter = RateLimiter(settings.api_rate_limit_per_s,
                                         settings.api_rate_limit_burst)
    problems.install(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["Retry-After"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.state.http_metrics = http_metrics = HttpMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics)  # outermost: sees every answer
    app.include_router(alerts.router)
    app.include_router(cases.router)
    app.include_router(quality.router)
    app.include_router(keys.router)
    app.include_router(vehicles.router)
    app.include_router(chargers.router)
    app.include_router(fleet.router)
    app.include_router(metrics.router)
    app.include_router(webhooks.router)
    app.include_router(ota.router)
    app.include_router(commands.router)
    app.include_router(survey.router)
    app.include_router(ota.vehicle_router)
    app.include_router(health.router)
    app.include_router(contract.router)
    mount_console(app)  # the staff web console under /console
    http_metrics.prime(app.routes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every error response documented as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes, tags=app.openapi_tags)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    content = response.get("content", {})
                    schema = content.pop("application/json", {}).get("schema", problem_ref)
                    if schema.get("$ref", "").endswith("/HTTPValidationError"):
                        schema = problem_ref
                    response["content"] = {problems.MEDIA_TYPE: {"schema": schema}, **content}
    spec.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for route_path, path in spec.get("paths", {}).items():
        if not route_path.startswith("/health"):
            for operation in path.values():
                operation["security"] = SECURITY
                for code, why in (("401", "No valid API key"), ("403", "The key's role may "
                                  "not do this"), ("429", "Rate limit of the key exceeded")):
                    operation["responses"].setdefault(code, {
                        "description": why,
                        "content": {problems.MEDIA_TYPE: {"schema": problem_ref}}})
    schemas = spec.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = spec
    return spec
