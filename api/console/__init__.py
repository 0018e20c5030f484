"""The web console for owner-experience staff, served by the API process under ``/console``.

Server-rendered pages (Jinja2) with htmx for partial updates, inline SVG charts, and a
small script for the live alert feed; every asset is vendored under ``static/`` (no CDN, no
Node at run time). Signing in exchanges an API key for a session cookie (``session``); the
pages read through the API's route functions and the store's queries, and every action calls
the API's own route function, so the console can do exactly what the key's role may do
through the API, no more. ``docs/console.md`` says why it is built so.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.console import (
    routes_admin,
    routes_assets,
    routes_auth,
    routes_case,
    routes_ota,
    routes_queue,
)
from api.console.render import HERE, SECURITY_HEADERS
from api.console.session import LoginRequired, SessionStore

PREFIX = "/console"


def mount(app: FastAPI) -> None:
    """Add the console's pages, its static files and its session store to ``app``."""
    app.state.console_sessions = SessionStore()
    for module in (routes_auth, routes_queue, routes_case, routes_assets, routes_ota,
                   routes_admin):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"),
              name="console-static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/login", status_code=303, headers=SECURITY_HEADERS)
