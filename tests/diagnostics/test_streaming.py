"""The generic streaming anomaly scorer (diagnostics.streaming), without brokers."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.streaming import StreamingScorer, score_series

T0 = 1_767_225_600_000
MINUTE = 60_000


def noisy(n: int, level: float = 12.6, sd: float = 0.05, seed: int = 1,
          start: int = T0) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    return [(start + i * MINUTE, rng.gauss(level, sd)) for i in range(n)]


def test_abstains_during_warmup_then_flags_a_level_shift() -> None:
    scorer = StreamingScorer(warmup=30)
    state = scorer.new_state()
    baseline = noisy(300)
    scores = [scorer.score_one(state, ts, v) for ts, v in baseline]
    assert scores[:30] == [0.0] * 30
    shifted = baseline[-1][0] + MINUTE
    assert scorer.score_one(state, shifted, 12.6 + 10 * 0.05) > 0.99


def test_plain_noise_rarely_scores_high() -> None:
    scores = score_series(noisy(5000, seed=7))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(s > 0.9 for s in scores) / len(scores) < 0.002


def test_a_lasting_change_is_learned_and_a_spike_does_not_hide_the_next() -> None:
    scorer = StreamingScorer(half_life_s=3600)
    state = scorer.new_state()
    for ts, v in noisy(300):
        scorer.score_one(state, ts, v)
    t = T0 + 300 * MINUTE
    assert scorer.score_one(state, t, 50.0) > 0.99  # a spike...
    assert scorer.score_one(state, t + MINUTE, 50.0) > 0.99  # ...does not hide the next one
    # A new level held for many half-lives becomes normal again.
    late = [scorer.score_one(state, ts, v) for ts, v in noisy(600, level=13.5, seed=3,
                                                                start=t + 2 * MINUTE)]
    assert max(late[-100:]) < 0.5


def test_a_constant_signal_has_a_scale_and_a_small_step_stands_out() -> None:
    pairs = [(T0 + i * MINUTE, 80.0) for i in range(100)] + [(T0 + 100 * MINUTE, 81.0)]
    scores = score_series(pairs)
    assert max(scores[:100]) == 0.0
    assert scores[-1] > 0.99


@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(-1e6, 1e6)), max_size=80),
       st.integers(0, 80))
def test_scores_stay_in_range_and_survive_a_restart(steps: list[tuple[int, float]],
                                                    split: int) -> None:
    """Same scores whether the stream is processed in one go or split, with the state
    JSON-round-tripped at the split (as the worker's changelogged table does)."""
    scorer = StreamingScorer(warmup=5)
    pairs = [(T0 + dt, v) for dt, v in steps]
    whole = score_series(pairs, scorer)
    assert all(0.0 <= s <= 1.0 for s in whole)
    state = scorer.new_state()
    first = [scorer.score_one(state, ts, v) for ts, v in pairs[:split]]
    state = json.loads(json.dumps(state))
    second = [scorer.score_one(state, ts, v) for ts, v in pairs[split:]]
    assert first + second == whole


def test_bad_input_and_parameters_are_refused() -> None:
    scorer = StreamingScorer()
    with pytest.raises(ValueError, match="finite"):
        scorer.score_one(scorer.new_state(), T0, float("nan"))
    with pytest.raises(ValueError, match="clip_z > free_z"):
        StreamingScorer(free_z=3, clip_z=2)


def test_the_readme_example_runs_as_written() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"<!-- streaming-example -->\n```python\n(.*?)```", readme, re.S)
    assert block, "README lost its streaming example"
    namespace: dict[str, object] = {}
    exec(block.group(1), namespace)  # noqa: S102 - our own README
    scores = namespace["scores"]
    assert isinstance(scores, list)
    assert len(scores) == 241
    assert scores[-1] > 0.99
    assert max(scores[:-1]) < 0.9
