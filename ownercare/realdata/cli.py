"""``ownercare realdata`` (or ``python -m ownercare.realdata``): convert real recordings, and
take a detector census.

::

    ownercare realdata convert leafspy LOGS... -o leaf.jsonl.gz [--vin VIN]
    ownercare realdata convert carobd CSVS... -o etios.jsonl --vin VIN --start ISO
    ownercare realdata census leaf.jsonl.gz > census.json
    ownercare replay leaf.jsonl.gz > alerts.jsonl

A directory stands for its ``*.csv`` files in name order. A row that cannot be converted is a
one-line error ``file:line: reason`` and exit status 2, nothing written; with
``--skip-bad-rows`` each is reported on stderr and left out. The summary (stderr, and as JSON
with ``--summary FILE``) says how many messages and vehicle-days were written and every path
left out, with why.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson

from ownercare.realdata import carobd, leafspy
from ownercare.realdata.convert import (
    ConversionError,
    Row,
    as_json,
    assemble,
    check_vin,
    summary,
)

PROG = "ownercare realdata"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``convert`` and ``census`` subcommands (``ownercare realdata`` uses them too)."""
    sub = parser.add_subparsers(dest="realdata_command", required=True)
    convert = sub.add_parser("convert", help="a recording -> JSON lines for ownercare replay")
    convert.add_argument("format", choices=("leafspy", "carobd"))
    convert.add_argument("inputs", nargs="+", type=Path,
                         help="recording files, or directories of *.csv")
    convert.add_argument("-o", "--output", type=Path, required=True,
                         help="JSON lines to write (gzip-compressed when it ends in .gz)")
    convert.add_argument("--vin", help="VIN to send as (leafspy: instead of the log's own; "
                         "carobd: required, the recordings have none)")
    convert.add_argument("--start", help="carobd: event time of the first recording's first "
                         "row (ISO 8601; the recordings have only seconds since engine start)")
    convert.add_argument("--gap-hours", type=float, default=12.0,
                         help="carobd: parked time between one recording and the next")
    convert.add_argument("--skip-bad-rows", action="store_true",
                         help="report rows that cannot be converted and go on without them")
    convert.add_argument("--keep-unknown", action="store_true",
                         help="also write VSS paths the running contract does not accept")
    convert.add_argument("--summary", type=Path, help="also write the summary as JSON here")
    census = sub.add_parser("census", help="replay JSON lines and say what every vehicle "
                            "detector answered (JSON on stdout)")
    census.add_argument("file", type=Path)
    census.add_argument("--format", choices=("jsonl", "csv"))


def run(args: argparse.Namespace) -> int:
    if args.realdata_command == "census":
        return _census(args)
    return _convert(args)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(item.glob("*.csv")))
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item} is neither a file nor a directory")
    if not files:
        raise FileNotFoundError("no input files (a directory holds no *.csv)")
    return files


def _rows(args: argparse.Namespace, files: list[Path]) -> Iterator[Row | ConversionError]:
    if args.format == "leafspy":
        return leafspy.rows(files, check_vin(args.vin) if args.vin is not None else None)
    if args.vin is None or args.start is None:
        raise ValueError("carobd needs --vin and --start (the recordings have neither)")
    return carobd.rows(files, args.vin, carobd.start_ms(args.start), args.gap_hours)


def _convert(args: argparse.Namespace) -> int:
    try:
        files = _files(args.inputs)
        produced = _rows(args, files)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    good: list[Row] = []
    skipped = 0
    try:
        for item in produced:
            if isinstance(item, Row):
                good.append(item)
            elif args.skip_bad_rows:
                print(f"skipped {item}", file=sys.stderr)
                skipped += 1
            else:
                return _fail(f"{item} (--skip-bad-rows leaves such rows out)")
        assembled = assemble(good, args.keep_unknown)
    except ConversionError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read: {exc}")
    try:
        opener = gzip.open if args.output.name.endswith(".gz") else open
        with opener(args.output, "wb") as out:
            for line in assembled.lines:
                out.write(line + b"\n")
        if args.summary is not None:
            args.summary.write_bytes(orjson.dumps(
                {"files": len(files), "rows": len(good), "skipped_rows": skipped,
                 **as_json(assembled)}, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        return _fail(f"cannot write: {exc}")
    print(f"{PROG}: {len(files)} files, {len(good)} rows, {skipped} bad rows skipped",
          file=sys.stderr)
    for text in summary(assembled):
        print(text, file=sys.stderr)
    return 0


def _census(args: argparse.Namespace) -> int:
    from ownercare.realdata.census import census
    from ownercare.replay import ReplayFileError, sniff

    if not args.file.is_file():
        return _fail(f"{args.file} is not a readable file")
    try:
        sniff(args.file)
        result = census(args.file, args.format)
    except ReplayFileError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if result["records"]:
        first = min(a["first_seen"] for a in result["alerts"]) if result["alerts"] else None
        note = f", first alert {datetime.fromtimestamp(first / 1000, UTC):%Y-%m-%d}" \
            if first else ""
        print(f"{PROG}: {result['records']} records, {result['vehicle_days']} vehicle-days, "
              f"{len(result['alerts'])} alerts{note}", file=sys.stderr)
    return 0
