"""Webhooks, the pure part: event filters, URL policy, backoff, and the signature scheme.

No I/O here (the outbox is ``storage.outbox``, the sender ``api.webhook_dispatch``), so a
receiver can import :func:`verify` without a database, and the rules are property-tested.

What a receiver gets (Stripe / Standard Webhooks style)::

    POST <url>
    Content-Type: application/json
    X-Ownercare-Event: alert.created
    X-Ownercare-Delivery: <delivery id; the same on every retry of this delivery>
    X-Ownercare-Timestamp: <unix seconds when this attempt was signed>
    X-Ownercare-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

    {"created_at":<epoch ms>,"data":{...},"id":"<event id>","type":"alert.created"}

The body is canonical JSON (sorted keys, no whitespace, UTF-8). ``id`` is the event id: the
same for every webhook the event goes to and on every retry, so receivers de-duplicate on it
(delivery is at least once). The signature covers the timestamp, so a receiver that refuses
old timestamps (:func:`verify` does) also refuses replayed requests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

SCHEME = "v1"
EVENT_HEADER = "X-Ownercare-Event"
DELIVERY_HEADER = "X-Ownercare-Delivery"
TIMESTAMP_HEADER = "X-Ownercare-Timestamp"
SIGNATURE_HEADER = "X-Ownercare-Signature"
DEFAULT_TOLERANCE_S = 300

# Event types. The alert ones are the changes of the alert change log (the SSE stream's
# `change`); case event names belong to the cases module, so any `case.<name>` is accepted.
# ``alert.linked`` is the creation of an alert that is a consequence of another open alert
# (``root_cause_id``): not a new problem, so subscribers to ``alert.created`` do not get it.
ALERT_EVENTS = ("alert.created", "alert.linked", "alert.updated", "alert.reopened",
                "alert.resolved", "alert.superseded")
FAMILIES = ("alert", "case")
_PATTERN = re.compile(r"^(\*|[a-z]+\.\*|[a-z]+\.[a-z][a-z_]*)$")
MAX_URL_LENGTH = 2048


class InvalidSignature(ValueError):
    """A webhook request that must be refused; the message says why."""


# ---------------------------------------------------------------------------- event filters


def check_event_patterns(patterns: Iterable[str]) -> list[str]:
    """The filter as stored (sorted, without duplicates), or ValueError naming the bad entry.

    An entry is an event type (``alert.created``), a family (``alert.*``, ``case.*``) or
    ``*`` (everything).
    """
    checked: set[str] = set()
    for pattern in patterns:
        if not _PATTERN.match(pattern):
            raise ValueError(f"{pattern!r} is not an event type, a family such as 'alert.*', "
                             "or '*'")
        family = pattern.split(".", 1)[0]
        if pattern != "*" and family not in FAMILIES:
            raise ValueError(f"{pattern!r}: unknown event family {family!r} "
                             f"(one of {', '.join(f + '.*' for f in FAMILIES)})")
        if family == "alert" and pattern != "alert.*" and pattern not in ALERT_EVENTS:
            raise ValueError(f"{pattern!r} is not an alert event (one of "
                             f"{', '.join(ALERT_EVENTS)})")
        checked.add(pattern)
    if not checked:
        raise ValueError("subscribe to at least one event type, e.g. 'alert.*'")
    return sorted(checked)


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Does a webhook with this filter receive ``event_type``?"""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# ---------------------------------------------------------------------------- URL policy


def check_url(url: str, *, allow_http: bool) -> str:
    """The URL if a webhook may be sent to it, else ValueError saying what to change.

    HTTPS only (the body is signed, not encrypted), unless ``allow_http`` (tests, local
    development). No user:password in the URL: it would show up in every listing, and the
    signature already authenticates us to the receiver.
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        hint = "" if allow_http or parts.scheme != "http" else \
            " (plain http only with OWNERCARE_WEBHOOK_ALLOW_HTTP=true, for local development)"
        raise ValueError(f"the URL must start with https://{hint}")
    if not parts.hostname:
        raise ValueError("the URL needs a host name")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not contain credentials; the signature authenticates "
                         "the sender")
    if port == 0:
        raise ValueError("the URL's port must be between 1 and 65535")
    if parts.fragment:
        raise ValueError("the URL must not have a #fragment")
    return url


# ---------------------------------------------------------------------------- retries


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Delay before the next try after ``attempt`` (1-based) failed: base·2^(attempt-1),
    at most ``cap_s``."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if attempt > 64:  # past any sane cap; and base·2^n would overflow a float
        return float(cap_s)
    return float(min(cap_s, base_s * 2.0 ** (attempt - 1)))


# ---------------------------------------------------------------------------- signing


def new_secret() -> str:
    """A signing secret (256 bits of randomness); the whole string is the HMAC key."""
    return "whsec_" + secrets.token_urlsafe(32)


def body(event_id: str, event_type: str, created_at: int, data: Any) -> bytes:
    """The canonical JSON body of an event: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps({"id": event_id, "type": event_type, "created_at": created_at,
                         "data": data}, option=orjson.OPT_SORT_KEYS)


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    """The ``X-Ownercare-Signature`` value: ``v1=`` + hex HMAC-SHA256 of
    ``f"{timestamp}.".encode() + payload`` keyed with the secret's UTF-8 bytes."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def headers(secret: str, *, event_type: str, delivery_id: str, timestamp: int,
            payload: bytes) -> dict[str, str]:
    """Every header of one delivery attempt."""
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, payload),
    }


def verify(secret: str, request_headers: Mapping[str, str], payload: bytes,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Raise :class:`InvalidSignature` unless the request is one ownercare signed with
    ``secret`` less than ``tolerance_s`` seconds from ``now`` (unix seconds).

    ``payload`` is the raw request body, byte for byte (parse JSON only after verifying).
    The signature header may hold several space-separated ``v1=`` values (secret rotation):
    one match is enough. ``now`` defaults to the wall clock.
    """
    lower = {k.lower(): v for k, v in request_headers.items()}
    raw_ts = lower.get(TIMESTAMP_HEADER.lower())
    raw_sig = lower.get(SIGNATURE_HEADER.lower())
    if raw_ts is None or raw_sig is None:
        raise InvalidSignature(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not unix seconds")
    timestamp = int(raw_ts)
    if now is None:
        now = time.time()
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature(f"timestamp {timestamp} is more than {tolerance_s} s from now "
                               "(a replayed or delayed request)")
    expected = sign(secret, timestamp, payload)
    offered = [v for v in raw_sig.split() if v.startswith(f"{SCHEME}=")]
    if not any(hmac.compare_digest(expected.encode(), v.encode()) for v in offered):
        raise InvalidSignature("signature does not match the body and timestamp")
