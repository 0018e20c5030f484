"""Sign in with an API key (posted once in a form, exchanged for a session cookie), sign out.

The key travels only in the login form's POST body: never in a URL, never in browser
storage. The failed-login budget per address is the API's failed-authentication budget.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from api.auth import client_address, failure_limiter
from api.console.render import SECURITY_HEADERS, render
from api.console.session import (
    AnyWrite,
    clear_cookie_header,
    current_staff,
    form_of,
    sessions_of,
    set_cookie_header,
)
from storage.keys import KeyStore

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


@router.get("/console")
async def index() -> RedirectResponse:
    return _redirect("/console/queue")


@router.get("/console/login")
async def login_form(request: Request) -> Response:
    if await current_staff(request) is not None:
        return _redirect("/console/queue")
    return render(request, "login.html", None)


def _same_origin(request: Request) -> bool:
    """A login posted from another site (login CSRF) carries its Origin; browsers send one
    with every form POST."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host") and parts.scheme == request.url.scheme


@router.post("/console/login")
async def login(request: Request) -> Response:
    if not _same_origin(request):
        raise HTTPException(403, "sign-in must come from the console's own page")
    form = await form_of(request)
    key = form.get("key", "").strip()
    failures = failure_limiter(request)
    address = client_address(request)
    if failures.wait(address) > 0:
        return render(request, "login.html", None, status=429,
                      error="Too many failed sign-ins from this address; wait a minute.")
    keys: KeyStore = request.app.state.keys
    principal = await run_in_threadpool(keys.authenticate, key) if key else None
    if principal is None:
        failures.take(address)
        log.info("console_login_failed client=%s", address)
        return render(request, "login.html", None, status=401,
                      error="That API key is unknown, malformed or revoked.")
    old = request.cookies.get("oc_console")
    if old:  # a fresh id on every sign-in: no session fixation
        sessions_of(request).close(old)
    sid, _session = sessions_of(request).open(principal.key_id)
    log.info("console_login key=%s role=%s", principal.key_id, principal.role)
    response = _redirect("/console/queue")
    response.headers.append("Set-Cookie", set_cookie_header(request, sid))
    return response


@router.post("/console/logout")
async def logout(request: Request, write: AnyWrite) -> Response:
    sessions_of(request).close(write.staff.sid)
    log.info("console_logout key=%s", write.staff.principal.key_id)
    response = _redirect("/console/login")
    response.headers.append("Set-Cookie", clear_cookie_header(request))
    return response
