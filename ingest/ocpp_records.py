"""OCPP 1.6 messages -> the charger payloads of the MQTT contract (pure: no I/O, no clock).

The OCPP gateway (``ingest.ocpp_gateway``) turns each call of a charge point into the payloads
a charger would have published over MQTT (``chargers/{id}/status`` and ``chargers/{id}/meter``)
and validates them with ``ingest.contract.validate``, the bridge's own function. So a record
from the gateway is, byte for byte, the record the bridge makes of the equivalent MQTT
message, and the worker cannot tell which way a charger came in.

Mapping (one OCPP call -> payloads, each with its event time ``ts``):

* StatusNotification -> one status payload; ``ts`` is its ``timestamp``.
* MeterValues -> one meter payload per ``meterValue`` element; ``ts`` is the element's
  ``timestamp``. Measurands outside the contract (Frequency, reactive power, ...) and signed
  values are left out, and named in the result so the gateway can count them.
* StartTransaction / StopTransaction -> a meter payload with the energy register
  (``meterStart`` / ``meterStop``) at their ``timestamp``; a Stop's ``transactionData`` also
  maps as MeterValues.
* Heartbeat / BootNotification -> a status payload of connector 0 (the charge point itself)
  repeating its last reported status (``Available`` before any), so a charger that only
  heartbeats is not taken for silent. They carry no time: their ``ts`` is the gateway's
  receive time, passed in by the caller, the one place where that clock is read.

``seq``: plain OCPP has none, and the contract's fallback (``seq = ts``) would make the worker
drop the second of two records sharing a millisecond (a status and a meter reading at a
session's start) as a redelivery. The gateway numbers records ``ts * 1000 + n``, n counting
the distinct records of one connection at the same ``ts`` (``SeqClock``): event time orders
them, records sharing a millisecond keep their arrival order, and an exact repeat (a charge
point sending a call again, or a replay of older calls) gets a ``seq`` no higher than what
the worker has seen, so it is dropped as a redelivery, as over MQTT.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ingest.contract import (
    OCPP_MEASURANDS,
    VIN_RE,
    ContractError,
    Kind,
    Reason,
    topic_for,
    validate,
)

ENERGY: Final = "Energy.Active.Import.Register"
SEQ_PER_MS: Final = 1000
TRANSACTION_CONNECTORS: Final = 128  # a transaction id carries its connector in its low bits
MAX_CONNECTOR: Final = 100  # the contract's connectorId range

# Units an OCPP 1.6 sampledValue may carry, as (contract unit, scale, offset): contract value =
# value * scale + offset. "Celcius" is how the OCPP 1.6 schema spells it; Celsius is accepted
# too.
_UNITS: Final[Mapping[str, tuple[str, float, float]]] = {
    "Wh": ("Wh", 1.0, 0.0),
    "kWh": ("Wh", 1000.0, 0.0),
    "W": ("W", 1.0, 0.0),
    "kW": ("W", 1000.0, 0.0),
    "A": ("A", 1.0, 0.0),
    "V": ("V", 1.0, 0.0),
    "Celsius": ("Celsius", 1.0, 0.0),
    "Celcius": ("Celsius", 1.0, 0.0),
    "K": ("Celsius", 1.0, -273.15),
    "Fahrenheit": ("Celsius", 5 / 9, -32 * 5 / 9),
    "Percent": ("Percent", 1.0, 0.0),
}
# Per-phase values of these add up to the charger's total; of the others (current, voltage,
# temperature) the mean of the reported phases is kept.
_ADDITIVE: Final = frozenset({"Power.Active.Import", "Power.Offered", ENERGY})


@dataclass(frozen=True, slots=True)
class Payload:
    """One MQTT-equivalent charger payload (without ``seq``) and its kind."""

    kind: Kind
    body: dict[str, Any]

    @property
    def ts(self) -> int:
        return int(self.body["ts"])


@dataclass(slots=True)
class Mapped:
    payloads: list[Payload] = field(default_factory=list)
    ignored: set[str] = field(default_factory=set)  # measurands left out (not in the contract)


def parse_timestamp(name: str, text: object) -> int:
    """An OCPP dateTime (ISO 8601; without an offset it is UTC, as OCPP says) -> epoch ms."""
    if not isinstance(text, str):
        raise ContractError(Reason.WRONG_TYPE, f"{name} must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ContractError(
            Reason.BAD_VALUE, f"{name} {text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def vin_of(id_tag: object) -> str | None:
    """The VIN when an idTag is one (a car identifying itself, e.g. Autocharge), else None."""
    if isinstance(id_tag, str) and VIN_RE.fullmatch(id_tag.upper()):
        return id_tag.upper()
    return None


def transaction_id(connector_id: int, start_ms: int) -> int:
    """The id the gateway gives a transaction: its start second (mod 2**24, ~194 days) and its
    connector. The same StartTransaction sent again gets the same id, and a StopTransaction
    names its connector even after the gateway restarted."""
    return ((start_ms // 1000) % (1 << 24)) * TRANSACTION_CONNECTORS + connector_id


def connector_of(tx: int) -> int:
    return tx % TRANSACTION_CONNECTORS


def _number(text: object, measurand: str) -> float:
    if not isinstance(text, str):
        raise ContractError(Reason.WRONG_TYPE, f"sampledValue of {measurand} must be a string")
    try:
        value = float(text)
    except ValueError:
        raise ContractError(
            Reason.WRONG_TYPE, f"sampledValue {text!r} of {measurand} is not a number") from None
    if not math.isfinite(value):
        raise ContractError(Reason.NOT_FINITE, f"sampledValue of {measurand} is {text!r}")
    return value


def _convert(measurand: str, value: float, unit: object) -> float:
    expected = OCPP_MEASURANDS[measurand].unit
    if unit is None:
        # OCPP's default unit is Wh; chargers that leave it out of current or voltage mean
        # the measurand's own unit, so that is what an absent unit means here.
        return value
    conversion = _UNITS.get(str(unit))
    if conversion is None or conversion[0] != expected:
        raise ContractError(
            Reason.BAD_VALUE, f"unit {unit!r} does not fit measurand {measurand} ({expected})")
    _, scale, offset = conversion
    return round(value * scale + offset, 6)


def measurands_of(sampled: Sequence[Mapping[str, Any]], ignored: set[str]) -> dict[str, float]:
    """The contract's measurands of one meterValue element's ``sampledValue`` list."""
    whole: dict[str, float] = {}
    phased: dict[str, list[float]] = {}
    for item in sampled:
        measurand = str(item.get("measurand", ENERGY))
        if measurand not in OCPP_MEASURANDS or item.get("format") == "SignedData":
            ignored.add(measurand if measurand not in OCPP_MEASURANDS
                        else f"{measurand} (SignedData)")
            continue
        value = _convert(measurand, _number(item.get("value"), measurand), item.get("unit"))
        if item.get("phase") is None:
            whole.setdefault(measurand, value)  # several locations: the first one reported
        elif item["phase"] != "N":  # the neutral conductor is not a phase of the supply
            phased.setdefault(measurand, []).append(value)
    for measurand, values in phased.items():
        if measurand not in whole:
            total = math.fsum(values)
            whole[measurand] = round(total if measurand in _ADDITIVE else total / len(values), 6)
    return whole


def _meter(ts: int, connector: int, tx: int | None, vin: str | None,
           measurands: dict[str, float]) -> Payload:
    body: dict[str, Any] = {"ts": ts, "connectorId": connector}
    if tx is not None:
        body["transactionId"] = tx
    if vin is not None:
        body["vin"] = vin
    body["measurands"] = measurands
    return Payload(Kind.CHARGER_METER, body)


def meter_values(payload: Mapping[str, Any], vin: str | None = None,
                 connector: int | None = None) -> Mapped:
    """MeterValues (or a Stop's ``transactionData``, with ``connector`` given)."""
    out = Mapped()
    conn = int(payload["connectorId"]) if connector is None else connector
    tx = payload.get("transactionId")
    for element in payload.get("meterValue") or payload.get("transactionData") or []:
        ts = parse_timestamp("meterValue timestamp", element.get("timestamp"))
        measurands = measurands_of(element.get("sampledValue") or [], out.ignored)
        if measurands:  # an element of only left-out measurands says nothing we keep
            out.payloads.append(_meter(ts, conn, tx, vin, measurands))
    return out


def status_notification(payload: Mapping[str, Any], received_ms: int) -> Payload:
    ts = (parse_timestamp("timestamp", payload["timestamp"]) if "timestamp" in payload
          else received_ms)
    body: dict[str, Any] = {"ts": ts, "connectorId": payload["connectorId"],
                            "status": payload["status"], "errorCode": payload["errorCode"]}
    for name in ("info", "vendorId", "vendorErrorCode"):
        if payload.get(name) is not None:
            body[name] = payload[name]
    return Payload(Kind.CHARGER_STATUS, body)


def charge_point_status(received_ms: int, last: Mapping[str, Any] | None,
                        boot: Mapping[str, Any] | None = None) -> Payload:
    """Heartbeat (and BootNotification, with its payload): connector 0's last status again."""
    body: dict[str, Any] = {"ts": received_ms, "connectorId": 0,
                            "status": (last or {}).get("status", "Available"),
                            "errorCode": (last or {}).get("errorCode", "NoError")}
    if boot is not None:
        body["vendorId"] = boot["chargePointVendor"]
        body["info"] = boot["chargePointModel"]
    return Payload(Kind.CHARGER_STATUS, body)


def start_transaction(payload: Mapping[str, Any], tx: int) -> Payload:
    ts = parse_timestamp("timestamp", payload["timestamp"])
    return _meter(ts, int(payload["connectorId"]), tx, vin_of(payload.get("idTag")),
                  {ENERGY: float(payload["meterStart"])})


def stop_transaction(payload: Mapping[str, Any], connector: int, vin: str | None) -> Mapped:
    tx = int(payload["transactionId"])
    out = meter_values({"transactionId": tx,
                        "transactionData": payload.get("transactionData") or []},
                       vin, connector)
    ts = parse_timestamp("timestamp", payload["timestamp"])
    out.payloads.append(_meter(ts, connector, tx, vin, {ENERGY: float(payload["meterStop"])}))
    return out


class SeqClock:
    """``seq`` for one connection's records: ``ts * 1000 + n`` (see the module docstring)."""

    def __init__(self) -> None:
        self._ts = -1
        self._seen: list[bytes] = []

    def seq(self, payload: Payload) -> int:
        if payload.ts != self._ts:
            self._ts, self._seen = payload.ts, []
        fingerprint = orjson.dumps({"k": payload.kind.value, **payload.body},
                                   option=orjson.OPT_SORT_KEYS)
        if fingerprint not in self._seen:
            self._seen.append(fingerprint)
        n = self._seen.index(fingerprint)
        return payload.ts * SEQ_PER_MS + min(n, SEQ_PER_MS - 1)


def canonical(charger_id: str, payload: Payload, seq: int) -> dict[str, Any]:
    """The canonical record: what ``contract.validate`` (the bridge) makes of the MQTT
    message, or ContractError."""
    return validate(topic_for(payload.kind, charger_id), orjson.dumps({**payload.body,
                                                                        "seq": seq}))
