"""A generic streaming anomaly score for any numeric signal: learns online, needs no labels.

For signals no specific detector understands, the question is only "is this value unusual
for this signal on this asset, given what it has done lately?". The scorer keeps an
exponentially weighted mean and variance whose memory is a half-life in *event time* (so a
signal sampled every second and one sampled every hour forget at the same pace), scores each
new value against the model *before* learning from it, and maps the distance to a score:

    z     = |value - mean| / max(std, min_std, rel_std * |mean|)
    score = 1 - exp(-max(0, z - free_z)^2 / 2)          in [0, 1]

Up to ``free_z`` standard deviations score 0 (ordinary noise); 3 sigma scores ~0.39, 4 sigma
~0.86, 5 sigma ~0.99. For its first ``warmup`` values the scorer abstains (score 0.0) while
the model forms. A value far out of line is learned clipped to ``clip_z`` standard deviations,
so one spike does not widen the model enough to hide the next one; a lasting level change is
still learned within a few half-lives (the score falls back as the model follows).

State is a small JSON dict the caller owns (like every detector here, see ``base.py``): the
same values give the same scores whether processed in one go or across restarts.

This scorer answers one narrow question (how many standard deviations from a recent mean)
and is what ``signal_anomaly`` runs behind its persistence rule. The generic *detector*, the
one measured on public benchmarks, is ``diagnostics/generic.py``.

Usage on a plain list of (epoch milliseconds, value) pairs::

    from diagnostics.streaming import score_series
    scores = score_series(pairs)              # one score in [0, 1] per pair
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vocab.eventtime import SECOND_MS


@dataclass(frozen=True, slots=True)
class StreamingScorer:
    """Online anomaly scorer for one numeric signal (state per asset and signal)."""

    half_life_s: float = 6 * 3600.0  # event time after which an observation weighs half
    warmup: int = 30  # values learned before scoring (abstains with 0.0 until then)
    free_z: float = 2.0  # deviations up to this many standard deviations score 0
    clip_z: float = 6.0  # learn outliers as if they were this far out, no farther
    min_std: float = 1e-6  # absolute floor of the standard deviation
    rel_std: float = 1e-3  # floor relative to |mean| (a constant signal still has a scale)

    def __post_init__(self) -> None:
        if not (self.half_life_s > 0 and self.warmup >= 1 and self.free_z >= 0
                and self.clip_z > self.free_z and self.min_std > 0 and self.rel_std >= 0):
            raise ValueError("need half_life_s > 0, warmup >= 1, free_z >= 0, "
                             "clip_z > free_z, min_std > 0 and rel_std >= 0")

    def new_state(self) -> dict[str, Any]:
        return {"n": 0, "mean": 0.0, "var": 0.0, "ts": None}

    def scale(self, state: dict[str, Any]) -> float:
        mean = float(state["mean"])
        return max(math.sqrt(float(state["var"])), self.min_std, self.rel_std * abs(mean))

    def score_one(self, state: dict[str, Any], ts_ms: float, value: float) -> float:
        """Score ``value`` against the model, then learn it; mutates ``state``."""
        if not math.isfinite(value) or not math.isfinite(ts_ms):
            raise ValueError(f"value and timestamp must be finite numbers, got "
                             f"({ts_ms!r}, {value!r})")
        n, mean = int(state["n"]), float(state["mean"])
        scale = self.scale(state)
        z = abs(value - mean) / scale if n else 0.0
        score = 0.0
        if n >= self.warmup:
            excess = max(0.0, z - self.free_z)
            score = 1.0 - math.exp(-excess * excess / 2.0)
        # Learn: event-time decay, but never less than the running average's weight while the
        # model is young (the first values are averaged, not decayed from zero).
        last = state["ts"]
        dt_s = 0.0 if last is None else max(0.0, (ts_ms - float(last)) / SECOND_MS)
        alpha = max(1.0 - 0.5 ** (dt_s / self.half_life_s), 1.0 / (n + 1))
        learned = value
        if n >= self.warmup and z > self.clip_z:
            learned = mean + math.copysign(self.clip_z * scale, value - mean)
        delta = learned - mean
        state["mean"] = mean + alpha * delta
        state["var"] = (1.0 - alpha) * (float(state["var"]) + alpha * delta * delta)
        state["n"] = n + 1
        state["ts"] = ts_ms if last is None else max(float(last), ts_ms)
        return score


def score_series(
    pairs: Iterable[tuple[float, float]], scorer: StreamingScorer | None = None
) -> list[float]:
    """Anomaly scores in [0, 1] for (epoch ms, value) pairs, in the order given."""
    scorer = scorer or StreamingScorer()
    state = scorer.new_state()
    return [scorer.score_one(state, ts, value) for ts, value in pairs]
