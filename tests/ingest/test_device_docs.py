"""The device contract documents (docs/contract/): current, consistent, and in agreement with
what the bridge's validator accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from ingest import contract
from ingest.catalogue import LIST_MAX_LEN, STRING_MAX_LEN, Signal, SignalType
from ingest.contract import ContractError, Kind, SignalRejection, validate
from ingest.device_docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "contract"
VIN = "WVWZZZ1JZXW000001"
TS = 1_767_571_200_000
RENDERED = render()
SCHEMAS = {name: json.loads(text) for name, text in RENDERED.items()}
TELEMETRY = Draft7Validator(SCHEMAS["vehicleTelemetry.schema.json"])


def test_the_documents_in_docs_are_what_the_contract_generates() -> None:
    """Rerun scripts/gen_device_contract.py after changing the contract or the catalogue."""
    assert sorted(p.name for p in DOCS.iterdir()) == sorted(RENDERED)
    for name, text in RENDERED.items():
        assert (DOCS / name).read_text() == text, name


def test_asyncapi_names_every_topic_and_resolves_every_reference() -> None:
    doc = SCHEMAS["asyncapi.json"]
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {*contract.TOPIC_PATTERNS.values(), contract.OTA_COMMAND_TOPIC,
                         contract.REMOTE_COMMAND_TOPIC}
    for name, channel in doc["channels"].items():
        assert set(channel["parameters"]) == {"id"}
        assert "{id}" in channel["address"]
        (ref,) = [m["$ref"] for m in channel["messages"].values()]
        message = doc["components"]["messages"][ref.rsplit("/", 1)[1]]
        schema_ref = message["payload"]["schema"]["$ref"]
        assert schema_ref in SCHEMAS, (name, schema_ref)
        assert SCHEMAS[schema_ref]["title"].replace("{vin}", "{id}") == channel["address"]
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"].rsplit("/", 1)[1]
        assert channel in doc["channels"]
        outbound = doc["channels"][channel]["address"].endswith(("/ota/command", "/commands"))
        assert op["action"] == ("receive" if outbound else "send")
    for name, schema in SCHEMAS.items():
        if name != "asyncapi.json":
            Draft7Validator.check_schema(schema)


def accepted_whole(topic: str, body: dict[str, Any]) -> bool:
    """The bridge forwards the message with nothing dead-lettered."""
    rejected: list[SignalRejection] = []
    try:
        validate(topic, orjson.dumps(body), rejected=rejected)
    except ContractError:
        return False
    return not rejected


def good_value(signal: Signal) -> st.SearchStrategy[Any]:
    lo, hi = signal.min, signal.max
    if signal.type in (SignalType.FLOAT, SignalType.FLOAT_LIST):
        item: st.SearchStrategy[Any] = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    elif signal.type in (SignalType.INT, SignalType.INT_LIST):
        item = st.integers(int(lo) if lo is not None else -(2**63),
                           int(hi) if hi is not None else 2**63 - 1)
    elif signal.type is SignalType.BOOL:
        item = st.booleans()
    elif signal.allowed:
        item = st.sampled_from(sorted(signal.allowed))
    else:
        item = st.text(max_size=10)
    if signal.type in (SignalType.FLOAT_LIST, SignalType.INT_LIST, SignalType.STRING_LIST):
        return st.lists(item, max_size=3)
    return item


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),  # what JSON encodes
                 st.floats(allow_nan=False, allow_infinity=False), st.floats(-300, 300),
                 st.text(max_size=300),
                 st.lists(st.one_of(st.floats(-10, 10), st.integers(-5, 300), st.text(max_size=4)),
                          max_size=3), st.sampled_from(["ON", "NORMAL", "DIESEL", 231.0, 1e9]))


def edge_value(signal: Signal) -> st.SearchStrategy[Any]:
    """Values just inside and just outside what the signal allows."""
    lo, hi = signal.min, signal.max
    near: list[Any] = [lo, hi, 0.5, "NOT_ALLOWED", [0.5] * (LIST_MAX_LEN + 1)]
    if lo is not None:
        near += [lo - 1, lo + 0.5]
    if hi is not None:
        near += [hi + 1, hi - 0.5, float(hi)]
    if signal.allowed:
        near += [sorted(signal.allowed)[0].lower(), [sorted(signal.allowed)[0], "NOT_ALLOWED"]]
    if signal.type is SignalType.STRING:
        near.append("x" * (STRING_MAX_LEN + 1))
    return st.sampled_from(near)


# Paths by type, each type drawn as often as any other: arrays and strings are a few of the
# catalogue's signals, and a schema wrong for them must not hide behind the thousand others.
_BY_TYPE = [sorted(p for p, s in contract.SIGNALS.items() if s.type is kind)
            for kind in SignalType if any(s.type is kind for s in contract.SIGNALS.values())]


@st.composite
def signal_entry(draw: st.DrawFn) -> tuple[str, Any]:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.from_regex(r"Vehicle\.[A-Z][a-z]{2,8}", fullmatch=True)), 1.0
    path = draw(st.sampled_from(draw(st.sampled_from(_BY_TYPE))))
    signal = contract.SIGNALS[path]
    value = draw(st.one_of(good_value(signal), edge_value(signal), _ANY))
    return path, value


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(signal_entry(), min_size=0, max_size=3),
       st.fixed_dictionaries({}, optional={"ts": st.sampled_from([TS, 5, "x"]),
                                           "seq": st.sampled_from([0, -1, 2**63]),
                                           "extra": st.just(1), "vin": st.just(VIN)}))
def test_the_telemetry_schema_accepts_exactly_what_the_bridge_forwards_whole(
        entries: list[tuple[str, Any]], header: dict[str, Any]) -> None:
    body = {"ts": TS, "seq": 1, **header, "signals": dict(entries)}
    assert TELEMETRY.is_valid(body) == accepted_whole(f"vehicles/{VIN}/telemetry", body), (
        [e.message for e in TELEMETRY.iter_errors(body)][:3])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signal_entry())
def test_the_schema_of_each_signal_accepts_exactly_what_the_bridge_keeps(
        entry: tuple[str, Any]) -> None:
    body = {"ts": TS, "seq": 1, "signals": dict([entry])}
    assert TELEMETRY.is_valid(body) == accepted_whole(f"vehicles/{VIN}/telemetry", body), (
        [e.message for e in TELEMETRY.iter_errors(body)][:3])


EXAMPLES: list[tuple[Kind, str, dict[str, Any], bool]] = [
    (Kind.VEHICLE_EVENT, f"vehicles/{VIN}/events",
     {"ts": TS, "seq": 2, "type": "dtc", "code": "P0AA6", "state": "active"}, True),
    (Kind.VEHICLE_EVENT, f"vehicles/{VIN}/events",
     {"ts": TS, "seq": 2, "type": "dtc", "code": "X0AA6"}, False),
    (Kind.VEHICLE_EVENT, f"vehicles/{VIN}/events", {"ts": TS, "seq": 2, "type": "boom"}, False),
    (Kind.VEHICLE_OTA_STATUS, f"vehicles/{VIN}/ota/status",
     {"ts": TS, "seq": 3, "status": "installing", "progress": 40.0}, True),
    (Kind.VEHICLE_OTA_STATUS, f"vehicles/{VIN}/ota/status",
     {"ts": TS, "seq": 3, "status": "installing", "progress": 140.0}, False),
    (Kind.VEHICLE_COMMAND_RESULT, f"vehicles/{VIN}/commands/result",
     {"ts": TS, "seq": 4, "command_id": "c-1", "status": "acknowledged"}, True),
    (Kind.VEHICLE_COMMAND_RESULT, f"vehicles/{VIN}/commands/result",
     {"ts": TS, "seq": 4, "command_id": "c 1", "status": "acknowledged"}, False),
    (Kind.CHARGER_STATUS, "chargers/CP-1/status",
     {"ts": TS, "connectorId": 1, "status": "Charging", "errorCode": "NoError"}, True),
    (Kind.CHARGER_STATUS, "chargers/CP-1/status",
     {"ts": TS, "connectorId": 1, "status": "Charging"}, False),
    (Kind.CHARGER_METER, "chargers/CP-1/meter",
     {"ts": TS, "connectorId": 1, "measurands": {"Power.Active.Import": 7200.0}}, True),
    (Kind.CHARGER_METER, "chargers/CP-1/meter",
     {"ts": TS, "connectorId": 1, "measurands": {"Power.Imaginary": 1.0}}, False),
]


def test_the_other_schemas_agree_with_the_bridge_on_examples() -> None:
    names = {Kind.VEHICLE_EVENT: "vehicleEvent", Kind.VEHICLE_OTA_STATUS: "vehicleOtaStatus",
             Kind.VEHICLE_COMMAND_RESULT: "vehicleCommandResult",
             Kind.CHARGER_STATUS: "chargerStatus", Kind.CHARGER_METER: "chargerMeter"}
    for kind, topic, body, ok in EXAMPLES:
        schema = Draft7Validator(SCHEMAS[f"{names[kind]}.schema.json"])
        assert (schema.is_valid(body), accepted_whole(topic, body)) == (ok, ok), (topic, body)
