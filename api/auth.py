"""Authentication and authorisation: every endpoint names the permission it needs.

Routes take ``who: Viewer`` (read), ``who: Agent`` (work cases), ``who: OtaManager`` (OTA
campaigns) or ``who: Admin`` (keys, webhooks). The dependency reads ``Authorization: Bearer
<key>`` (or ``X-API-Key``), answers 401 without a valid key and 403 when the key's role lacks
the permission, and applies the per-key rate limit (429 with ``Retry-After``).

Failed authentications are limited per client address: past the budget an address gets 429
before its key is even looked up, so guessing keys costs the guesser, not the database.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from storage.keys import KeyStore, Principal, roles_with

log = logging.getLogger(__name__)

__all__ = ["SECURITY", "SECURITY_SCHEMES", "Admin", "Agent", "OtaManager", "Principal",
           "RateLimiter", "Viewer", "require", "still_allowed"]

API_KEY_HEADER = "X-API-Key"
# The two ways to present a key, as OpenAPI security schemes; an operation accepts either.
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearerKey": {"type": "http", "scheme": "bearer",
                  "description": "an ownercare API key (`ownercare keys create`) as "
                                 "`Authorization: Bearer <key>`"},
    "headerKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                  "description": f"the same key as `{API_KEY_HEADER}: <key>`"},
}
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts of ``burst``.

    Per process: with N API replicas a key gets up to N times the rate, which is the usual
    trade-off for not needing a shared store. The monotonic clock is operational time (how
    fast a client calls), never event time.
    """

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead; otherwise seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Like :meth:`take` without taking: 0.0 if a token is there, else seconds until."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


def failure_limiter(request: Request) -> RateLimiter:
    state = request.app.state
    limiter: RateLimiter | None = getattr(state, "auth_failure_limiter", None)
    if limiter is None:  # created on first use (no await in between: no race)
        settings = state.settings
        limiter = RateLimiter(settings.api_auth_failures_per_s,
                              settings.api_auth_failure_burst)
        state.auth_failure_limiter = limiter
    return limiter


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.headers.get(API_KEY_HEADER)


def require(permission: str) -> Callable[..., object]:
    """A dependency that returns the caller's ``Principal`` if it holds ``permission``."""
    allowed = roles_with(permission)

    async def dependency(request: Request) -> Principal:
        key = _presented_key(request)
        keys: KeyStore = request.app.state.keys
        principal = None
        if key:
            failures = failure_limiter(request)
            address = client_address(request)
            wait = failures.wait(address)
            if wait > 0:
                log.info("api_auth_failures_limited client=%s path=%s", address,
                         request.url.path)
                raise HTTPException(
                    429, f"too many failed authentications from {address}; retry in "
                    f"{wait:.2f} s", headers={"Retry-After": str(max(1, math.ceil(wait)))})
            principal = await run_in_threadpool(keys.authenticate, key)
            if principal is None:
                failures.take(address)
        if principal is None:
            raise HTTPException(
                401, "a valid API key is required: send 'Authorization: Bearer <key>' or "
                f"'{API_KEY_HEADER}: <key>' (create one with `ownercare keys create`)"
                if key is None else
                "the API key is unknown, malformed or revoked",
                headers={"WWW-Authenticate": "Bearer"})
        if not principal.may(permission):
            raise HTTPException(403, f"the key {principal.name!r} has role "
                                f"{principal.role!r}; this needs {' or '.join(allowed)}")
        limiter: RateLimiter = request.app.state.rate_limiter
        wait = limiter.take(principal.key_id)
        if wait > 0:
            log.info("api_rate_limited key=%s path=%s", principal.key_id, request.url.path)
            raise HTTPException(429, f"rate limit of {limiter.rate:g} requests/s for this "
                                f"key exceeded; retry in {wait:.2f} s",
                                headers={"Retry-After": str(max(1, math.ceil(wait)))})
        request.state.principal = principal
        return principal

    return dependency


async def still_allowed(request: Request, permission: str) -> bool:
    """Does the key this request presented still hold ``permission`` (not revoked, role
    unchanged)? For long-lived responses such as the alert stream."""
    key = _presented_key(request)
    if not key:
        return False
    keys: KeyStore = request.app.state.keys
    principal = await run_in_threadpool(keys.authenticate, key)
    return principal is not None and principal.may(permission)


Viewer = Annotated[Principal, Depends(require("read"))]
Agent = Annotated[Principal, Depends(require("cases"))]
OtaManager = Annotated[Principal, Depends(require("ota"))]
Admin = Annotated[Principal, Depends(require("admin"))]
