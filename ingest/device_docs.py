"""The device contract as documents: JSON Schemas of the MQTT payloads and an AsyncAPI 3.0
description of the MQTT interface, generated from ``ingest.contract`` and its VSS catalogue.

``scripts/gen_device_contract.py`` writes them to ``docs/contract/``; the tests check that the
files there are what this module generates and that the schemas accept what the bridge
accepts. The schemas are JSON Schema draft-07 (what AsyncAPI 3.0 reads as
``application/schema+json;version=draft-07``). Units and VSS datatypes ride along as the
annotations ``x-unit`` and ``x-vss-datatype``.

A telemetry schema describes the signals the bridge accepts; a message carrying other or bad
signals is not refused whole (they are dead-lettered one by one and the rest stands), which
JSON Schema cannot say: the document says it in words.
"""

from __future__ import annotations

from typing import Any, Final

from ingest import contract
from ingest.catalogue import Catalogue, Signal, SignalType

DRAFT: Final = "http://json-schema.org/draft-07/schema#"
SCHEMA_FORMAT: Final = "application/schema+json;version=draft-07"
VIN_PATTERN: Final = "^" + contract.VIN_RE.pattern + "$"
CHARGER_PATTERN: Final = "^" + contract.CHARGER_ID_RE.pattern + "$"


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _num(lo: float, hi: float) -> dict[str, Any]:
    return {"type": "number", "minimum": lo, "maximum": hi}


def _str(max_len: int, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "maxLength": max_len}
    if allowed is not None:
        out["enum"] = sorted(allowed)
    return out


def _bounded(schema: dict[str, Any], signal: Signal) -> dict[str, Any]:
    if signal.min is not None:
        schema["minimum"] = signal.min
    if signal.max is not None:
        schema["maximum"] = signal.max
    return schema


def signal_schema(signal: Signal) -> dict[str, Any]:
    """The JSON Schema of one signal's value, as ``contract.SignalChecker`` checks it."""
    kind = signal.type
    item: dict[str, Any]
    if kind in (SignalType.FLOAT, SignalType.FLOAT_LIST):
        item = _bounded({"type": "number"}, signal)
    elif kind in (SignalType.INT, SignalType.INT_LIST):
        item = _bounded({"type": "integer"}, signal)
    elif kind is SignalType.BOOL:
        item = {"type": "boolean"}
    else:
        item = _str(signal.max_len or 256, signal.allowed)
        if kind is SignalType.STRING_LIST:
            item["maxLength"] = 256
    schema: dict[str, Any] = item
    if kind in (SignalType.FLOAT_LIST, SignalType.INT_LIST, SignalType.STRING_LIST):
        schema = {"type": "array", "maxItems": signal.max_len, "items": item}
    if signal.description:
        schema["description"] = signal.description
    if signal.unit:
        schema["x-unit"] = signal.unit
    schema["x-vss-datatype"] = signal.datatype
    return schema


def _header(seq_required: bool) -> tuple[dict[str, Any], list[str]]:
    props = {"ts": {**_int(contract.MIN_TS_MS, contract.MAX_TS_MS),
                    "description": "event time, epoch milliseconds"},
             "seq": {**_int(0, contract.MAX_SEQ), "description": "per-device counter"}}
    return props, ["ts", "seq"] if seq_required else ["ts"]


def _object(title: str, props: dict[str, Any], required: list[str],
            description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"$schema": DRAFT, "title": title, "type": "object",
                           "properties": props, "required": required,
                           "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def telemetry_schema(catalogue: Catalogue) -> dict[str, Any]:
    props, required = _header(True)
    props["vin"] = {"type": "string", "pattern": VIN_PATTERN}
    props["signals"] = {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {path: signal_schema(s) for path, s in sorted(catalogue.signals.items())},
    }
    return _object(
        "vehicles/{vin}/telemetry", props, [*required, "signals"],
        f"Signals of VSS {catalogue.release}"
        + (f" and the overlays {', '.join(catalogue.overlays)}" if catalogue.overlays else "")
        + ". The bridge accepts a message with other or bad signals too: it forwards the valid "
        "ones and dead-letters each other one on its own (reason, path).")


def _event_schema() -> dict[str, Any]:
    props, required = _header(True)
    props.update({
        "vin": {"type": "string", "pattern": VIN_PATTERN},
        "type": _str(32, frozenset(contract.EventType)),
        "code": {"type": "string", "maxLength": 16, "pattern": "^" + contract.DTC_RE.pattern
                 + "$", "description": "SAE J2012 trouble code (type dtc)"},
        "state": {"type": "string", "maxLength": 16,
                  "enum": sorted(contract.DTC_STATES | contract.LOW_VOLTAGE_SYSTEM_STATES)},
        "description": _str(200), "voltage_min": _num(0, 20),
        "duration_ms": _int(0, 10**10), "distance_m": _num(0, 1e7),
        "energy_kwh": _num(-1000, 1000),
        "charger_id": {"type": "string", "maxLength": 48,
                       "pattern": CHARGER_PATTERN,
                       "description": "the public charger of a charge_start or charge_end "
                                      "(its EVSE id)"}})
    return _object("vehicles/{vin}/events", props, [*required, "type"])


def _ota_status_schema() -> dict[str, Any]:
    props, required = _header(True)
    props.update({"vin": {"type": "string", "pattern": VIN_PATTERN},
                  "status": _str(32, contract.OTA_REPORTED_STATES),
                  "campaign_id": _str(64), "action_id": _str(64), "version": _str(64),
                  "progress": _num(0, 100), "detail": _str(500)})
    return _object("vehicles/{vin}/ota/status", props, [*required, "status"])


def _command_result_schema() -> dict[str, Any]:
    props, required = _header(True)
    props.update({"vin": {"type": "string", "pattern": VIN_PATTERN},
                  "command_id": {"type": "string", "pattern": "^" + contract.COMMAND_ID_RE.pattern
                                 + "$"},
                  "kind": _str(16, contract.COMMAND_KINDS),
                  "status": _str(16, contract.COMMAND_REPORTED_STATES),
                  "reason": _str(64), "detail": _str(500),
                  "result": {"type": "object", "description": "per kind: battery_test, "
                             "snapshot (signals as in telemetry), clear_dtc, wake"}})
    return _object("vehicles/{vin}/commands/result", props, [*required, "command_id", "status"])


def _charger_status_schema() -> dict[str, Any]:
    props, required = _header(False)
    props.update({"chargerId": {"type": "string", "pattern": CHARGER_PATTERN},
                  "connectorId": _int(0, 100), "status": _str(20, contract.OCPP_STATUSES),
                  "errorCode": _str(30, contract.OCPP_ERROR_CODES),
                  "vendorErrorCode": _str(50), "info": _str(50), "vendorId": _str(255)})
    return _object("chargers/{id}/status", props,
                   [*required, "connectorId", "status", "errorCode"],
                   "OCPP 1.6 StatusNotification; seq optional (ts orders plain OCPP chargers)")


def _charger_meter_schema() -> dict[str, Any]:
    props, required = _header(False)
    props.update({
        "chargerId": {"type": "string", "pattern": CHARGER_PATTERN},
        "connectorId": _int(0, 100), "transactionId": _int(0, 2**31 - 1),
        "vin": {"type": "string", "pattern": VIN_PATTERN},
        "measurands": {"type": "object", "minProperties": 1, "additionalProperties": False,
                       "properties": {m.name: {**_num(m.min, m.max), "x-unit": m.unit}
                                      for m in contract.OCPP_MEASURANDS.values()}}})
    return _object("chargers/{id}/meter", props, [*required, "connectorId", "measurands"],
                   "OCPP 1.6 MeterValues")


def _signed(title: str, what: str) -> dict[str, Any]:
    return _object(title, {"manifest" if what == "manifest" else "command": {"type": "object"},
                           "signature": {"type": "string",
                                         "description": "base64 Ed25519 signature"}},
                   ["manifest" if what == "manifest" else "command", "signature"])


def payload_schemas(catalogue: Catalogue) -> dict[contract.Kind, dict[str, Any]]:
    """The JSON Schema of each inbound topic's payload."""
    return {
        contract.Kind.VEHICLE_TELEMETRY: telemetry_schema(catalogue),
        contract.Kind.VEHICLE_EVENT: _event_schema(),
        contract.Kind.VEHICLE_OTA_STATUS: _ota_status_schema(),
        contract.Kind.VEHICLE_COMMAND_RESULT: _command_result_schema(),
        contract.Kind.CHARGER_STATUS: _charger_status_schema(),
        contract.Kind.CHARGER_METER: _charger_meter_schema(),
    }


def _camel(kind: str) -> str:
    head, *rest = kind.split("_")
    return head + "".join(part.title() for part in rest)


def documents(catalogue: Catalogue, version: str) -> dict[str, dict[str, Any]]:
    """File name -> document: ``asyncapi.json`` and the payload schemas it refers to."""
    schemas = {_camel(kind.value): schema for kind, schema in payload_schemas(catalogue).items()}
    schemas["otaCommand"] = _signed("vehicles/{vin}/ota/command", "manifest")
    schemas["remoteCommand"] = _signed("vehicles/{vin}/commands", "command")
    out = {schema_file(name): schema for name, schema in schemas.items()}
    out["asyncapi.json"] = asyncapi(catalogue, version,
                                    {name: s["title"] for name, s in schemas.items()})
    return out


def schema_file(name: str) -> str:
    return f"{name}.schema.json"


def asyncapi(catalogue: Catalogue, version: str, titles: dict[str, str]) -> dict[str, Any]:
    """AsyncAPI 3.0 description of the MQTT interface devices speak; each message's payload
    refers to its schema file next to it."""
    addresses = {_camel(k.value): p for k, p in contract.TOPIC_PATTERNS.items()}
    addresses["otaCommand"] = contract.OTA_COMMAND_TOPIC
    addresses["remoteCommand"] = contract.REMOTE_COMMAND_TOPIC
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, address in addresses.items():
        vehicle = address.startswith("vehicles/")
        channels[name] = {
            "address": address,
            "parameters": {"id": {"description": "the VIN (17 characters, no I, O or Q)"
                                  if vehicle else "the charger id [A-Za-z0-9._-]{1,48}"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        outbound = name in ("otaCommand", "remoteCommand")
        operations[("receive" if outbound else "send") + name[0].upper() + name[1:]] = {
            "action": "receive" if outbound else "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "bindings": {"mqtt": {"qos": 1, "retain": False}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ownercare device contract",
            "version": version,
            "description": "The MQTT topics vehicles and chargers publish to (send) and "
            "subscribe to (receive). Payloads are JSON objects of at most "
            f"{contract.MAX_PAYLOAD_BYTES} bytes with no repeated keys. Vehicle signals are "
            f"COVESA VSS {catalogue.release}. Faults of a message's envelope dead-letter it "
            "whole; bad signals are dead-lettered one by one.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {name: {"name": name, "title": titles[name],
                                "contentType": "application/json",
                                "payload": {"schemaFormat": SCHEMA_FORMAT,
                                            "schema": {"$ref": schema_file(name)}}}
                         for name in addresses},
        },
    }


def render(catalogue: Catalogue | None = None) -> dict[str, str]:
    """The documents as the text of their files (stable: a diff shows a contract change)."""
    import json
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        version = package_version("ownercare")
    except PackageNotFoundError:
        version = "0.0.0"
    docs = documents(catalogue or contract.CATALOGUE, version)
    return {name: json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
            for name, doc in docs.items()}
