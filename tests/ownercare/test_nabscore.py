"""NAB's scoring rules (ownercare.evaluation.nabscore) pinned on tiny synthetic corpora."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownercare.evaluation.nabscore import (
    NO_WINDOW,
    PROBATION,
    PROFILES,
    Profile,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    sweep_file,
)

STANDARD = PROFILES[0]


def test_scaled_sigmoid_matches_the_published_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.5) == -1.0


def test_probation_is_fifteen_percent_capped_at_750_rows() -> None:
    assert probation_length(1000) == 150
    assert probation_length(4032) == 604
    assert probation_length(20000) == 750


def test_window_rows_are_weighted_by_position_and_outside_rows_by_distance() -> None:
    sweep = sweep_file(200, [(100, 109)], STANDARD)
    assert list(sweep.window[:30]) == [PROBATION] * 30
    assert sweep.window[99] == NO_WINDOW
    assert sweep.window[100] == 0
    # left edge of the window: full credit (tp, scaled so the edge is exactly 1)
    assert sweep.weight[100] == pytest.approx(1.0)
    # last row of the window: position -1/10
    assert sweep.weight[109] == pytest.approx(scaled_sigmoid(-0.1) / scaled_sigmoid(-1.0))
    # before any window: the full false-positive cost
    assert sweep.weight[50] == pytest.approx(-STANDARD.fp)
    # just after the window, nearly free; far after, the full cost
    assert sweep.weight[110] == pytest.approx(scaled_sigmoid(1 / 9) * STANDARD.fp)
    assert -STANDARD.fp / 2 < sweep.weight[110] < 0
    assert sweep.weight[199] == pytest.approx(-STANDARD.fp)


def corpus(detect_at: dict[int, list[int]]) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Two files of 400 rows, windows (200, 239) and (300, 339) in each; a score of 0.9 at
    the given rows of file 0 and 1."""
    files = []
    for k in (0, 1):
        scores = np.zeros(400)
        scores[detect_at.get(k, [])] = 0.9
        files.append((scores, [(200, 239), (300, 339)]))
    return files


def test_null_detector_scores_zero_and_perfect_detector_scores_one_hundred() -> None:
    for profile in PROFILES:
        null = score_corpus(corpus({}), profile)
        assert null.null == -4 * profile.fn
        assert null.normalised == 0.0
        perfect = score_corpus(corpus({0: [200, 300], 1: [200, 300]}), profile)
        assert perfect.normalised == pytest.approx(100.0)
        assert perfect.detected_windows == 4
        assert perfect.false_positives == 0


def test_only_the_earliest_detection_in_a_window_counts_and_late_ones_earn_less() -> None:
    late = score_corpus(corpus({0: [230, 235, 300], 1: [200, 300]}), STANDARD)
    expected_raw = 3.0 + scaled_sigmoid(-(239 - 230 + 1) / 40) / scaled_sigmoid(-1.0)
    assert late.raw == pytest.approx(expected_raw)
    assert late.normalised == pytest.approx(100 * (expected_raw + 4) / 8)


def test_false_positives_cost_their_profile_weight() -> None:
    # a detection before any window costs the full fp weight (not in probation: row >= 60)
    for profile in PROFILES:
        result = score_corpus(corpus({0: [200, 300, 100], 1: [200, 300]}), profile)
        assert result.raw == pytest.approx(4.0 - profile.fp)
        assert result.false_positives == 1


def test_one_threshold_for_the_corpus_maximises_the_score() -> None:
    files = corpus({0: [200, 300], 1: [200]})
    files[1][0][100:105] = 0.95  # five confident false positives in file 1
    files[1][0][300] = 0.5  # a weaker true detection
    # at 0.95 only the false positives fire (worse than nothing), at 0.9: three windows and
    # five false positives, at 0.5 all four windows
    result = score_corpus(files, STANDARD)
    assert result.threshold == 0.5
    assert result.raw == pytest.approx(4.0 - 5 * STANDARD.fp)
    heavy = Profile("heavy", tp=1.0, fp=2.0, fn=1.0)
    assert score_corpus(files, heavy).threshold == 1.1  # detecting nothing is best


def test_detections_in_probation_are_ignored() -> None:
    files = corpus({0: [10, 200, 300], 1: [200, 300]})
    assert score_corpus(files, STANDARD).raw == pytest.approx(4.0)
    assert math.isclose(score_corpus(files, STANDARD).normalised, 100.0)


def brute_force(files: list[tuple[np.ndarray, list[tuple[int, int]]]],
                profile: Profile) -> float:
    """NAB's rule read literally: at each candidate threshold, each window's earliest
    detection (or -fn), plus every detection outside the windows; the best threshold."""
    candidates = sorted({float(s) for scores, _ in files for s in scores}) + [1.1]
    best = -math.inf
    for threshold in candidates:
        total = 0.0
        for scores, windows in files:
            sweep = sweep_file(len(scores), windows, profile)
            scorable = sweep.window != PROBATION
            detected = (scores >= threshold) & scorable
            for number in range(len(windows)):
                rows = np.flatnonzero((sweep.window == number) & scorable)
                if len(rows) == 0:
                    continue
                hits = rows[detected[rows]]
                total += sweep.weight[hits[0]] if len(hits) else -profile.fn
            total += float(sweep.weight[detected & (sweep.window == NO_WINDOW)].sum())
        best = max(best, total)
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(40, 160), st.integers(0, 3), st.integers(0, 2**32 - 1)),
                min_size=1, max_size=4),
       st.sampled_from(PROFILES))
def test_the_fast_optimiser_agrees_with_the_rule_read_literally(
        shapes: list[tuple[int, int, int]], profile: Profile) -> None:
    files = []
    for n, n_windows, seed in shapes:
        rng = np.random.default_rng(seed)
        scores = np.round(rng.random(n), 1)  # few distinct values: ties matter
        edges = sorted(rng.choice(n, size=2 * n_windows, replace=False).tolist())
        windows = [(edges[2 * i], edges[2 * i + 1]) for i in range(n_windows)]
        files.append((scores, windows))
    result = score_corpus(files, profile)
    assert result.raw == pytest.approx(brute_force(files, profile))
