"""The MQTT telemetry contract, in one place.

Topic patterns, payload schemas, the VSS signal catalogue (type, unit, plausible range) and the
OCPP 1.6 charger vocabulary. The bridge validates with it, the simulator publishes with it, the
worker reads canonical records produced by it. Nothing here does I/O or reads the clock.

A canonical record is a plain dict (cheap to build, cheap to serialise with orjson)::

    {"kind": "vehicle_telemetry", "id": "<VIN>", "ts": <event ms>, "seq": <int>, "data": {...}}

``data`` is ``{"signals": {...}}`` for telemetry and the validated payload fields otherwise.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from ingest.catalogue import NUMERIC_TYPES, STRING_MAX_LEN, load_catalogue
from ingest.catalogue import Catalogue as Catalogue  # re-exported: the contract's vocabulary
from ingest.catalogue import Signal as Signal
from ingest.catalogue import SignalType as SignalType

# --------------------------------------------------------------------------------------------
# Topics


class Kind(StrEnum):
    VEHICLE_TELEMETRY = "vehicle_telemetry"
    VEHICLE_EVENT = "vehicle_event"
    VEHICLE_OTA_STATUS = "vehicle_ota_status"
    VEHICLE_COMMAND_RESULT = "vehicle_command_result"
    CHARGER_STATUS = "charger_status"
    CHARGER_METER = "charger_meter"


VEHICLE_KINDS: Final = frozenset(
    {Kind.VEHICLE_TELEMETRY, Kind.VEHICLE_EVENT, Kind.VEHICLE_OTA_STATUS,
     Kind.VEHICLE_COMMAND_RESULT}
)
CHARGER_KINDS: Final = frozenset({Kind.CHARGER_STATUS, Kind.CHARGER_METER})

# MQTT topic per kind; "{id}" is the VIN or the charger id.
TOPIC_PATTERNS: Final[dict[Kind, str]] = {
    Kind.VEHICLE_TELEMETRY: "vehicles/{id}/telemetry",
    Kind.VEHICLE_EVENT: "vehicles/{id}/events",
    Kind.VEHICLE_OTA_STATUS: "vehicles/{id}/ota/status",
    Kind.VEHICLE_COMMAND_RESULT: "vehicles/{id}/commands/result",
    Kind.CHARGER_STATUS: "chargers/{id}/status",
    Kind.CHARGER_METER: "chargers/{id}/meter",
}
OTA_COMMAND_TOPIC: Final = "vehicles/{id}/ota/command"
REMOTE_COMMAND_TOPIC: Final = "vehicles/{id}/commands"  # signed remote support commands

# Subscriptions the bridge makes (QoS 1). Whole subtrees rather than the five patterns, so a
# device publishing to a wrong topic is dead-lettered with a reason instead of never being seen.
INBOUND_SUBSCRIPTIONS: Final = ("vehicles/#", "chargers/#")

_TOPIC_SUFFIX_KIND: Final[dict[tuple[str, str], Kind]] = {
    ("vehicles", "telemetry"): Kind.VEHICLE_TELEMETRY,
    ("vehicles", "events"): Kind.VEHICLE_EVENT,
    ("vehicles", "ota/status"): Kind.VEHICLE_OTA_STATUS,
    ("vehicles", "commands/result"): Kind.VEHICLE_COMMAND_RESULT,
    ("chargers", "status"): Kind.CHARGER_STATUS,
    ("chargers", "meter"): Kind.CHARGER_METER,
}

# ISO 3779 VIN: 17 characters, no I, O or Q.
VIN_RE: Final = re.compile(r"[A-HJ-NPR-Z0-9]{17}")  # use .fullmatch: "$" lets "\n" through
# OCPP 1.6 chargeBoxIdentity is CiString of at most 48 characters; we keep it topic-safe.
CHARGER_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,48}")

MAX_PAYLOAD_BYTES: Final = 64 * 1024
# Plausible event-time window: 2000-01-01 .. 2100-01-01 in epoch milliseconds.
MIN_TS_MS: Final = 946_684_800_000
MAX_TS_MS: Final = 4_102_444_800_000
MAX_SEQ: Final = 2**63 - 1


def topic_for(kind: Kind, asset_id: str) -> str:
    return TOPIC_PATTERNS[kind].format(id=asset_id)


def ota_command_topic(vin: str) -> str:
    return OTA_COMMAND_TOPIC.format(id=vin)


def remote_command_topic(vin: str) -> str:
    return REMOTE_COMMAND_TOPIC.format(id=vin)


def is_outbound(topic: str) -> bool:
    """Cloud -> vehicle topics; the bridge sees its own commands under ``vehicles/#``."""
    return topic.startswith("vehicles/") and (topic.endswith("/ota/command")
                                              or topic.endswith("/commands"))


# --------------------------------------------------------------------------------------------
# Errors


class Reason(StrEnum):
    """Why a message went to the dead-letter topic; stable names, used as metric labels."""

    UNKNOWN_TOPIC = "unknown_topic"
    BAD_ID = "bad_id"
    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_SIGNAL = "unknown_signal"
    UNKNOWN_FIELD = "unknown_field"
    BAD_VALUE = "bad_value"
    ID_MISMATCH = "id_mismatch"
    TS_IN_FUTURE = "ts_in_future"
    DUPLICATE_KEY = "duplicate_key"
    # More bad signals in one message than the bridge dead-letters one by one: the rest share
    # one letter with the whole payload, so a device cannot multiply its bytes into letters.
    SIGNALS_OMITTED = "signals_omitted"


class ContractError(ValueError):
    """A message that breaks the contract; ``reason`` is machine-readable, str() is precise."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------
# VSS signal catalogue


_WHEELS: Final = [
    f"Vehicle.Chassis.Axle.Row{row}.Wheel.{side}" for row in (1, 2) for side in ("Left", "Right")
]
TIRE_PRESSURE_SIGNALS: Final = tuple(f"{w}.Tire.Pressure" for w in _WHEELS)
TIRE_TEMPERATURE_SIGNALS: Final = tuple(f"{w}.Tire.Temperature" for w in _WHEELS)

# VSS Vehicle.LowVoltageSystemState: the key / ignition position (the events reuse it).
LOW_VOLTAGE_SYSTEM_STATES: Final = frozenset(
    {"UNDEFINED", "LOCK", "OFF", "ACC", "ON", "START"}
)

# The pinned VSS release without overlays: what the simulator, replay and the tests speak. The
# bridge validates against ``load_catalogue(settings.vss_overlays)``.
CATALOGUE: Final = load_catalogue()
SIGNALS: Final[Mapping[str, Signal]] = CATALOGUE.signals

# --------------------------------------------------------------------------------------------
# Vehicle events


class EventType(StrEnum):
    DTC = "dtc"
    IGNITION = "ignition"
    CRANK = "crank"
    TRIP_END = "trip_end"
    CHARGE_START = "charge_start"
    CHARGE_END = "charge_end"
    WAKE = "wake"
    SLEEP = "sleep"


DTC_RE: Final = re.compile(r"[PCBU][0-9A-F]{4}(-[0-9A-F]{2})?")
DTC_STATES: Final = frozenset({"active", "pending", "cleared"})

# --------------------------------------------------------------------------------------------
# OTA status (vehicle -> cloud); the full action state machine lives in ota/.

OTA_REPORTED_STATES: Final = frozenset(
    {
        "offered",
        "accepted",
        "rejected",
        "downloading",
        "downloaded",
        "installing",
        "succeeded",
        "failed",
        "rolled_back",
        "canceled",
    }
)

# --------------------------------------------------------------------------------------------
# Remote command results (vehicle -> cloud); the command state machine lives in care/.

COMMAND_KINDS: Final = frozenset({"snapshot", "battery_test", "wake", "clear_dtc"})
COMMAND_REPORTED_STATES: Final = frozenset({"acknowledged", "succeeded", "failed", "refused"})
COMMAND_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,36}")

# --------------------------------------------------------------------------------------------
# OCPP 1.6 vocabulary

OCPP_STATUSES: Final = frozenset(
    {
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    }
)
OCPP_ERROR_CODES: Final = frozenset(
    {
        "ConnectorLockFailure",
        "EVCommunicationError",
        "GroundFailure",
        "HighTemperature",
        "InternalError",
        "LocalListConflict",
        "NoError",
        "OtherError",
        "OverCurrentFailure",
        "OverVoltage",
        "PowerMeterFailure",
        "PowerSwitchFailure",
        "ReaderFailure",
        "ResetFailure",
        "UnderVoltage",
        "WeakSignal",
    }
)


@dataclass(frozen=True, slots=True)
class Measurand:
    name: str
    unit: str
    min: float
    max: float


OCPP_MEASURANDS: Final[Mapping[str, Measurand]] = {
    m.name: m
    for m in (
        Measurand("Power.Active.Import", "W", 0, 1_000_000),
        Measurand("Power.Offered", "W", 0, 1_000_000),
        Measurand("Current.Import", "A", 0, 2000),
        Measurand("Voltage", "V", 0, 1500),
        Measurand("Temperature", "Celsius", -60, 150),
        Measurand("Energy.Active.Import.Register", "Wh", 0, 1e12),
        Measurand("SoC", "Percent", 0, 100),
    )
}

# --------------------------------------------------------------------------------------------
# Validation


def parse_topic(topic: str) -> tuple[Kind, str]:
    """Return (kind, asset id) for an inbound topic, or raise ContractError."""
    root, _, rest = topic.partition("/")
    asset_id, _, suffix = rest.partition("/")
    kind = _TOPIC_SUFFIX_KIND.get((root, suffix))
    if kind is None:
        raise ContractError(Reason.UNKNOWN_TOPIC, f"topic {topic!r} is not part of the contract")
    pattern = VIN_RE if root == "vehicles" else CHARGER_ID_RE
    if not pattern.fullmatch(asset_id):
        what = "a 17-character VIN" if root == "vehicles" else "a charger id [A-Za-z0-9._-]{1,48}"
        raise ContractError(Reason.BAD_ID, f"topic id {asset_id!r} is not {what}")
    return kind, asset_id


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(name: str, value: object, lo: float | None, hi: float | None) -> float:
    if not _is_number(value):
        raise ContractError(Reason.WRONG_TYPE, f"{name} must be a number, got {_type(value)}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ContractError(Reason.NOT_FINITE, f"{name} must be finite, got {value!r}")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ContractError(
            Reason.OUT_OF_RANGE, f"{name}={value!r} is outside the plausible range [{lo}, {hi}]"
        )
    return number


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContractError(Reason.WRONG_TYPE, f"{name} must be an integer, got {_type(value)}")
    if value < lo or value > hi:
        raise ContractError(Reason.OUT_OF_RANGE, f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _str(name: str, value: object, max_len: int, allowed: frozenset[str] | None = None) -> str:
    if not isinstance(value, str):
        raise ContractError(Reason.WRONG_TYPE, f"{name} must be a string, got {_type(value)}")
    if len(value) > max_len:
        raise ContractError(Reason.OUT_OF_RANGE, f"{name} is longer than {max_len} characters")
    if allowed is not None and value not in allowed:
        raise ContractError(
            Reason.BAD_VALUE, f"{name}={value!r} is not one of {', '.join(sorted(allowed))}"
        )
    return value


def _type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _require(payload: Mapping[str, Any], field: str) -> Any:
    if field not in payload:
        raise ContractError(Reason.MISSING_FIELD, f"required field {field!r} is missing")
    return payload[field]


def _integer(name: str, value: object, lo: float | None, hi: float | None) -> int:
    """An integer signal; an integral float (``231.0``) is the same JSON number."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContractError(Reason.WRONG_TYPE, f"{name} must be an integer, got "
                            f"{_type(value)} {_short(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ContractError(Reason.OUT_OF_RANGE,
                            f"{name}={value} is outside [{_bound(lo)}, {_bound(hi)}]")
    return value


def _bound(bound: float | None) -> str:
    return "-" if bound is None else f"{bound:g}"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_signal(spec: Signal, value: object) -> object:
    name = f"signals[{_short(spec.path, 160)}]"
    kind = spec.type
    if kind is SignalType.FLOAT:
        return _number(name, value, spec.min, spec.max)
    if kind is SignalType.INT:
        return _integer(name, value, spec.min, spec.max)
    if kind is SignalType.BOOL:
        if not isinstance(value, bool):
            raise ContractError(Reason.WRONG_TYPE, f"{name} must be a boolean, got {_type(value)}")
        return value
    if kind is SignalType.ENUM or kind is SignalType.STRING:
        return _str(name, value, spec.max_len or STRING_MAX_LEN, spec.allowed)
    if not isinstance(value, list):
        raise ContractError(Reason.WRONG_TYPE, f"{name} must be an array, got {_type(value)}")
    if spec.max_len is not None and len(value) > spec.max_len:
        raise ContractError(Reason.OUT_OF_RANGE, f"{name} has more than {spec.max_len} items")
    if kind is SignalType.FLOAT_LIST:
        return [_number(f"{name}[{i}]", v, spec.min, spec.max) for i, v in enumerate(value)]
    if kind is SignalType.INT_LIST:
        return [_integer(f"{name}[{i}]", v, spec.min, spec.max) for i, v in enumerate(value)]
    return [_str(f"{name}[{i}]", v, STRING_MAX_LEN, spec.allowed) for i, v in enumerate(value)]


@dataclass(frozen=True, slots=True)
class SignalRejection:
    """One signal of an otherwise valid message that the catalogue does not accept."""

    path: str
    reason: Reason
    detail: str
    value: object


class SignalChecker:
    """Validates signal maps against one catalogue (the pinned release plus overlays)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.signals = catalogue.signals
        # The common case, a number inside its range or a boolean, decided with one lookup and
        # one comparison: the bridge validates ~20 signals per message at fleet rates.
        # Anything else (an int for a float signal, out of range, NaN, wrong type, unknown
        # path) takes ``check``, which accepts or rejects it with the precise reason. Missing
        # bounds become the largest finite float, so infinities still fail the comparison.
        self._numbers: dict[str, tuple[float, float, type]] = {
            s.path: (-sys.float_info.max if s.min is None else s.min,
                     sys.float_info.max if s.max is None else s.max,
                     float if s.type is SignalType.FLOAT else int)
            for s in self.signals.values() if s.type in NUMERIC_TYPES
        }
        self._bools = frozenset(s.path for s in self.signals.values()
                                if s.type is SignalType.BOOL)
        # A string within its length and, for an enum, one of its values (key states,
        # gear names: most cars send one or two per message).
        self._texts: dict[str, tuple[int, frozenset[str] | None]] = {
            s.path: (s.max_len or STRING_MAX_LEN, s.allowed)
            for s in self.signals.values()
            if s.type is SignalType.ENUM or s.type is SignalType.STRING
        }

    def check(self, path: str, value: object) -> object:
        """The normalised value of one signal, or ContractError naming the path and why."""
        spec = self.signals.get(path)
        if spec is None:
            where = " or the configured overlays" if self.catalogue.overlays else ""
            raise ContractError(Reason.UNKNOWN_SIGNAL, f"signal {_short(path, 160)} is not in "
                                f"VSS {self.catalogue.release}{where}")
        return _check_signal(spec, value)

    def values(self, signals: Mapping[str, object],
               rejected: list[SignalRejection] | None) -> dict[str, object]:
        """The accepted signals of ``signals``. With ``rejected`` each bad signal is appended
        there and left out; without, the first one raises ContractError."""
        out: dict[str, object] = {}
        numbers_of, bools, texts_of = self._numbers.get, self._bools, self._texts.get
        for path, value in signals.items():
            bounds = numbers_of(path)
            if ((bounds is not None and type(value) is bounds[2]
                 and bounds[0] <= value <= bounds[1])  # type: ignore[operator]
                    or (type(value) is bool and path in bools)):
                out[path] = value
                continue
            if type(value) is str:
                text = texts_of(path)
                if (text is not None and len(value) <= text[0]
                        and (text[1] is None or value in text[1])):
                    out[path] = value
                    continue
            try:
                out[path] = self.check(path, value)
            except ContractError as exc:
                if rejected is None:
                    raise
                rejected.append(SignalRejection(path, exc.reason, exc.detail, value))
        return out


DEFAULT_CHECKER: Final = SignalChecker(CATALOGUE)


def validate_signal(path: str, value: object) -> object:
    """Validate one signal value against the pinned release; return the normalised value."""
    return DEFAULT_CHECKER.check(path, value)


def _header(payload: Mapping[str, Any], *, seq_required: bool = True) -> tuple[int, int]:
    ts = _int("ts", _require(payload, "ts"), MIN_TS_MS, MAX_TS_MS)
    if seq_required or "seq" in payload:
        seq = _int("seq", _require(payload, "seq"), 0, MAX_SEQ)
    else:
        seq = ts  # chargers following plain OCPP have no seq; event time orders them
    return ts, seq


def _check_fields(payload: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise ContractError(Reason.UNKNOWN_FIELD, f"unknown field(s): {', '.join(unknown)}")


def _check_vin_echo(payload: Mapping[str, Any], field: str, asset_id: str) -> None:
    if field in payload and payload[field] != asset_id:
        raise ContractError(
            Reason.ID_MISMATCH,
            f"payload {field} {payload[field]!r} does not match topic id {asset_id!r}",
        )


_TELEMETRY_FIELDS: Final = frozenset({"ts", "seq", "signals", "vin"})
_EVENT_FIELDS: Final = frozenset(
    {"ts", "seq", "type", "vin", "code", "state", "description", "voltage_min", "duration_ms",
     "distance_m", "energy_kwh", "charger_id"}
)
_OTA_FIELDS: Final = frozenset(
    {"ts", "seq", "vin", "status", "campaign_id", "action_id", "version", "progress", "detail"}
)
_COMMAND_RESULT_FIELDS: Final = frozenset(
    {"ts", "seq", "vin", "command_id", "kind", "status", "reason", "detail", "result"}
)
_STATUS_FIELDS: Final = frozenset(
    {"ts", "seq", "chargerId", "connectorId", "status", "errorCode", "vendorErrorCode", "info",
     "vendorId"}
)
_METER_FIELDS: Final = frozenset(
    {"ts", "seq", "chargerId", "connectorId", "transactionId", "vin", "measurands"}
)


def _telemetry(payload: Mapping[str, Any], asset_id: str, checker: SignalChecker,
               rejected: list[SignalRejection] | None) -> dict[str, Any]:
    _check_fields(payload, _TELEMETRY_FIELDS)
    _check_vin_echo(payload, "vin", asset_id)
    signals = _require(payload, "signals")
    if not isinstance(signals, dict):
        raise ContractError(Reason.WRONG_TYPE, f"signals must be an object, got {_type(signals)}")
    if not signals:
        raise ContractError(Reason.BAD_VALUE, "signals must not be empty")
    return {"signals": checker.values(signals, rejected)}


def _event(payload: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
    _check_fields(payload, _EVENT_FIELDS)
    _check_vin_echo(payload, "vin", asset_id)
    etype = _str("type", _require(payload, "type"), 32, frozenset(EventType))
    data: dict[str, Any] = {"type": etype}
    if etype == EventType.DTC:
        code = _str("code", _require(payload, "code"), 16)
        if not DTC_RE.fullmatch(code):
            raise ContractError(Reason.BAD_VALUE, f"code {code!r} is not an SAE J2012 DTC")
        data["code"] = code
        data["state"] = _str("state", payload.get("state", "active"), 16, DTC_STATES)
    elif etype == EventType.IGNITION:
        data["state"] = _str("state", _require(payload, "state"), 16, LOW_VOLTAGE_SYSTEM_STATES)
    if "description" in payload:
        data["description"] = _str("description", payload["description"], 200)
    if "voltage_min" in payload:
        data["voltage_min"] = _number("voltage_min", payload["voltage_min"], 0, 20)
    if "duration_ms" in payload:
        data["duration_ms"] = _int("duration_ms", payload["duration_ms"], 0, 10**10)
    if "distance_m" in payload:
        data["distance_m"] = _number("distance_m", payload["distance_m"], 0, 1e7)
    if "energy_kwh" in payload:
        data["energy_kwh"] = _number("energy_kwh", payload["energy_kwh"], -1000, 1000)
    if "charger_id" in payload:
        # A charge event at a public charger names it (ISO 15118 tells the car its EVSE id):
        # the car's own account of a session its charger may never report.
        if etype not in (EventType.CHARGE_START, EventType.CHARGE_END):
            raise ContractError(Reason.BAD_VALUE, f"charger_id belongs to charge_start and "
                                f"charge_end events, not {etype}")
        charger_id = _str("charger_id", payload["charger_id"], 48)
        if not CHARGER_ID_RE.fullmatch(charger_id):
            raise ContractError(Reason.BAD_VALUE, f"charger_id {charger_id!r} is not a charger "
                                "id [A-Za-z0-9._-]{1,48}")
        data["charger_id"] = charger_id
    return data


def _ota_status(payload: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
    _check_fields(payload, _OTA_FIELDS)
    _check_vin_echo(payload, "vin", asset_id)
    data: dict[str, Any] = {
        "status": _str("status", _require(payload, "status"), 32, OTA_REPORTED_STATES)
    }
    for field in ("campaign_id", "action_id", "version", "detail"):
        if field in payload:
            data[field] = _str(field, payload[field], 500 if field == "detail" else 64)
    if "progress" in payload:
        data["progress"] = _number("progress", payload["progress"], 0, 100)
    return data


_BATTERY_RESULT: Final[Mapping[str, tuple[float, float]]] = {
    "load_a": (0, 2000), "load_ms": (0, 600_000), "voltage_under_load": (0, 20),
    "resting_voltage": (0, 20), "crank_margin_v": (-20, 20), "temperature_c": (-60, 120),
}
_SOFTWARE_RE: Final = re.compile(r"[A-Za-z0-9._+-]{1,64}")


def _command_result_body(kind: str, result: object, checker: SignalChecker,
                         rejected: list[SignalRejection] | None) -> dict[str, Any]:
    """The ``result`` object of a succeeded or failed command, checked per kind."""
    if not isinstance(result, dict):
        raise ContractError(Reason.WRONG_TYPE, f"result must be an object, got {_type(result)}")
    if kind == "battery_test":
        _check_fields(result, frozenset(_BATTERY_RESULT) | {"passed"})
        out: dict[str, Any] = {"passed": result.get("passed")}
        if not isinstance(out["passed"], bool):
            raise ContractError(Reason.WRONG_TYPE, "result.passed must be a boolean")
        for field, (lo, hi) in _BATTERY_RESULT.items():
            if field in result:
                out[field] = _number(f"result.{field}", result[field], lo, hi)
        return out
    if kind == "snapshot":
        _check_fields(result, frozenset({"signals", "dtcs", "software"}))
        signals = result.get("signals", {})
        if not isinstance(signals, dict):
            raise ContractError(Reason.WRONG_TYPE, "result.signals must be an object")
        dtcs = result.get("dtcs", [])
        if not isinstance(dtcs, list) or len(dtcs) > 100:
            raise ContractError(Reason.WRONG_TYPE, "result.dtcs must be an array of at most "
                                "100 trouble codes")
        checked_dtcs = []
        for i, dtc in enumerate(dtcs):
            if not isinstance(dtc, dict):
                raise ContractError(Reason.WRONG_TYPE, f"result.dtcs[{i}] must be an object")
            _check_fields(dtc, frozenset({"code", "state", "freeze_frame"}))
            code = _str(f"result.dtcs[{i}].code", _require(dtc, "code"), 16)
            if not DTC_RE.fullmatch(code):
                raise ContractError(Reason.BAD_VALUE, f"result.dtcs[{i}].code {code!r} is not "
                                    "an SAE J2012 DTC")
            entry: dict[str, Any] = {"code": code, "state": _str(
                f"result.dtcs[{i}].state", _require(dtc, "state"), 16, DTC_STATES)}
            frame = dtc.get("freeze_frame")
            if frame is not None:
                if not isinstance(frame, dict):
                    raise ContractError(Reason.WRONG_TYPE,
                                        f"result.dtcs[{i}].freeze_frame must be an object")
                entry["freeze_frame"] = checker.values(frame, rejected)
            checked_dtcs.append(entry)
        software = result.get("software", {})
        if not isinstance(software, dict) or len(software) > 50:
            raise ContractError(Reason.WRONG_TYPE, "result.software must be an object of at "
                                "most 50 component: version pairs")
        for component, version in software.items():
            if not _SOFTWARE_RE.fullmatch(component) or not isinstance(version, str) \
                    or not _SOFTWARE_RE.fullmatch(version):
                raise ContractError(Reason.BAD_VALUE, f"result.software[{component!r}] is not "
                                    "a component name with a version string")
        return {"signals": checker.values(signals, rejected), "dtcs": checked_dtcs,
                "software": dict(software)}
    if kind == "clear_dtc":
        _check_fields(result, frozenset({"cleared"}))
        cleared = result.get("cleared", [])
        if not isinstance(cleared, list) or len(cleared) > 100:
            raise ContractError(Reason.WRONG_TYPE, "result.cleared must be an array of at "
                                "most 100 trouble codes")
        for i, code in enumerate(cleared):
            if not isinstance(code, str) or not DTC_RE.fullmatch(code):
                raise ContractError(Reason.BAD_VALUE, f"result.cleared[{i}] is not an SAE "
                                    "J2012 DTC")
        return {"cleared": list(cleared)}
    _check_fields(result, frozenset({"awake_since"}))  # wake
    if "awake_since" in result:
        return {"awake_since": _int("result.awake_since", result["awake_since"], MIN_TS_MS,
                                    MAX_TS_MS)}
    return {}


def _command_result(payload: Mapping[str, Any], asset_id: str, checker: SignalChecker,
                    rejected: list[SignalRejection] | None) -> dict[str, Any]:
    _check_fields(payload, _COMMAND_RESULT_FIELDS)
    _check_vin_echo(payload, "vin", asset_id)
    command_id = _str("command_id", _require(payload, "command_id"), 36)
    if not COMMAND_ID_RE.fullmatch(command_id):
        raise ContractError(Reason.BAD_VALUE, f"command_id {command_id!r} is not a command id")
    status = _str("status", _require(payload, "status"), 16, COMMAND_REPORTED_STATES)
    data: dict[str, Any] = {"command_id": command_id, "status": status}
    kind = payload.get("kind")
    if kind is not None:
        data["kind"] = _str("kind", kind, 16, COMMAND_KINDS)
    if "reason" in payload:
        data["reason"] = _str("reason", payload["reason"], 64)
    if "detail" in payload:
        data["detail"] = _str("detail", payload["detail"], 500)
    if "result" in payload:
        if status not in ("succeeded", "failed") or "kind" not in data:
            raise ContractError(Reason.BAD_VALUE, "a result comes with status succeeded or "
                                "failed and the command's kind")
        data["result"] = _command_result_body(data["kind"], payload["result"], checker,
                                              rejected)
    return data


def _charger_status(payload: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
    _check_fields(payload, _STATUS_FIELDS)
    _check_vin_echo(payload, "chargerId", asset_id)
    data: dict[str, Any] = {
        "connectorId": _int("connectorId", _require(payload, "connectorId"), 0, 100),
        "status": _str("status", _require(payload, "status"), 20, OCPP_STATUSES),
        "errorCode": _str("errorCode", _require(payload, "errorCode"), 30, OCPP_ERROR_CODES),
    }
    # OCPP 1.6 CiString50Type / CiString255Type limits.
    for field, limit in (("vendorErrorCode", 50), ("info", 50), ("vendorId", 255)):
        if payload.get(field) is not None:
            data[field] = _str(field, payload[field], limit)
    return data


def _charger_meter(payload: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
    _check_fields(payload, _METER_FIELDS)
    _check_vin_echo(payload, "chargerId", asset_id)
    data: dict[str, Any] = {
        "connectorId": _int("connectorId", _require(payload, "connectorId"), 0, 100)
    }
    if payload.get("transactionId") is not None:
        data["transactionId"] = _int("transactionId", payload["transactionId"], 0, 2**31 - 1)
    if payload.get("vin") is not None:
        vin = _str("vin", payload["vin"], 17)
        if not VIN_RE.fullmatch(vin):
            raise ContractError(Reason.BAD_ID, f"vin {vin!r} is not a 17-character VIN")
        data["vin"] = vin
    measurands = _require(payload, "measurands")
    if not isinstance(measurands, dict):
        raise ContractError(
            Reason.WRONG_TYPE, f"measurands must be an object, got {_type(measurands)}"
        )
    if not measurands:
        raise ContractError(Reason.BAD_VALUE, "measurands must not be empty")
    values: dict[str, float] = {}
    for name, value in measurands.items():
        spec = OCPP_MEASURANDS.get(name)
        if spec is None:
            raise ContractError(Reason.UNKNOWN_SIGNAL, f"measurand {name!r} is not OCPP 1.6")
        values[name] = _number(f"measurands[{name!r}]", value, spec.min, spec.max)
    data["measurands"] = values
    return data


_VALIDATORS: Final = {
    Kind.VEHICLE_EVENT: _event,
    Kind.VEHICLE_OTA_STATUS: _ota_status,
    Kind.CHARGER_STATUS: _charger_status,
    Kind.CHARGER_METER: _charger_meter,
}


def validate(topic: str, payload: bytes | bytearray, max_bytes: int = MAX_PAYLOAD_BYTES, *,
             checker: SignalChecker = DEFAULT_CHECKER,
             rejected: list[SignalRejection] | None = None) -> dict[str, Any]:
    """Validate one MQTT message and return its canonical record, or raise ContractError.

    Signals are checked against ``checker``'s catalogue. With a ``rejected`` list, a signal
    the catalogue does not accept (unknown path, wrong type, out of range) is appended there
    and left out of the record while the rest of the message stands, so a telemetry record
    may come back with no signals at all; faults of the envelope (topic, JSON, header,
    fields) always raise. Without it, the first bad signal raises too.
    """
    kind, asset_id = parse_topic(topic)
    if len(payload) > max_bytes:
        raise ContractError(
            Reason.OVERSIZED, f"payload is {len(payload)} bytes, the limit is {max_bytes}"
        )
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(Reason.NOT_JSON, f"payload is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ContractError(Reason.NOT_OBJECT, f"payload must be an object, got {_type(body)}")
    if payload.count(b":") > _members(body):
        _check_unique_keys(payload)
    ts, seq = _header(body, seq_required=kind in VEHICLE_KINDS)
    if kind is Kind.VEHICLE_TELEMETRY:
        data = _telemetry(body, asset_id, checker, rejected)
    elif kind is Kind.VEHICLE_COMMAND_RESULT:
        data = _command_result(body, asset_id, checker, rejected)
    else:
        data = _VALIDATORS[kind](body, asset_id)
    return {"kind": kind.value, "id": asset_id, "ts": ts, "seq": seq, "data": data}


def _members(body: object) -> int:
    """Members of every object in a parsed document (iterative: orjson allows 1024 levels)."""
    # Only containers go on the stack: a telemetry message is mostly scalars (and number
    # arrays of a few hundred cells), and pushing each one costs more than looking at it.
    count, stack = 0, [body] if type(body) is dict or type(body) is list else []
    while stack:
        value = stack.pop()
        members = value.values() if type(value) is dict else value
        if type(value) is dict:
            count += len(value)
        for member in members:
            kind = type(member)
            if kind is dict or kind is list:
                stack.append(member)
    return count


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ContractError(Reason.DUPLICATE_KEY,
                                f"key {name!r} appears more than once in one object")
        seen.add(name)
    return dict(pairs)


def _check_unique_keys(payload: bytes | bytearray) -> None:
    """Raise ContractError when an object of ``payload`` repeats a key.

    orjson keeps the last of repeated keys silently; a device, a gateway or an ACL reading
    the first would then disagree with the bridge about what a message says. Each member has
    one ":" outside strings, so ``validate`` calls this only when the payload has more colons
    than the parsed objects have members (a repeat, or a colon inside a string).
    """
    import json

    try:
        json.loads(payload, object_pairs_hook=_reject_duplicates)
    except RecursionError:
        raise ContractError(Reason.NOT_JSON, "payload is nested too deeply to check its keys "
                            "for repeats") from None


def check_not_future(record: Mapping[str, Any], received_ms: int, max_skew_ms: int | None
                     ) -> None:
    """Raise ContractError when ``record``'s ``ts`` is more than ``max_skew_ms`` ahead of
    ``received_ms``, the time the bridge received it (None: no limit).

    The bridge's receive time is the boundary between processing time and event time, the one
    place where comparing them means something: a device cannot have measured something after
    it was received. Downstream, event time is all there is, so a record from the future would
    drag every clock built from it (sweeps, dedup marks, the fleet's "now") along with it.
    """
    if max_skew_ms is None:
        return
    ahead = int(record["ts"]) - received_ms
    if ahead > max_skew_ms:
        raise ContractError(
            Reason.TS_IN_FUTURE,
            f"ts {record['ts']} is {ahead / 1000:.0f} s ahead of the bridge's receive time "
            f"{received_ms}; the limit is {max_skew_ms / 1000:.0f} s")


# --------------------------------------------------------------------------------------------
# Kafka codec: one Kafka record carries a micro-batch of canonical records of one partition.
# Amortising the per-record cost is what lets one worker keep up with a large fleet: a Faust
# agent costs ~100 us per event, so one Kafka record per message could not carry 10 000
# vehicles at 1 Hz on two cores.

BATCH_VERSION: Final = 1


def encode_batch(records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"v": BATCH_VERSION, "records": records})


def decode_batch(raw: bytes) -> list[dict[str, Any]]:
    body = orjson.loads(raw)
    if not isinstance(body, dict) or body.get("v") != BATCH_VERSION:
        raise ValueError("not an ownercare record batch (expected version 1)")
    records = body.get("records")
    if not isinstance(records, list):
        raise ValueError("record batch without a records list")
    return records
