"""The generic detector (diagnostics.generic): streaming, restartable, small, and useful."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.generic import GenericScorer, score_series

T0 = 1_767_225_600_000
FIVE_MIN = 300_000


def noisy(n: int, seed: int = 1, level: float = 50.0, sd: float = 2.0,
          daily: float = 0.0) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    return [(T0 + i * FIVE_MIN,
             level + daily * math.sin(2 * math.pi * i / 288) + rng.gauss(0.0, sd))
            for i in range(n)]


def test_scores_are_in_range_and_zero_during_warmup() -> None:
    scorer = GenericScorer()
    scores = score_series(noisy(3000), scorer)
    assert scores[:scorer.warmup] == [0.0] * scorer.warmup
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_noise_rarely_alerts_and_a_spike_far_out_of_range_does() -> None:
    series = noisy(4000, seed=3, daily=10.0)
    scores = score_series(series)
    assert sum(s >= 0.5 for s in scores[1000:]) <= 3  # three days of a daily cycle learned
    spiked = [*series, (series[-1][0] + FIVE_MIN, 120.0)]
    assert score_series(spiked)[-1] > 0.99


def test_a_day_shaped_like_night_is_noticed_though_every_value_is_in_range() -> None:
    series = noisy(288 * 12, seed=4, sd=0.5, daily=10.0)
    # the last day holds its night-time level all day: every value is ordinary alone
    t_last = series[-1][0]
    flat = [(t_last + (i + 1) * FIVE_MIN, 40.0 + random.Random(i).gauss(0, 0.5))
            for i in range(288)]
    scores = score_series([*series, *flat])
    assert max(scores[len(series):]) >= 0.5
    assert max(scores[288 * 6:len(series)]) < 0.5


def test_a_level_step_inside_the_range_is_noticed_within_hours() -> None:
    series = noisy(288 * 12, seed=4, sd=0.5, daily=10.0)
    # the same daily cycle, 3 lower (six noise deviations): inside the range, the usual shape
    step = [(series[-1][0] + (i + 1) * FIVE_MIN,
             47.0 + 10.0 * math.sin(2 * math.pi * (len(series) + i) / 288)
             + random.Random(i).gauss(0, 0.5)) for i in range(60)]
    with_shift = score_series([*series, *step])
    assert max(with_shift[len(series):]) >= 0.5
    assert max(with_shift[288 * 6:len(series)]) < 0.5
    # the level-change score is what notices it this soon: effectively off, nothing does
    without = score_series([*series, *step], GenericScorer(shift_decades=1e9))
    assert max(without[len(series):]) < 0.5


def test_a_stuck_signal_is_noticed_and_a_constant_one_is_not() -> None:
    series = noisy(2000, seed=9)
    stuck = [(series[-1][0] + (i + 1) * FIVE_MIN, series[-1][1]) for i in range(59)]
    scores = score_series([*series, *stuck], GenericScorer(rest=0))
    # the run is 60 identical values: twice the shortest run that may count as stuck
    assert scores[-1] == 1.0
    assert max(scores[len(series):-16]) < 0.5  # up to 1.5 times: not yet
    off = score_series([*series, *stuck], GenericScorer(rest=0, stuck_min=0))
    assert max(off[len(series):]) < 0.9
    constant = [(T0 + i * FIVE_MIN, 7.0) for i in range(3000)]
    assert max(score_series(constant)) == 0.0


def test_rests_after_an_alert() -> None:
    scorer = GenericScorer(rest=20)
    state = scorer.new_state()
    for ts, v in noisy(1000, seed=5):
        scorer.score_one(state, ts, v)
    t = T0 + 1000 * FIVE_MIN
    assert scorer.score_one(state, t, 500.0) > 0.99
    assert [scorer.score_one(state, t + i, 900.0 + i) for i in range(1, 21)] == [0.0] * 20


def test_state_stays_under_four_kib_of_json() -> None:
    scorer = GenericScorer()
    state = scorer.new_state()
    rng = random.Random(6)
    largest = 0
    for i in range(20000):
        scorer.score_one(state, T0 + i * 60_000, rng.lognormvariate(0, 2) * (1 + i % 7))
        if i % 500 == 0:
            largest = max(largest, len(json.dumps(state, separators=(",", ":"))))
    assert largest <= 4096


def test_rejects_non_finite_input_and_bad_parameters() -> None:
    scorer = GenericScorer()
    with pytest.raises(ValueError, match="finite"):
        scorer.score_one(scorer.new_state(), T0, math.nan)
    with pytest.raises(ValueError, match="out of range"):
        GenericScorer(window=1)


values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3_600_000), values), min_size=1, max_size=400),
       st.integers(0, 400), st.integers(0, 40))
def test_scoring_continues_identically_after_a_json_round_trip(
        steps: list[tuple[int, float]], cut: int, warmup: int) -> None:
    scorer = GenericScorer(warmup=warmup, rest=5)
    ts, pairs = T0, []
    for gap, value in steps:
        ts += gap
        pairs.append((ts, value))
    straight = score_series(pairs, scorer)
    state = scorer.new_state()
    cut = min(cut, len(pairs))
    resumed = [scorer.score_one(state, t, v) for t, v in pairs[:cut]]
    state = json.loads(json.dumps(state))
    resumed += [scorer.score_one(state, t, v) for t, v in pairs[cut:]]
    assert resumed == straight
    assert all(0.0 <= s <= 1.0 for s in straight)
