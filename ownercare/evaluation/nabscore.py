"""The Numenta Anomaly Benchmark's scoring rules, reimplemented (no NAB code or data here).

NAB (github.com/numenta/NAB) scores a detector's per-row anomaly scores in [0, 1] against
labelled *windows* around each known anomaly:

* the first ``probation_length(n)`` rows of each file are for learning and are not scored;
* a row whose anomaly score reaches the threshold is a detection. Inside a window only the
  window's *earliest* detection counts, weighted by a scaled sigmoid of its position: at the
  window's left edge ~ +1 (times ``tp``), falling to 0 at its right edge. A window without a
  detection costs ``fn``. A detection outside every window costs ``fp`` times a sigmoid of
  its distance past the preceding window (in that window's widths): just after a window it is
  nearly free, far after (or before any window) it costs the full ``fp``;
* one threshold for the whole corpus: the one that maximises the corpus's raw score (the
  optimiser's rule; among equal scores the highest threshold);
* the raw score is normalised between the null detector (never detects: ``-fn`` per window)
  and the perfect detector (``tp`` per window): ``100 (raw - null) / (perfect - null)``.

Everything here is pure numpy over arrays the caller loads (``nab.py`` reads a checkout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15
NO_WINDOW = -1
PROBATION = -2

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Profile:
    """One of NAB's application profiles (its cost matrix)."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
)


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a detection at ``position`` relative to a window: -1 is its left edge
    (~0.987), 0 its right edge (0.0), positive values lie past it (down to -1)."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> float:
    return min(math.floor(percent * n_rows), percent * 5000)


@dataclass(frozen=True, slots=True)
class FileSweep:
    """Per row of one file: its weighted score were it a detection, and its window."""

    weight: FloatArray
    window: IntArray  # window number within the file, NO_WINDOW, or PROBATION


def sweep_file(n_rows: int, windows: Sequence[tuple[int, int]], profile: Profile,
               probation_percent: float = PROBATION_PERCENT) -> FileSweep:
    """Weights of one file's rows; ``windows`` are (first row, last row), inclusive, in order."""
    weight = np.empty(n_rows)
    window = np.full(n_rows, NO_WINDOW, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    prev_right: int | None = None
    prev_width = 0.0
    i = 0
    for number, (left, right) in enumerate(windows):
        if not 0 <= left <= right < n_rows or (prev_right is not None and left <= prev_right):
            raise ValueError(f"window {number} ({left}, {right}) is out of order or out of "
                             f"the file's {n_rows} rows")
        _outside(weight, i, left, prev_right, prev_width, profile.fp)
        width = float(right - left + 1)
        rows = np.arange(left, right + 1)
        positions = -(right - rows + 1) / width
        weight[left:right + 1] = [scaled_sigmoid(p) * profile.tp / max_tp for p in positions]
        window[left:right + 1] = number
        prev_right, prev_width, i = right, width, right + 1
    _outside(weight, i, n_rows, prev_right, prev_width, profile.fp)
    probation = int(math.ceil(probation_length(n_rows, probation_percent)))
    window[:probation] = PROBATION
    return FileSweep(weight, window)


def _outside(weight: FloatArray, start: int, stop: int, prev_right: int | None,
             prev_width: float, fp: float) -> None:
    if stop <= start:
        return
    if prev_right is None:
        weight[start:stop] = -fp
        return
    positions = np.abs(prev_right - np.arange(start, stop)) / (prev_width - 1.0)
    weight[start:stop] = [scaled_sigmoid(p) * fp for p in positions]


@dataclass(frozen=True, slots=True)
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    detected_windows: int
    false_positives: int

    @property
    def normalised(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def score_corpus(files: Sequence[tuple[FloatArray, Sequence[tuple[int, int]]]],
                 profile: Profile, probation_percent: float = PROBATION_PERCENT
                 ) -> CorpusScore:
    """NAB's score of a corpus: ``files`` are (anomaly scores, windows) pairs."""
    scores: list[FloatArray] = []
    weights: list[FloatArray] = []
    window_ids: list[IntArray] = []
    n_windows = 0
    offset = 0
    for anomaly, windows in files:
        sweep = sweep_file(len(anomaly), windows, profile, probation_percent)
        keep = sweep.window != PROBATION
        ids = sweep.window[keep]
        ids = np.where(ids >= 0, ids + offset, NO_WINDOW)
        scores.append(np.asarray(anomaly, dtype=np.float64)[keep])
        weights.append(sweep.weight[keep])
        window_ids.append(ids)
        n_windows += len(windows)
        offset += len(windows)
    return _optimise(np.concatenate(scores) if scores else np.empty(0),
                     np.concatenate(weights) if weights else np.empty(0),
                     np.concatenate(window_ids) if window_ids else np.empty(0, np.int64),
                     n_windows, profile)


def _optimise(anomaly: FloatArray, weight: FloatArray, window: IntArray, n_windows: int,
              profile: Profile) -> CorpusScore:
    """The threshold maximising the corpus score, as NAB's optimiser sweeps it: a row is a
    detection when its score is >= the threshold; candidates are the scores themselves."""
    scorable = np.unique(window[window >= 0])
    null = -profile.fn * len(scorable)
    perfect = profile.tp * n_windows
    order = np.argsort(-anomaly, kind="stable")
    a, w, win = anomaly[order], weight[order], window[order]
    # Each row's change to the total when it becomes a detection: an outside row adds its
    # weight; a window row raises the window's value to its weight if that is higher.
    delta = np.where(win < 0, w, 0.0)
    best = {int(k): -profile.fn for k in scorable}
    for idx in np.flatnonzero(win >= 0):
        k = int(win[idx])
        if w[idx] > best[k]:
            delta[idx] = w[idx] - best[k]
            best[k] = float(w[idx])
    total = null + np.cumsum(delta)
    fp_count = np.cumsum(win < 0)
    first_hit = np.zeros(len(a), dtype=bool)
    seen: set[int] = set()
    for idx in np.flatnonzero(win >= 0):
        if int(win[idx]) not in seen:
            seen.add(int(win[idx]))
            first_hit[idx] = True
    hits = np.cumsum(first_hit)
    # Candidate thresholds: each distinct score, counted once all rows at it are included.
    ends = np.flatnonzero(np.append(a[1:] != a[:-1], True)) if len(a) else np.empty(0, int)
    threshold, raw, detected, fps = 1.1, float(null), 0, 0
    if len(ends):
        cand = total[ends]
        pick = int(np.argmax(cand))  # first maximum: the highest threshold among ties
        if cand[pick] > raw:
            e = ends[pick]
            threshold, raw = float(a[e]), float(cand[pick])
            detected, fps = int(hits[e]), int(fp_count[e])
    return CorpusScore(profile.name, threshold, raw, float(null), float(perfect), detected, fps)
