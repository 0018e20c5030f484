"""``ownercare nab NAB_DIR``: the generic detector on the Numenta Anomaly Benchmark.

NAB_DIR is a local checkout of github.com/numenta/NAB (its ``data/``, ``labels/`` and, for
``--results``, ``results/``); nothing of NAB is copied into this repository. By default the
command runs ``diagnostics.generic.GenericScorer`` over every data file, streaming row by row
in event time exactly as the worker would, and scores the result with NAB's rules
(``nabscore.py``). ``--results DETECTOR`` instead scores a detector's stored results from the
checkout (``results/DETECTOR/...``), which reproduces NAB's published scoreboard and so shows
the scorer right. ``--bench`` prints the detector's throughput and largest state.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from diagnostics.generic import GenericScorer
from ownercare.evaluation.nabscore import PROFILES, CorpusScore, FloatArray, score_corpus


class NabError(Exception):
    """A checkout that is not NAB's layout, or a results file that does not match its data."""


@dataclass(frozen=True, slots=True)
class NabFile:
    name: str  # e.g. realKnownCause/nyc_taxi.csv
    ts_ms: list[int]
    values: list[float]
    windows: list[tuple[int, int]]


def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise NabError(f"{path}: empty file")
    return rows[0], rows[1:]


def load_corpus(nab_dir: Path) -> list[NabFile]:
    windows_path = nab_dir / "labels" / "combined_windows.json"
    if not windows_path.is_file():
        raise NabError(f"{nab_dir}: not a NAB checkout (no labels/combined_windows.json)")
    windows = json.loads(windows_path.read_text())
    files = []
    for name in sorted(windows):
        header, rows = _read(nab_dir / "data" / name)
        if header[:2] != ["timestamp", "value"]:
            raise NabError(f"{name}: expected columns timestamp,value, got {header}")
        ts = [_epoch_ms(r[0]) for r in rows]
        index = {t: i for i, t in enumerate(ts)}
        spans = []
        for left, right in windows[name]:
            try:
                spans.append((index[_epoch_ms(left)], index[_epoch_ms(right)]))
            except KeyError as exc:
                raise NabError(f"{name}: window edge {exc} is not a row's timestamp") from None
        files.append(NabFile(name, ts, [float(r[1]) for r in rows], spans))
    return files


def load_results(nab_dir: Path, detector: str, corpus: Sequence[NabFile]) -> list[FloatArray]:
    out = []
    for f in corpus:
        folder, base = f.name.split("/")
        path = nab_dir / "results" / detector / folder / f"{detector}_{base}"
        header, rows = _read(path)
        if "anomaly_score" not in header or len(rows) != len(f.ts_ms):
            raise NabError(f"{path}: needs an anomaly_score column and {len(f.ts_ms)} rows")
        col = header.index("anomaly_score")
        out.append(np.array([float(r[col]) for r in rows]))
    return out


def detect_file(f: NabFile) -> FloatArray:
    scorer = GenericScorer()
    state = scorer.new_state()
    return np.array([scorer.score_one(state, t, v) for t, v in zip(f.ts_ms, f.values,
                                                                     strict=True)])


def detect_corpus(corpus: Sequence[NabFile], workers: int = 2) -> list[FloatArray]:
    if workers <= 1:
        return [detect_file(f) for f in corpus]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(detect_file, corpus, chunksize=4))


def score_all(corpus: Sequence[NabFile], scores: Sequence[FloatArray]) -> list[CorpusScore]:
    pairs = [(s, f.windows) for f, s in zip(corpus, scores, strict=True)]
    return [score_corpus(pairs, profile) for profile in PROFILES]


def bench(corpus: Sequence[NabFile]) -> dict[str, float]:
    """Scores per second on one core over the whole corpus, and the largest state seen."""
    scorer = GenericScorer()
    n, largest, elapsed = 0, 0, 0.0
    for f in corpus:
        state = scorer.new_state()
        start = time.perf_counter()
        for t, v in zip(f.ts_ms, f.values, strict=True):
            scorer.score_one(state, t, v)
        elapsed += time.perf_counter() - start
        n += len(f.ts_ms)
        largest = max(largest, len(json.dumps(state, separators=(",", ":"))))
    return {"scores": n, "seconds": round(elapsed, 3), "scores_per_s": round(n / elapsed),
            "max_state_bytes": largest}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("nab_dir", metavar="NAB_DIR", type=Path,
                        help="a local checkout of github.com/numenta/NAB")
    parser.add_argument("--results", metavar="DETECTOR",
                        help="score NAB's stored results of DETECTOR (e.g. numenta, null) "
                        "instead of running ownercare's detector")
    parser.add_argument("--bench", action="store_true",
                        help="also print the detector's throughput on one core and its "
                        "largest per-signal state")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes running the detector (default 2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    try:
        corpus = load_corpus(args.nab_dir)
        if args.results:
            scores = load_results(args.nab_dir, args.results, corpus)
        else:
            scores = detect_corpus(corpus, max(1, args.workers))
    except (NabError, ValueError) as exc:
        print(f"ownercare nab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ownercare nab: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    results = score_all(corpus, scores)
    report: dict[str, object] = {
        "detector": args.results or f"ownercare-generic {GenericScorer.version}",
        "files": len(corpus), "windows": sum(len(f.windows) for f in corpus),
        "profiles": {r.profile: {"score": round(r.normalised, 2), "threshold": r.threshold,
                                 "raw": round(r.raw, 3), "detected_windows": r.detected_windows,
                                 "false_positives": r.false_positives} for r in results}}
    if args.bench and not args.results:
        report["bench"] = bench(corpus)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"NAB ({report['files']} files, {report['windows']} windows), detector "
          f"{report['detector']}")
    for r in results:
        print(f"  {r.profile:<20} {r.normalised:6.2f}   threshold {r.threshold:.4f}, "
              f"{r.detected_windows} windows detected, {r.false_positives} false positives")
    if "bench" in report:
        b = report["bench"]
        assert isinstance(b, dict)
        print(f"  throughput: {b['scores_per_s']} scores/s on one core "
              f"({b['scores']} scores in {b['seconds']} s); largest state "
              f"{b['max_state_bytes']} bytes of JSON")
    return 0
