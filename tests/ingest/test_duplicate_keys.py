"""Repeated keys in a payload: dead-lettered as ``duplicate_key`` wherever they are, never
claimed where there are none, whatever the strings hold (colons, quotes, escapes)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import contract
from ingest.contract import Reason

TOPIC = "vehicles/WCRAE1B54PA241856/telemetry"
TS = 1_767_571_200_000

texts = st.text(alphabet=st.sampled_from(':"\\{}[],ab\u00e9\u2603 '), max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20)


def pairs(payload: bytes) -> int:
    counted = [0]

    def hook(found: list[tuple[str, Any]]) -> dict[str, Any]:
        counted[0] += len(found)
        return dict(found)

    json.loads(payload, object_pairs_hook=hook)
    return counted[0]


@given(values)
def test_members_counts_every_member_of_every_object(value: object) -> None:
    assert contract._members(value) == pairs(orjson.dumps(value))


@given(st.dictionaries(texts, values, max_size=6))
def test_a_payload_without_repeats_is_never_called_one(signals: dict[str, Any]) -> None:
    payload = orjson.dumps({"ts": TS, "seq": 1, "signals": signals})
    try:
        contract.validate(TOPIC, payload)
    except contract.ContractError as exc:
        assert exc.reason is not Reason.DUPLICATE_KEY, exc


@given(texts, values, values, st.booleans())
def test_a_repeated_key_is_found_at_any_depth(key: str, first: Any, second: Any,
                                              nested: bool) -> None:
    name = orjson.dumps(key)
    repeated = b"{" + name + b":" + orjson.dumps(first) + b"," + name + b":" \
        + orjson.dumps(second) + b"}"
    body = b'"signals":' + repeated if nested else b'"signals":{},"x":' + repeated
    payload = b'{"ts":1767571200000,"seq":1,' + body + b"}"
    with pytest.raises(contract.ContractError) as caught:
        contract.validate(TOPIC, payload)
    assert caught.value.reason is Reason.DUPLICATE_KEY
    assert repr(key) in caught.value.detail


def test_nesting_too_deep_to_check_for_repeats_is_not_json() -> None:
    # Within orjson's 1024 levels, beyond what the check's parser recurses into.
    inner = b'{"a":' * 1015 + b'"x:y"' + b"}" * 1015
    with pytest.raises(contract.ContractError) as caught:
        contract.validate(TOPIC, b'{"ts":1767571200000,"seq":1,"signals":' + inner + b"}")
    assert caught.value.reason is Reason.NOT_JSON
    assert "nested too deeply" in caught.value.detail
