"""Webhooks, the pure part: event filters, URL policy, backoff, and the signature scheme.

No I/O here (the outbox is ``storage.outbox``, the sender ``api.webhook_dispatch``), so the
rules are property-tested and a receiver can import :func:`verify` without a database.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com/), signed with its
reference library, so any of its verifiers accepts them::

    POST <url>
    content-type: application/json
    webhook-id: <event id; the same on every retry and for every webhook>
    webhook-timestamp: <unix seconds when this attempt was signed>
    webhook-signature: v1,<base64 HMAC-SHA256(key, f"{webhook-id}.{timestamp}.{body}")>
    ownercare-event-type: alert.created
    ownercare-delivery-id: <this (event, webhook) delivery; the same on every retry>

    {"created_wall_ms":<epoch ms>,"data":{...},"id":"<event id>","type":"alert.created"}

The secret reads ``whsec_<base64 of the key bytes>``. The body is canonical JSON (sorted
keys, no whitespace, UTF-8). Receivers de-duplicate on ``webhook-id`` (delivery is at least
once). The signature covers the timestamp, so a receiver that refuses old timestamps (the
library's verifier and :func:`verify` do) also refuses replayed requests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
EVENT_TYPE_HEADER = "ownercare-event-type"
DELIVERY_HEADER = "ownercare-delivery-id"
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


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The address categories a webhook may not reach unless allow-listed: the API host itself,
# the on-premises network and cloud metadata services (169.254.169.254 is link-local).
# Most specific first: ipaddress counts link-local, unspecified and reserved as private too.
REFUSED_CATEGORIES = ("loopback", "link_local", "unspecified", "multicast", "reserved",
                      "private")
NON_PUBLIC = "non-public"  # the refusal of an address in none of them that is not global


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """The comma-separated networks of an allow-list (``10.20.0.0/16,192.168.1.5/32``), or
    ValueError naming the bad entry."""
    networks = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a network such as 10.20.0.0/16 or "
                             f"192.168.1.5/32 ({exc})") from None
    return tuple(networks)


def address_refusal(address: IpAddress, allowed: tuple[IpNetwork, ...] = ()) -> str | None:
    """Why a webhook must not connect to ``address`` (e.g. ``"loopback"``), or None.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 address it
    reaches (as IPv6 the whole ``::ffff:0:0/96`` block is merely "reserved"). Addresses
    inside ``allowed`` (on-premises receivers) are always accepted.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed if address.version == net.version):
        return None
    for category in REFUSED_CATEGORIES:
        if getattr(address, f"is_{category}"):
            return category.replace("_", "-")
    if not address.is_global:
        # In no category above yet not on the internet: carrier-grade NAT's shared space
        # (100.64.0.0/10) reaches a provider's internal hosts, and the IANA special-purpose
        # blocks (benchmarking, protocol assignments) are nobody's public receiver.
        return NON_PUBLIC
    return None


def check_addresses(host: str, addresses: Iterable[str],
                    allowed: tuple[IpNetwork, ...] = ()) -> list[IpAddress]:
    """The resolved addresses of ``host`` if every one may be reached, else ValueError
    naming the first refused one. Every address counts: a client may connect to any."""
    checked: list[IpAddress] = []
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])  # drop an IPv6 zone id
        reason = address_refusal(address, allowed)
        if reason is not None:
            article = "an" if reason[0] in "aeiou" else "a"
            raise ValueError(
                f"the host {host!r} resolves to {address}, {article} {reason} address; webhooks "
                "may only reach public addresses (allow an on-premises receiver with "
                "OWNERCARE_WEBHOOK_ALLOW_NETWORKS)")
        checked.append(address)
    if not checked:
        raise ValueError(f"the host {host!r} has no address")
    return checked


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
    """A signing secret: ``whsec_`` and the base64 of 256 random bits (the HMAC key)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret encodes, or ValueError saying what is wrong."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} followed by standard "
                         "base64") from None
    if not key:
        raise ValueError("a webhook secret's key is empty")
    return key


def body(event_id: str, event_type: str, created_wall_ms: int, data: Any) -> bytes:
    """The canonical JSON body of an event: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps({"id": event_id, "type": event_type, "created_wall_ms": created_wall_ms,
                         "data": data}, option=orjson.OPT_SORT_KEYS)


def sign(secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
    """The ``webhook-signature`` value, ``v1,<base64>``, as the Standard Webhooks library
    computes it: HMAC-SHA256 keyed with the secret's key bytes over
    ``f"{msg_id}.{timestamp}."`` followed by the raw body."""
    return Webhook(secret_key(secret)).sign(msg_id, datetime.fromtimestamp(timestamp, UTC),
                                            payload)


def headers(secret: str, *, event_id: str, event_type: str, delivery_id: str, timestamp: int,
            payload: bytes) -> dict[str, str]:
    """Every header of one delivery attempt (``timestamp``: unix seconds)."""
    return {
        "content-type": "application/json",
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, event_id, timestamp, payload),
        EVENT_TYPE_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
    }


def verify(secret: str, request_headers: Mapping[str, str], payload: bytes,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Raise :class:`InvalidSignature` unless the request is one signed with ``secret`` less
    than ``tolerance_s`` seconds from ``now`` (unix seconds; the wall clock by default).

    What ``standardwebhooks.Webhook(secret).verify`` checks, with the clock and the
    tolerance as parameters (that verifier has a fixed 5 minutes against the wall clock).
    ``payload`` is the raw request body, byte for byte (parse JSON only after verifying).
    The signature header may hold several space-separated values (secret rotation): one
    match is enough.
    """
    lower = {k.lower(): v for k, v in request_headers.items()}
    msg_id, raw_ts, raw_sig = (lower.get(h) for h in (ID_HEADER, TIMESTAMP_HEADER,
                                                      SIGNATURE_HEADER))
    if not (msg_id and raw_ts and raw_sig):
        raise InvalidSignature(f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or "
                               f"{SIGNATURE_HEADER} header")
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not unix seconds")
    timestamp = int(raw_ts)
    if now is None:
        now = time.time()
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature(f"timestamp {timestamp} is more than {tolerance_s} s from now "
                               "(a replayed or delayed request)")
    expected = sign(secret, msg_id, timestamp, payload).encode()
    if not any(hmac.compare_digest(expected, offered.encode("utf-8", "replace"))
               for offered in raw_sig.split()):
        raise InvalidSignature("signature does not match the id, timestamp and body")
