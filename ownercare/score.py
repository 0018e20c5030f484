"""``ownercare score FILE.csv``: the generic detector's anomaly score for every row of a CSV.

The rows are scored in file order exactly as the worker scores a signal (``GenericScorer``;
with several value columns ``JointScorer``, one joint score per row): each row is scored
before it is learned, only the row's own timestamp is read as time, and the same file always
gives the same scores. The output is the input with one more column, ``anomaly_score`` in
[0, 1].

Timestamps are ISO 8601 (a time without a zone is UTC) or numbers: seconds since the epoch,
or milliseconds when larger than 1e11 (so milliseconds before March 1973 would be read as
seconds). Rows must be in time order (equal times are fine).
Bad input stops the command with one line on stderr naming the file, the line and the
problem, and exit status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

from diagnostics.joint import JointScorer

SCORE_COLUMN = "anomaly_score"


class ScoreInputError(Exception):
    """Input the command cannot score; the message is the one line the user sees."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.csv", help="a CSV with a header row ('-' reads "
                        "standard input)")
    parser.add_argument("--timestamp-col", metavar="C",
                        help="the time column (default: 'timestamp' if there is one, else the "
                        "first column)")
    parser.add_argument("--value-col", metavar="C", action="append",
                        help="a value column; repeat for a joint score over several (default: "
                        "'value' if there is one, else every column but the time)")
    parser.add_argument("--out", metavar="FILE", help="write here instead of standard output")


def parse_time(text: str) -> float:
    """Epoch milliseconds of an ISO 8601 time or an epoch number; ValueError if neither."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp() * 1000.0
    if not math.isfinite(number):
        raise ValueError(text)
    return number if abs(number) > 1e11 else number * 1000.0


def score_csv(text: str, name: str, timestamp_col: str | None,
              value_cols: list[str] | None) -> str:
    """The CSV ``text`` with an ``anomaly_score`` column; ScoreInputError on bad input."""
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if not header:
        raise ScoreInputError(f"{name}: empty file (needs a header row)")
    ts_col = timestamp_col or ("timestamp" if "timestamp" in header else header[0])
    if value_cols:
        cols = value_cols
    elif "value" in header and ts_col != "value":
        cols = ["value"]
    else:
        cols = [c for c in header if c != ts_col]
    for col in [ts_col, *cols]:
        if col not in header:
            raise ScoreInputError(f"{name}:1: no column {col!r} (columns: {', '.join(header)})")
    if not cols:
        raise ScoreInputError(f"{name}:1: no value column to score")
    twice = sorted({c for c in cols if cols.count(c) > 1})
    if twice:
        raise ScoreInputError(f"{name}:1: value column {twice[0]!r} given twice")
    if SCORE_COLUMN in header:
        raise ScoreInputError(f"{name}:1: already has an {SCORE_COLUMN!r} column")
    ts_i, value_is = header.index(ts_col), [header.index(c) for c in cols]
    scorer = JointScorer(len(cols))
    state = scorer.new_state()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*header, SCORE_COLUMN])
    last = -math.inf
    for row in rows:
        line = rows.line_num
        if not row:
            continue
        if len(row) != len(header):
            raise ScoreInputError(f"{name}:{line}: {len(row)} fields, the header has "
                                  f"{len(header)}")
        try:
            ts = parse_time(row[ts_i])
        except ValueError:
            raise ScoreInputError(f"{name}:{line}: unparseable time {row[ts_i]!r} in column "
                                  f"{ts_col!r}") from None
        if ts < last:
            raise ScoreInputError(f"{name}:{line}: time {row[ts_i]!r} is earlier than the "
                                  "row before (rows must be in time order)")
        last = ts
        values = []
        for col, i in zip(cols, value_is, strict=True):
            try:
                value = float(row[i])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ScoreInputError(f"{name}:{line}: non-numeric value {row[i]!r} in column "
                                      f"{col!r}")
            values.append(value)
        score = scorer.score_one(state, ts, values)
        writer.writerow([*row, f"{score:.6f}"])
    return out.getvalue()


def run(args: argparse.Namespace) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.file).read_text(encoding="utf-8-sig")
        result = score_csv(text, name, args.timestamp_col, args.value_col)
        if args.out:
            Path(args.out).write_text(result)
        else:
            sys.stdout.write(result)
    except ScoreInputError as exc:
        print(f"ownercare score: {exc}", file=sys.stderr)
        return 2
    except csv.Error as exc:
        print(f"ownercare score: {name}: not readable as CSV: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"ownercare score: {name}: not a UTF-8 text file", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ownercare score: {exc.filename or name}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    return 0
