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

Either may be gzip-compressed (``ownercare eval --record FILE.gz`` writes that): a file is
read as gzip when it starts with gzip's magic bytes, whatever its name.

Every message is validated with ``ingest.contract`` exactly as the bridge would. A bad line is
reported on stderr with its line number and the reason and counted, never dropped silently; as
at the bridge, a bad signal is reported on its own and the line's other signals are kept.
Valid records are sorted by event time (stable, so equal times keep the file's order) and
run through :func:`ownercare.evaluation.run.detect`; the stream ends at ``--until``
(default: one millisecond after the last record).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BufferedIOBase
from pathlib import Path
from typing import Any, AnyStr, BinaryIO, cast

import orjson

from ingest.contract import (
    MAX_TS_MS,
    MIN_TS_MS,
    SIGNALS,
    ContractError,
    Kind,
    SignalRejection,
    SignalType,
    parse_topic,
    topic_for,
    validate,
    validate_signal,
)
from ownercare import progress

CSV_HEADER = ("timestamp", "vin", "signal", "value")
GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 8192  # a NUL in the first this-many (uncompressed) bytes: not a text format


class ReplayFileError(Exception):
    """The file cannot be replayed at all (as opposed to some bad lines in it)."""


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
        rejected: list[SignalRejection] = []
        try:
            record = _jsonl_record(line, rejected)
        except (ValueError, ContractError) as exc:
            parsed.errors.append((number, str(exc)))
            continue
        # As the bridge does: a bad signal is reported alone and the line's others are kept;
        # a telemetry line left with no signal is not a record.
        parsed.errors.extend((number, f"{r.reason}: {r.detail} (the line's other signals "
                                      "are kept)") for r in rejected)
        if record["kind"] != "vehicle_telemetry" or record["data"]["signals"]:
            parsed.records.append((number, record))
    return parsed


def _jsonl_record(line: bytes, rejected: list[SignalRejection]) -> dict[str, Any]:
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str) \
            or "payload" not in body:
        raise ValueError('expected an object {"topic": "<string>", "payload": {...}}')
    payload = body["payload"]
    raw = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return validate(body["topic"], raw, rejected=rejected)


def parse_csv(text: Iterable[str]) -> Parsed:
    """Group CSV rows into telemetry messages and validate them; see the module docstring."""
    parsed = Parsed()
    rows = csv.reader(text)
    try:
        header = next(rows, None)
    except csv.Error as exc:
        parsed.errors.append((1, f"not CSV ({exc})"))
        return parsed
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


def is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def format_of(path: Path) -> str:
    """The format a file name implies: ``.csv`` or ``.csv.gz`` is csv, anything else jsonl."""
    return "csv" if path.name.lower().removesuffix(".gz").endswith(".csv") else "jsonl"


def sniff(path: Path) -> None:
    """ReplayFileError when ``path`` is neither text nor gzip-compressed text."""
    try:
        with _open_binary(path) as handle:
            head = handle.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, gzip.BadGzipFile | EOFError | zlib.error):
            raise ReplayFileError(f"{path} starts like gzip but is not a readable gzip file "
                                  f"({exc})") from None
        raise
    if b"\x00" in head:
        raise ReplayFileError(f"{path} holds binary data: it is neither JSON lines, CSV nor "
                              "either of them gzip-compressed")


def _open_binary(path: Path) -> BufferedIOBase:
    if is_gzip(path):
        return gzip.open(path, "rb")
    return path.open("rb")


def read_file(path: Path, fmt: str, bar: progress.Bar | None = None) -> Parsed:
    """Parse ``path`` (plain or gzip-compressed, by its first bytes) as ``fmt``; a damaged or
    truncated gzip stream ends the file with one more bad line saying so."""
    damage: list[str] = []
    with path.open("rb") as raw:
        compressed = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        raw.seek(0)
        stream: BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        if fmt == "csv":
            # newline="": the csv module sees every line ending (\r too) as the file has it.
            text = io.TextIOWrapper(cast(BinaryIO, stream), encoding="utf-8",
                                    errors="replace", newline="")
            parsed = parse_csv(_lines(text, raw, damage, bar))
        else:
            parsed = parse_jsonl(_lines(stream, raw, damage, bar))
    if damage:
        last = max((n for n, _r in parsed.errors), default=0)
        last = max(last, max((n for n, _r in parsed.records), default=0))
        parsed.errors.append((last + 1, damage[0]))
    return parsed


def _lines(stream: Iterable[AnyStr], raw: BufferedIOBase, damage: list[str],
           bar: progress.Bar | None) -> Iterator[AnyStr]:
    """The lines of ``stream``; moves ``bar`` by the bytes read from ``raw`` (the file on
    disk); a damaged gzip stream ends the lines and is described in ``damage``."""
    try:
        for number, line in enumerate(stream):
            if bar is not None and number % 1024 == 0:
                bar.update(raw.tell())
            yield line
        if bar is not None:
            bar.update(raw.tell())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        damage.append(f"the gzip stream is damaged or truncated here ({exc}); the lines "
                      "before were replayed")


def in_event_time_order(parsed: Parsed) -> Iterator[dict[str, Any]]:
    for _line, record in sorted(parsed.records, key=lambda r: r[1]["ts"]):
        yield record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="recorded telemetry: .jsonl (MQTT messages) or .csv "
                        "(timestamp,vin,signal,value), either plain or gzip-compressed")
    parser.add_argument("--format", choices=("jsonl", "csv"),
                        help="input format (default: by extension, .csv or .csv.gz is csv, "
                        "else jsonl); gzip is recognised by the file's first bytes")
    parser.add_argument("--until", help="event time the stream ends at (ISO 8601 or epoch ms; "
                        "default: 1 ms after the last record)")


def run(args: argparse.Namespace) -> int:
    from ownercare.evaluation.run import detect

    path = Path(args.file)
    fmt = args.format or format_of(path)
    try:
        until = parse_timestamp(args.until) if args.until is not None else None
    except ValueError as exc:
        print(f"ownercare replay: --until: {exc}", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"ownercare replay: {args.file!r} is not a readable file", file=sys.stderr)
        return 2
    try:
        sniff(path)
        with progress.Bar(f"reading {path.name}", path.stat().st_size) as bar:
            parsed = read_file(path, fmt, bar)
    except ReplayFileError as exc:
        print(f"ownercare replay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ownercare replay: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for number, reason in parsed.errors:
        print(f"{path}:{number}: {reason}", file=sys.stderr)
    last = max((r["ts"] for _n, r in parsed.records), default=None)
    if until is not None and last is not None and until <= last:
        print(f"ownercare replay: --until {args.until} is not after the last record "
              f"(ts {last})", file=sys.stderr)
        return 2
    end = until if until is not None else (last if last is not None else MIN_TS_MS) + 1
    with progress.Bar("detecting", len(parsed.records), "records") as bar:
        alerts = detect(_counted(in_event_time_order(parsed), bar), end)
    for alert in alerts:
        print(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS).decode())
    bad_lines = len({number for number, _reason in parsed.errors})
    print(f"ownercare replay: {len(parsed.records)} records, {bad_lines} bad lines, "
          f"{len(alerts)} alert upserts", file=sys.stderr)
    return 1 if parsed.errors else 0


def _counted(records: Iterable[dict[str, Any]], bar: progress.Bar) -> Iterator[dict[str, Any]]:
    number = 0
    for number, record in enumerate(records, start=1):
        if number % 1024 == 0:
            bar.update(number)
        yield record
    bar.update(number)
