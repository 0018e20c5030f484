"""Templates and the headers every console answer carries.

Jinja2 with autoescaping on, so every value from the database (alert titles, notes,
webhook errors: input from devices and staff) is text, never markup. The Content Security
Policy allows scripts and styles only from the console's own static files.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.console.session import CSRF_FIELD, Staff, sessions_of

HERE = Path(__file__).parent
STATIC_VERSION = "3"  # bump with the static files: their URLs change, caches refresh
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def when(ms: int | None) -> str:
    """An epoch-ms time as UTC minutes (event or wall clock alike; the column says which)."""
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def span(ms: float | None) -> str:
    """A duration, coarse: "3 d 4 h", "5 h 12 min", "40 s"."""
    if ms is None:
        return "—"
    s = abs(ms) / 1000
    if s >= 86400:
        return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    if s >= 60:
        return f"{int(s // 60)} min"
    return f"{int(s)} s"


def countdown(due_ms: int, now_ms: int | None) -> str:
    """Time left until ``due_ms`` by the fleet's event-time now ("overdue 2 h" when past)."""
    if now_ms is None:
        return "no telemetry yet"
    left = due_ms - now_ms
    return f"{span(left)} left" if left >= 0 else f"overdue {span(left)}"


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | dict):
        return ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return "—" if v is None else str(v)


env = Environment(loader=FileSystemLoader(HERE / "templates"),
                  autoescape=select_autoescape(default=True, default_for_string=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(when=when, span=span, value=value)
env.globals.update(countdown=countdown, csrf_field=CSRF_FIELD, static_version=STATIC_VERSION)


def render(request: Request, template: str, staff: Staff | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    """The page (or fragment) ``template`` for ``staff``, with the console's headers."""
    flash = sessions_of(request).pop_flash(staff.sid) if staff else None
    html = env.get_template(template).render(
        request=request, staff=staff, path=request.url.path, flash=flash, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def back(request: Request, staff: Staff, url: str, refusal: str | None = None
         ) -> RedirectResponse:
    """After a write: see ``url`` again (POST-redirect-GET), with the refusal, if any, shown
    once there."""
    if refusal:
        sessions_of(request).flash(staff.sid, refusal)
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
