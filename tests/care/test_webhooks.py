"""Webhook signing, filters, URL policy and backoff: the pure rules, property-tested. The
signatures are checked against the Standard Webhooks reference library's own verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from care import webhooks
from care.webhooks import (
    InvalidSignature,
    backoff_s,
    check_event_patterns,
    check_url,
    matches,
    secret_key,
    sign,
    verify,
)

NOW = 1_780_000_000
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
secrets_ = st.binary(min_size=1, max_size=64).map(
    lambda key: "whsec_" + base64.b64encode(key).decode())


def signed(secret: str, payload: bytes, timestamp: int = NOW,
           event_id: str = "evt-1") -> dict[str, str]:
    return webhooks.headers(secret, event_id=event_id, event_type="alert.created",
                            delivery_id="d-1", timestamp=timestamp, payload=payload)


# ---------------------------------------------------------------------------- signing


@given(secret=secrets_, data=json_values, created=st.integers(0, 2**62))
def test_any_body_and_secret_round_trip(secret: str, data: object, created: int) -> None:
    payload = webhooks.body("evt-1", "alert.created", created, data)
    verify(secret, signed(secret, payload), payload, now=NOW)
    assert orjson.loads(payload) == {"id": "evt-1", "type": "alert.created",
                                     "created_wall_ms": created, "data": data}


@given(secret=secrets_, data=json_values)
def test_the_reference_library_accepts_what_we_sign(secret: str, data: object) -> None:
    """Any Standard Webhooks verifier, not only ours: the library's own, on the wall clock."""
    payload = webhooks.body("evt-1", "alert.created", 1, data)
    headers = signed(secret, payload, timestamp=int(time.time()))
    assert Webhook(secret).verify(payload, headers) == orjson.loads(payload)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(payload + b" ", headers)


@given(secret=secrets_, payload=st.binary(min_size=1, max_size=200), data=st.data())
def test_any_tampered_byte_fails(secret: str, payload: bytes, data: st.DataObject) -> None:
    headers = signed(secret, payload)
    i = data.draw(st.integers(0, len(payload) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = payload[:i] + bytes([payload[i] ^ flip]) + payload[i + 1:]
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(secret, headers, tampered, now=NOW)


@given(secret=secrets_, other=secrets_, payload=st.binary(max_size=100))
def test_another_secret_fails(secret: str, other: str, payload: bytes) -> None:
    assume(secret_key(secret) != secret_key(other))
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(other, signed(secret, payload), payload, now=NOW)


@given(age=st.integers(-10**6, 10**6), tolerance=st.integers(1, 3600))
def test_timestamps_outside_the_tolerance_are_refused(age: int, tolerance: int) -> None:
    payload = b'{"x":1}'
    secret = webhooks.new_secret()
    headers = signed(secret, payload, timestamp=NOW - age)
    if abs(age) <= tolerance:
        verify(secret, headers, payload, tolerance_s=tolerance, now=NOW)
    else:
        with pytest.raises(InvalidSignature, match="replayed or delayed"):
            verify(secret, headers, payload, tolerance_s=tolerance, now=NOW)


def test_a_replayed_signature_with_a_fresh_timestamp_or_another_id_fails() -> None:
    """The timestamp and the id are signed: an attacker can refresh neither."""
    payload = b'{"x":1}'
    secret = webhooks.new_secret()
    old = signed(secret, payload, timestamp=NOW - 3600)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(secret, {**old, webhooks.TIMESTAMP_HEADER: str(NOW)}, payload, now=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(secret, {**old, webhooks.ID_HEADER: "evt-2"}, payload, now=NOW - 3600)


def test_the_signature_is_the_documented_hmac() -> None:
    """Receivers in other languages implement exactly this (the Standard Webhooks scheme)."""
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    payload = b'{"created_wall_ms":1,"data":{},"id":"e","type":"alert.created"}'
    mac = hmac.new(key, b"e.1700000000." + payload, hashlib.sha256).digest()
    assert sign(secret, "e", 1_700_000_000, payload) == "v1," + base64.b64encode(mac).decode()


def test_verify_accepts_any_header_case_and_rotated_signatures() -> None:
    payload = b"{}"
    old, new = webhooks.new_secret(), webhooks.new_secret()
    headers = {"Webhook-Id": "e", "WEBHOOK-TIMESTAMP": str(NOW),
               "webhook-signature": f"{sign(old, 'e', NOW, payload)} "
                                    f"{sign(new, 'e', NOW, payload)}"}
    verify(new, headers, payload, now=NOW)


GOOD = {"webhook-id": "e", "webhook-timestamp": str(NOW)}


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "missing"),
    (GOOD, "missing"),
    ({"webhook-timestamp": str(NOW), "webhook-signature": "v1,AA=="}, "missing"),
    ({**GOOD, "webhook-timestamp": "soon", "webhook-signature": "v1,AA=="}, "unix seconds"),
    ({**GOOD, "webhook-timestamp": "-5", "webhook-signature": "v1,AA=="}, "unix seconds"),
    ({**GOOD, "webhook-signature": "v1a,AA=="}, "does not match"),
    ({**GOOD, "webhook-signature": "é"}, "does not match"),
])
def test_malformed_headers_are_refused(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        verify(webhooks.new_secret(), headers, b"{}", now=NOW)


def test_the_body_is_canonical() -> None:
    a = webhooks.body("e", "alert.created", 5, {"b": 1, "a": [1.5, "é"]})
    b = webhooks.body("e", "alert.created", 5, {"a": [1.5, "é"], "b": 1})
    assert a == b == '{"created_wall_ms":5,"data":{"a":[1.5,"é"],"b":1},"id":"e","type":"alert.created"}'.encode()  # noqa: E501


def test_secrets_are_standard_webhooks_secrets_long_and_unique() -> None:
    made = {webhooks.new_secret() for _ in range(50)}
    assert len(made) == 50
    assert all(s.startswith("whsec_") and len(secret_key(s)) == 32 for s in made)


@pytest.mark.parametrize(("secret", "message"), [
    ("abc", "starts with 'whsec_'"),
    ("whsec_not base64!", "standard base64"),
    ("whsec_", "empty"),
])
def test_bad_secrets_say_what_is_wrong(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secret_key(secret)


# ---------------------------------------------------------------------------- filters


@pytest.mark.parametrize(("patterns", "event", "expected"), [
    (["alert.*"], "alert.created", True),
    (["alert.*"], "case.opened", False),
    (["alert.resolved"], "alert.resolved", True),
    (["alert.resolved"], "alert.created", False),
    (["*"], "case.transitioned", True),
    (["case.*", "alert.created"], "alert.created", True),
    (["alert.*"], "alertx.created", False),
])
def test_filters_match_types_and_families(patterns: list[str], event: str,
                                          expected: bool) -> None:
    assert matches(patterns, event) is expected


@given(st.lists(st.sampled_from(["*", "alert.*", "case.*", *webhooks.ALERT_EVENTS,
                                 "case.opened"]), min_size=1))
def test_valid_filters_are_stored_sorted_without_duplicates(patterns: list[str]) -> None:
    assert check_event_patterns(patterns) == sorted(set(patterns))


@pytest.mark.parametrize(("patterns", "message"), [
    ([], "at least one"),
    (["alert.created", "alert.creatd"], "'alert.creatd' is not an alert event"),
    (["vehicle.*"], "unknown event family 'vehicle'"),
    (["alert"], "is not an event type"),
    (["alert.*.x"], "is not an event type"),
    (["ALERT.*"], "is not an event type"),
    (["*.*"], "is not an event type"),
])
def test_bad_filters_name_the_bad_entry(patterns: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_event_patterns(patterns)


# ---------------------------------------------------------------------------- URL policy


@pytest.mark.parametrize("url", ["https://crm.example.com/hooks", "https://10.0.0.5:8443/x?a=1"])
def test_https_urls_are_accepted(url: str) -> None:
    assert check_url(url, allow_http=False) == url


@pytest.mark.parametrize(("url", "allow_http", "message"), [
    ("http://crm.example.com/hooks", False, "OWNERCARE_WEBHOOK_ALLOW_HTTP"),
    ("ftp://crm.example.com/", True, "must start with https://"),
    ("crm.example.com/hooks", False, "must start with https://"),
    ("https:///path", False, "needs a host"),
    ("https://user:pw@crm.example.com/", False, "credentials"),
    ("https://crm.example.com:99999/", False, "not a valid URL"),
    ("https://crm.example.com:0/", False, "between 1 and 65535"),
    ("https://crm.example.com/a b", False, "whitespace"),
    ("https://crm.example.com/#top", False, "fragment"),
    ("https://crm.example.com/" + "a" * 2100, False, "longer than"),
])
def test_bad_urls_say_what_to_change(url: str, allow_http: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_url(url, allow_http=allow_http)


def test_plain_http_only_when_allowed() -> None:
    assert check_url("http://127.0.0.1:8080/hook", allow_http=True)


# ---------------------------------------------------------------------------- backoff


@given(base=st.floats(0.001, 1000), factor=st.floats(1, 10_000), attempt=st.integers(1, 5000))
def test_backoff_doubles_up_to_the_cap(base: float, factor: float, attempt: int) -> None:
    cap = base * factor
    delay = backoff_s(attempt, base, cap)
    assert base <= delay <= cap
    assert delay == min(cap, base * 2.0 ** (attempt - 1) if attempt < 1000 else math.inf)
    assert backoff_s(attempt + 1, base, cap) >= delay


def test_backoff_schedule() -> None:
    assert [backoff_s(n, 30, 600) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]
    with pytest.raises(ValueError, match="attempt counts from 1"):
        backoff_s(0, 30, 600)


def test_the_readme_receiver_example_verifies_what_ownercare_signs() -> None:
    """The README's receiver code, run as written against a real signed delivery."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("### Webhooks"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md#webhooks", "exec"), namespace)  # noqa: S102
    assert namespace["SECRET"].startswith("whsec_")
    namespace["SECRET"] = secret = webhooks.new_secret()  # what POST /webhooks returned
    payload = webhooks.body("e-1", "alert.created", 1, {"change": "created"})
    headers = signed(secret, payload, timestamp=int(time.time()), event_id="e-1")
    assert namespace["receive"](headers, payload)["id"] == "e-1"
    with pytest.raises(WebhookVerificationError):
        namespace["receive"](headers, payload.replace(b"created", b"resolved"))
