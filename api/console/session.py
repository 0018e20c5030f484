"""Console sessions: an API key exchanged once for an opaque session cookie, and the CSRF
token that every write must carry.

The key itself is never kept: the session holds the key's id, and every request looks that
row up again (``KeyStore.get``), so a revoked key or a changed role takes effect at once,
exactly as for a request that presents the key. Permissions are the API's own
(``Principal.may``, ``storage.keys.GRANTS``); failed logins count against the same
per-address budget as failed API authentications, and each session's requests against its
key's rate limit.

Sessions live in the API process (a restart logs staff out; several API replicas need
sticky sessions). Their expiry uses the monotonic clock: operational time, never event time.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal, RateLimiter
from storage.keys import KeyStore, roles_with

COOKIE = "oc_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
IDLE_S = 8 * 3600.0  # a working day without a request ends the session
MAX_AGE_S = 12 * 3600.0  # and no session outlives a long shift
MAX_FORM_BYTES = 64 * 1024


class LoginRequired(Exception):  # noqa: N818 - a redirect, not an error
    """No valid session: pages answer with a redirect to the login form."""


@dataclass(slots=True)
class Session:
    key_id: str
    csrf: str
    created: float
    used: float
    # A refusal to show on the next page (POST-redirect-GET): kept here rather than in the
    # redirect's URL, so nobody can craft a link that makes the console say something.
    flash: str | None = None


class SessionStore:
    """Session id -> session, in memory, thread-safe (sync routes run in a thread pool)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, key_id: str) -> tuple[str, Session]:
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(key_id=key_id, csrf=secrets.token_urlsafe(32), created=now, used=now)
        with self._lock:
            self._expire(now)
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        now = self.clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.used > IDLE_S or now - session.created > MAX_AGE_S:
                del self._sessions[sid]
                return None
            session.used = now
            return session

    def flash(self, sid: str, message: str) -> None:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None:
                session.flash = message[:500]

    def pop_flash(self, sid: str) -> str | None:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            message, session.flash = session.flash, None
            return message

    def close(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def _expire(self, now: float) -> None:
        stale = [sid for sid, s in self._sessions.items()
                 if now - s.used > IDLE_S or now - s.created > MAX_AGE_S]
        for sid in stale:
            del self._sessions[sid]


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in member of staff: the key's principal and the session's CSRF token."""

    principal: Principal
    csrf: str
    sid: str

    def may(self, permission: str) -> bool:
        return self.principal.may(permission)


def sessions_of(request: Request) -> SessionStore:
    return request.app.state.console_sessions  # type: ignore[no-any-return]


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie_header(request: Request, sid: str) -> str:
    """The Set-Cookie value of a new session: HttpOnly, SameSite=Strict, Secure over TLS,
    scoped to the console's path."""
    secure = "; Secure" if is_tls(request) else ""
    return f"{COOKIE}={sid}; Path=/console; HttpOnly; SameSite=Strict{secure}"


def clear_cookie_header(request: Request) -> str:
    secure = "; Secure" if is_tls(request) else ""
    return f"{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"


async def current_staff(request: Request) -> Staff | None:
    """The session's staff member, or None (no cookie, expired, key revoked)."""
    sid = request.cookies.get(COOKIE)
    if not sid:
        return None
    sessions = sessions_of(request)
    session = sessions.get(sid)
    if session is None:
        return None
    keys: KeyStore = request.app.state.keys
    row = await run_in_threadpool(keys.get, session.key_id)
    if row is None or row["revoked_wall_ms"] is not None:
        sessions.close(sid)
        return None
    principal = Principal(key_id=row["id"], name=row["name"], role=row["role"])
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(principal.key_id)
    if wait > 0:
        raise HTTPException(429, f"rate limit of {limiter.rate:g} requests/s for this key "
                            f"exceeded; retry in {wait:.2f} s",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
    request.state.principal = principal
    return Staff(principal=principal, csrf=session.csrf, sid=sid)


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form body as {name: last value} (the console's forms only)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, f"form larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _check_csrf(request: Request, staff: Staff, form: dict[str, str]) -> None:
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD, "")
    if not sent or not hmac.compare_digest(sent.encode(), staff.csrf.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def page(permission: str = "read") -> Callable[..., object]:
    """Dependency of a console page: the staff member, or a redirect to the login form."""

    async def dependency(request: Request) -> Staff:
        staff = await current_staff(request)
        if staff is None:
            raise LoginRequired
        _refuse_unless(staff, permission)
        return staff

    return dependency


@dataclass(frozen=True, slots=True)
class Write:
    staff: Staff
    form: dict[str, str]


def write(permission: str) -> Callable[..., object]:
    """Dependency of a console write: a session, a matching CSRF token (form field or
    header), and the role's permission; 401/403 otherwise, never a redirect."""

    async def dependency(request: Request) -> Write:
        staff = await current_staff(request)
        if staff is None:
            raise HTTPException(401, "sign in to the console first")
        form = await form_of(request)
        _check_csrf(request, staff, form)
        _refuse_unless(staff, permission)
        return Write(staff, form)

    return dependency


def _refuse_unless(staff: Staff, permission: str) -> None:
    if not staff.may(permission):
        raise HTTPException(403, f"the key {staff.principal.name!r} has role "
                            f"{staff.principal.role!r}; this needs "
                            f"{' or '.join(roles_with(permission))}")


Reader = Annotated[Staff, Depends(page("read"))]
AdminPage = Annotated[Staff, Depends(page("admin"))]
CaseWrite = Annotated[Write, Depends(write("cases"))]
OtaWrite = Annotated[Write, Depends(write("ota"))]
AnyWrite = Annotated[Write, Depends(write("read"))]
