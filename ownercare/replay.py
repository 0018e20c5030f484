"""``ownercare replay FILE``: recorded telemetry through the detectors, alerts as JSON lines.

The back-testing tool for a fleet engineer's own history. Two input formats:

``jsonl``
    One MQTT message per line, ``{"topic": "vehicles/<VIN>/telemetry", "payload": {...}}``
    (the payload may also be a JSON string holding the object), as ``ownercare eval --record``
    writes them.
``csv``
    A header ``timestamp,vin,signal,value`` and one signal value per row. ``timestamp`` is
    ISO 8601 (naive means UTC) or epoch milliseconds; rows with the same (timestamp, vin)
    become one telemetry message, whose ``seq`` counts that car's messages in time order.
    Values are parsed by the signal's type in the contract: numbers for float/int signals,
    ``true``/``false`` (or ``1``/``0``) for booleans, text for enums and strings, and a JSON
    array (``[3.91, 3.92]``) for lists.

Every message is validated with ``ingest.contract`` exactly as the bridge would. A bad line is
reported on stderr with its line number and the reason and counted, never dropped silently.
Valid records are sorted by event time (stable, so equal times keep the file's order) and
run through :func:`ownercare.evaluation.run.detect`; the stream ends at ``--until``
(default: one millisecond after the last record).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ingest.contract import (
    MAX_TS_MS,
    MIN_TS_MS,
    SIGNALS,
    ContractError,
    Kind,
    SignalType,
    parse_topic,
    topic_for,
    validate,
    validate_signal,
)

CSV_HEADER = ("timestamp", "vin", "signal", "value")


@dataclass
class Parsed:
    """Canonical records with the line each came from, and the bad lines (line, reason)."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds (digits) or ISO 8601 (naive means UTC) -> epoch ms; ValueError."""
    text = text.strip()
    if text.isdigit():
        ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {text!r} is neither epoch milliseconds nor "
                             "ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = round(moment.timestamp() * 1000)
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise ValueError(f"timestamp {text!r} is outside 2000-2100 (the contract's window)")
    return ms


_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def parse_value(signal: str, text: str) -> object:
    """A CSV cell as the contract's type of ``signal``, validated; ValueError naming why."""
    spec = SIGNALS.get(signal)
    if spec is None:
        raise ValueError(f"signal {signal!r} is not in the contract's catalogue")
    raw = text.strip()
    value: object
    try:
        if spec.type is SignalType.FLOAT:
            value = float(raw)
        elif spec.type is SignalType.INT:
            value = int(raw)
        elif spec.type is SignalType.BOOL:
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError
            value = raw.lower() in _TRUE
        elif spec.type is SignalType.FLOAT_LIST:
            value = [float(v) for v in orjson.loads(raw)]
        else:
            value = raw
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValueError(f"value {text!r} is not a {spec.type.value} "
                         f"(signal {signal!r})") from None
    try:
        return validate_signal(signal, value)
    except ContractError as exc:
        raise ValueError(str(exc)) from None


def parse_jsonl(lines: Iterable[bytes]) -> Parsed:
    parsed = Parsed()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.records.append((number, _jsonl_record(line)))
        except (ValueError, ContractError) as exc:
            parsed.errors.append((number, str(exc)))
    return parsed


def _jsonl_record(line: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str) \
            or "payload" not in body:
        raise ValueError('expected an object {"topic": "<string>", "payload": {...}}')
    payload = body["payload"]
    raw = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return validate(body["topic"], raw)


def parse_csv(text: Iterable[str]) -> Parsed:
    """Group CSV rows into telemetry messages and validate them; see the module docstring."""
    parsed = Parsed()
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
        parsed.errors.append((1, f"the header must be {','.join(CSV_HEADER)}, got "
                                 f"{','.join(header or []) or 'an empty file'}"))
        return parsed
    # (ts, vin) -> {signal: (value, line)}; the first line orders equal timestamps.
    messages: dict[tuple[int, str], dict[str, tuple[object, int]]] = {}
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            parsed.errors.append((rows.line_num, f"not CSV ({exc})"))
            continue
        number = rows.line_num  # the physical line (a quoted field may span several)
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != len(CSV_HEADER):
                raise ValueError(f"expected 4 columns ({','.join(CSV_HEADER)}), got {len(row)}")
            ts, vin, signal = parse_timestamp(row[0]), row[1].strip(), row[2].strip()
            value = parse_value(signal, row[3])
            parse_topic(topic_for(Kind.VEHICLE_TELEMETRY, vin))  # a bad VIN fails here
            signals = messages.setdefault((ts, vin), {})
            if signal in signals:
                raise ValueError(f"signal {signal!r} is given twice for {vin} at {ts} "
                                 f"(first on line {signals[signal][1]})")
            signals[signal] = (value, number)
        except ValueError as exc:
            parsed.errors.append((number, str(exc)))
    seqs: dict[str, int] = {}
    ordered = sorted(messages.items(),
                     key=lambda m: (m[0][0], min(line for _v, line in m[1].values())))
    for (ts, vin), signals in ordered:
        lines = sorted(line for _v, line in signals.values())
        seqs[vin] = seq = seqs.get(vin, -1) + 1
        payload = orjson.dumps({"ts": ts, "seq": seq,
                                "signals": {k: v for k, (v, _line) in signals.items()}})
        try:
            parsed.records.append(
                (lines[0], validate(topic_for(Kind.VEHICLE_TELEMETRY, vin), payload)))
        except ContractError as exc:  # every row of the message shares its fate
            parsed.errors.extend((line, str(exc)) for line in lines)
    return parsed


def read_file(path: Path, fmt: str) -> Parsed:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            return parse_csv(handle)
    with path.open("rb") as handle:
        return parse_jsonl(handle)


def in_event_time_order(parsed: Parsed) -> Iterator[dict[str, Any]]:
    for _line, record in sorted(parsed.records, key=lambda r: r[1]["ts"]):
        yield record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="recorded telemetry: .jsonl (MQTT messages) or .csv "
                        "(timestamp,vin,signal,value)")
    parser.add_argument("--format", choices=("jsonl", "csv"),
                        help="input format (default: by extension, .csv is csv, else jsonl)")
    parser.add_argument("--until", help="event time the stream ends at (ISO 8601 or epoch ms; "
                        "default: 1 ms after the last record)")


def run(args: argparse.Namespace) -> int:
    from ownercare.evaluation.run import detect

    path = Path(args.file)
    fmt = args.format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    try:
        until = parse_timestamp(args.until) if args.until is not None else None
    except ValueError as exc:
        print(f"ownercare replay: --until: {exc}", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"ownercare replay: {args.file!r} is not a readable file", file=sys.stderr)
        return 2
    parsed = read_file(path, fmt)
    for number, reason in parsed.errors:
        print(f"{path}:{number}: {reason}", file=sys.stderr)
    last = max((r["ts"] for _n, r in parsed.records), default=None)
    if until is not None and last is not None and until <= last:
        print(f"ownercare replay: --until {args.until} is not after the last record "
              f"(ts {last})", file=sys.stderr)
        return 2
    end = until if until is not None else (last if last is not None else MIN_TS_MS) + 1
    alerts = detect(in_event_time_order(parsed), end)
    for alert in alerts:
        print(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS).decode())
    print(f"ownercare replay: {len(parsed.records)} records, {len(parsed.errors)} bad lines, "
          f"{len(alerts)} alert upserts", file=sys.stderr)
    return 1 if parsed.errors else 0
