"""The alert record as the worker sends it and the database stores it: its fields, their
types and limits, and the check that turns a producer's dict into a row or a ValueError.

The record on Kafka is an internal contract between the detectors and the sink, and keeps
its short names (``first_seen``, ``last_seen``, ``predicted_failure_ts``); the row, and
everything the API and the webhooks show, names each time's clock (``first_seen_event_ms``
...). :data:`COLUMN_OF` maps one to the other, here and nowhere else.

The message of every ValueError names the field and the problem, so a dead-lettered alert
explains itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vocab.severity import SEVERITIES

STATUSES = ("open", "resolved")
ASSET_KINDS = ("vehicle", "charger")
_MAX_MS = 2**63 - 1
_MAX_EVIDENCE_DEPTH = 8

# name -> (accepted types, human description, max length for strings or None)
_ALERT_FIELDS: dict[str, tuple[tuple[type, ...], str, int | None]] = {
    "id": ((str,), "a string", 36),
    "asset_kind": ((str,), "a string", 16),
    "asset_id": ((str,), "a string", 64),
    "type": ((str,), "a string", 64),
    "severity": ((str,), "a string", 16),
    "status": ((str,), "a string", 16),
    "first_seen": ((int,), "an integer (epoch ms)", None),
    "last_seen": ((int,), "an integer (epoch ms)", None),
    "title": ((str,), "a string", None),
    "evidence": ((dict,), "a JSON object", None),
    "predicted_failure_ts": ((int, type(None)), "an integer (epoch ms) or null", None),
    "recommended_action": ((str,), "a string", None),
    "detector": ((str,), "a string", 64),
    "detector_version": ((str,), "a string", 32),
}
# Fields a producer may leave out (older workers did not send them): absent means null.
_OPTIONAL_FIELDS: dict[str, tuple[tuple[type, ...], str, int | None]] = {
    "root_cause_id": ((str, type(None)), "a string (an alert id) or null", 36),
}
RECORD_KEYS = tuple(_ALERT_FIELDS) + tuple(_OPTIONAL_FIELDS)
# The record's times are event time, from the devices' messages: the row says so.
COLUMN_OF = {"first_seen": "first_seen_event_ms", "last_seen": "last_seen_event_ms",
             "predicted_failure_ts": "predicted_failure_event_ms"}
ALERT_KEYS = tuple(COLUMN_OF.get(k, k) for k in RECORD_KEYS)  # the row's
_NON_EMPTY = ("id", "asset_id", "type", "detector", "root_cause_id")
# A delivery that differs from the stored alert only outside these fields is a duplicate.
COMPARED = ("severity", "status", "last_seen_event_ms", "title", "evidence",
            "predicted_failure_event_ms", "recommended_action", "root_cause_id")

def change_of(old_status: str, new_status: str) -> str:
    if old_status == "open" and new_status == "resolved":
        return "resolved"
    if old_status == "resolved" and new_status == "open":
        return "reopened"
    return "updated"


# ---------------------------------------------------------------------------- validation


def validate_alert(alert: Any) -> dict[str, Any]:
    """Check an alert upsert from Kafka; return its row (:data:`ALERT_KEYS`) or raise
    ValueError.

    The message names the field and the problem, so a dead-lettered alert explains itself.
    Keys beyond the contract are ignored (a newer producer must not be dead-lettered).
    """
    if not isinstance(alert, Mapping):
        raise ValueError(f"alert must be a JSON object, got {type(alert).__name__}")
    missing = [name for name in _ALERT_FIELDS if name not in alert]
    if missing:
        raise ValueError(f"alert is missing field(s): {', '.join(missing)}")
    for name, (kinds, description, max_len) in (_ALERT_FIELDS | _OPTIONAL_FIELDS).items():
        value = alert.get(name)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"alert field {name!r} must be {description}, "
                             f"got {type(value).__name__} {_short(value)}")
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError(f"alert field {name!r} contains a NUL character")
            if max_len is not None and len(value) > max_len:
                raise ValueError(f"alert field {name!r} is longer than {max_len} characters")
            if name in _NON_EMPTY and not value.strip():
                raise ValueError(f"alert field {name!r} is empty")
        if isinstance(value, int) and not 0 <= value <= _MAX_MS:
            raise ValueError(f"alert field {name!r}={value} is not an epoch-ms timestamp")
    for name, allowed in (("asset_kind", ASSET_KINDS), ("severity", SEVERITIES),
                          ("status", STATUSES)):
        if alert[name] not in allowed:
            raise ValueError(f"alert field {name!r}={alert[name]!r} is not one of "
                             f"{', '.join(allowed)}")
    if alert["last_seen"] < alert["first_seen"]:
        raise ValueError(f"alert last_seen={alert['last_seen']} is before "
                         f"first_seen={alert['first_seen']}")
    if alert.get("root_cause_id") == alert["id"]:
        raise ValueError("alert field 'root_cause_id' names the alert itself")
    _check_json(alert["evidence"], "evidence", 0)
    return {COLUMN_OF.get(name, name): alert.get(name) for name in RECORD_KEYS}


def record_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The Kafka record of a stored alert row (what ``validate_alert`` turned into it)."""
    column_to_field = {column: field for field, column in COLUMN_OF.items()}
    return {column_to_field.get(k, k): v for k, v in row.items() if k in ALERT_KEYS}


def _check_json(value: Any, where: str, depth: int) -> None:
    """JSON values only: str keys, finite numbers (PostgreSQL's json refuses NaN)."""
    if depth > _MAX_EVIDENCE_DEPTH:
        raise ValueError(f"alert field {where!r} nests deeper than {_MAX_EVIDENCE_DEPTH}")
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"alert field {where!r} contains a NUL character")
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"alert field {where!r}={value} is out of the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"alert field {where!r} is {value}; JSON has no such number")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"alert field {where!r} has a non-string key {key!r}")
            _check_json(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    raise ValueError(f"alert field {where!r} holds a {type(value).__name__}, not a JSON value")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
