"""The staff API: ``create_app()`` builds it (nothing is created at import time)."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.routes import alerts, health, vehicles
from api.store import Store
from ownercare.settings import ApiSettings


def create_app(settings: ApiSettings | None = None, store: Store | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    app = FastAPI(
        title="ownercare API",
        version="0.1.0",
        description="Proactive-care alerts with evidence, vehicle health, live alert stream.",
    )
    app.state.settings = settings
    app.state.store = store or Store(settings.effective_database_url)
    problems.install(app)
    app.include_router(alerts.router)
    app.include_router(vehicles.router)
    app.include_router(health.router)
    return app
