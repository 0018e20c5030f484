"""What every converter shares: units, the contract filter, telemetry messages as JSON lines.

A converter turns each row of a recording into a :class:`Row` (event time, VIN, the file and
line it came from, and :class:`Reading`\\ s: a VSS path, a value and the unit the recording
gives it in). :func:`assemble` turns the rows into MQTT telemetry messages:

* a path the running contract knows gets the contract's unit, and a value the contract
  rejects (out of its range: a glitch of the logger) is dropped and counted;
* a path the contract does not know is dropped and counted, unless ``keep_unknown``: then it
  keeps the unit the mapping names as the VSS one;
* messages are ordered by event time (stable), each car's ``seq`` counts its messages, and a
  row left without any signal is not sent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.contract import (
    MAX_TS_MS,
    MIN_TS_MS,
    SIGNALS,
    VIN_RE,
    ContractError,
    Kind,
    SignalType,
    topic_for,
    validate,
    validate_signal,
)

# unit -> (dimension, scale, offset): value in the dimension's base unit = value * scale + offset.
# Looked up in lower case: the VSS catalogue writes "Celsius", older ownercare "celsius".
_UNITS: dict[str, tuple[str, float, float]] = {k.lower(): v for k, v in {
    "celsius": ("temperature", 1.0, 0.0),
    "fahrenheit": ("temperature", 5 / 9, -160 / 9),
    "m": ("length", 1.0, 0.0),
    "km": ("length", 1000.0, 0.0),
    "mi": ("length", 1609.344, 0.0),
    "km/h": ("speed", 1.0, 0.0),
    "mph": ("speed", 1.609344, 0.0),
    "kPa": ("pressure", 1.0, 0.0),
    "psi": ("pressure", 6.894757293168, 0.0),
    "V": ("voltage", 1.0, 0.0),
    "mV": ("voltage", 0.001, 0.0),
    "A": ("current", 1.0, 0.0),
    "W": ("power", 1.0, 0.0),
    "kW": ("power", 1000.0, 0.0),
    "percent": ("ratio", 1.0, 0.0),
    "rpm": ("rotation", 1.0, 0.0),
    "s": ("time", 1.0, 0.0),
    "min": ("time", 60.0, 0.0),
}.items()}


class ConversionError(ValueError):
    """A row (or a whole file) that cannot be converted; str() is ``file:line: reason``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source, self.line, self.reason = source, line, reason


def convert_unit(value: float, unit: str, to: str) -> float:
    """``value`` in ``unit`` expressed in ``to``; ValueError for unknown or unlike units."""
    if unit.lower() == to.lower():
        return value
    try:
        dim_from, scale_from, offset_from = _UNITS[unit.lower()]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}") from None
    try:
        dim_to, scale_to, offset_to = _UNITS[to.lower()]
    except KeyError:
        raise ValueError(f"unknown unit {to!r}") from None
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {unit} ({dim_from}) to {to} ({dim_to})")
    return (value * scale_from + offset_from - offset_to) / scale_to


def number(text: str) -> float | None:
    """A recording's numeric cell: None when the logger wrote nothing (empty, ``na``,
    ``none``); ValueError for anything else that is not a finite number."""
    raw = text.strip()
    if raw.lower() in ("", "na", "n/a", "none", "nan", "-"):
        return None
    value = float(raw)  # ValueError names the text
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of a row: a VSS path, the value, the unit the recording gives it in (None
    for unitless), and the unit VSS gives the path when the contract does not say
    (``vss_unit``; by default ``unit``)."""

    path: str
    value: float | bool | str | list[float]
    unit: str | None = None
    vss_unit: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    ts_ms: int
    vin: str
    source: str
    line: int
    readings: tuple[Reading, ...]


@dataclass
class Assembled:
    """The JSON lines, and what was left out of them and why."""

    lines: list[bytes] = field(default_factory=list)
    # (path, reason) -> values dropped
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    # path -> values written
    written: Counter[str] = field(default_factory=Counter)
    empty_rows: int = 0
    vehicle_days: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


def check_vin(vin: str) -> str:
    if not VIN_RE.fullmatch(vin):
        raise ValueError(f"VIN {vin!r} is not 17 characters of A-H, J-N, P, R-Z and 0-9")
    return vin


def check_ts(ts_ms: int) -> int:
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise ValueError(f"event time {ts_ms} ms is outside 2000-2100 (the contract's window)")
    return ts_ms


def _value(reading: Reading, keep_unknown: bool) -> tuple[object, str | None]:
    """(value to send, None) or (None, why it is dropped)."""
    spec = SIGNALS.get(reading.path)
    if spec is None and not keep_unknown:
        return None, "not in the contract"
    value: object = reading.value
    target = (spec.unit if spec is not None else None) or reading.vss_unit or reading.unit
    if reading.unit is not None and target is not None:
        try:
            if isinstance(value, float):
                value = convert_unit(value, reading.unit, target)
            elif isinstance(value, list):
                value = [convert_unit(v, reading.unit, target) for v in value]
        except ValueError as exc:
            return None, str(exc)
    if spec is None:
        return value, None
    if spec.type is SignalType.INT and isinstance(value, float):
        value = round(value)  # the catalogue's integer signals (tyre pressure in kPa, ...)
    try:
        return validate_signal(reading.path, value), None
    except ContractError as exc:
        return None, exc.reason.value


def assemble(rows: Iterable[Row], keep_unknown: bool = False) -> Assembled:
    """The rows as telemetry messages, in event-time order; see the module docstring."""
    out = Assembled()
    messages: list[tuple[int, str, dict[str, object], str, int]] = []
    for row in rows:
        signals: dict[str, object] = {}
        for reading in row.readings:
            value, why = _value(reading, keep_unknown)
            if why is not None:
                out.dropped[(reading.path, why)] += 1
                continue
            signals[reading.path] = value
        if not signals:
            out.empty_rows += 1
            continue
        messages.append((row.ts_ms, row.vin, signals, row.source, row.line))
    messages.sort(key=lambda m: m[0])
    seqs: dict[str, int] = {}
    days: set[tuple[str, int]] = set()
    for ts, vin, signals, source, line in messages:
        seqs[vin] = seq = seqs.get(vin, -1) + 1
        topic = topic_for(Kind.VEHICLE_TELEMETRY, vin)
        payload = orjson.dumps({"ts": ts, "seq": seq, "signals": signals})
        if not keep_unknown:  # every value was checked; this checks the envelope too
            try:
                validate(topic, payload)
            except ContractError as exc:
                raise ConversionError(source, line, f"the message breaks the contract: "
                                      f"{exc}") from None
        out.lines.append(orjson.dumps({"topic": topic, "payload": orjson.Fragment(payload)}))
        out.written.update(signals.keys())
        days.add((vin, ts // 86_400_000))
    out.vehicle_days = len(days)
    if messages:
        out.first_ts, out.last_ts = messages[0][0], messages[-1][0]
    return out


def summary(assembled: Assembled) -> Iterator[str]:
    """Lines for stderr: how much was written, and every path left out with the reason."""
    yield (f"{len(assembled.lines)} messages over {assembled.vehicle_days} vehicle-days, "
           f"{assembled.empty_rows} rows without any signal left")
    for path, count in sorted(assembled.written.items()):
        yield f"  wrote   {count:>8} {path}"
    for (path, why), count in sorted(assembled.dropped.items()):
        yield f"  dropped {count:>8} {path}: {why}"


def as_json(assembled: Assembled) -> dict[str, Any]:
    return {
        "messages": len(assembled.lines),
        "vehicle_days": assembled.vehicle_days,
        "empty_rows": assembled.empty_rows,
        "first_ts": assembled.first_ts,
        "last_ts": assembled.last_ts,
        "written": dict(sorted(assembled.written.items())),
        "dropped": [{"path": p, "reason": r, "values": n}
                    for (p, r), n in sorted(assembled.dropped.items())],
    }
