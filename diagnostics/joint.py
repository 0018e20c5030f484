"""Joint anomaly scores for signals that explain each other (the generic detector, in context).

A coolant temperature of 70 °C is ordinary on a motorway and alarming in a parked car on a
cold morning; a pack at -20 °C is alarming in summer and ordinary in a cold snap. Scored
alone, each signal is judged only against its own past. Scored jointly, each signal is first
*predicted from the others* by an online linear model (recursive least squares with a
forgetting factor, so the relation may drift slowly), and the generic detector
(``generic.py``) scores the prediction's *residual*: a value the context explains leaves an
ordinary residual and scores low even when it is far from the signal's usual range; a value
normal alone but wrong for its context leaves an unusual residual and scores high.

The joint score of a row is the largest of the per-signal residual scores. With one signal
there is no context and the score is the generic detector's on the value itself. The model
predicts before it learns (score first), and the state is JSON-native like every detector's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from diagnostics.generic import GenericScorer


@dataclass(frozen=True, slots=True)
class JointScorer:
    """Scores rows of ``n_signals`` values jointly (state per asset and group of signals)."""

    n_signals: int
    forget: float = 0.999  # RLS forgetting factor per row (memory ~ 1 / (1 - forget) rows)
    prior: float = 1e4  # initial uncertainty of the model's coefficients
    settle: int = 50  # rows the models learn before their residuals are scored
    scorer: GenericScorer = field(default_factory=GenericScorer)

    def __post_init__(self) -> None:
        if (self.n_signals < 1 or not 0 < self.forget <= 1 or self.prior <= 0
                or self.settle < 0):
            raise ValueError("need n_signals >= 1, 0 < forget <= 1, prior > 0, settle >= 0")

    def new_state(self) -> dict[str, Any]:
        k = self.n_signals  # inputs per model: the other signals and an intercept
        return {
            "mean": [0.0] * self.n_signals, "n": 0,
            "models": [{"w": [0.0] * k,
                        "P": [[self.prior if i == j else 0.0 for j in range(k)]
                              for i in range(k)],
                        "s": self.scorer.new_state()} for _ in range(self.n_signals)]
            if self.n_signals > 1 else [{"s": self.scorer.new_state()}],
        }

    def score_one(self, state: dict[str, Any], ts_ms: float, values: Sequence[float]) -> float:
        """Score one row of values (in the signals' order), then learn it."""
        if len(values) != self.n_signals:
            raise ValueError(f"expected {self.n_signals} values, got {len(values)}")
        xs = [float(v) for v in values]
        if not all(math.isfinite(v) for v in xs) or not math.isfinite(ts_ms):
            raise ValueError(f"values and timestamp must be finite numbers, got "
                             f"({ts_ms!r}, {list(values)!r})")
        if self.n_signals == 1:
            return self.scorer.score_one(state["models"][0]["s"], ts_ms, xs[0])
        # Centre the inputs on their running means: keeps RLS well conditioned for signals
        # of very different magnitudes (watts next to degrees).
        n = int(state["n"])
        means = state["mean"]
        if n == 0:
            means[:] = xs
        centred = [x - m for x, m in zip(xs, means, strict=True)]
        score = 0.0
        for j, model in enumerate(state["models"]):
            inputs = [c for i, c in enumerate(centred) if i != j] + [1.0]
            w = model["w"]
            predicted = sum(a * b for a, b in zip(w, inputs, strict=True))
            residual = centred[j] - predicted
            if n >= self.settle:  # an unsettled model's residuals would set the scale
                score = max(score, self.scorer.score_one(model["s"], ts_ms, residual))
            self._learn(model, inputs, residual)
        alpha = max(1.0 - self.forget, 1.0 / (n + 1))
        state["mean"] = [m + alpha * (x - m) for x, m in zip(xs, means, strict=True)]
        state["n"] = n + 1
        return score

    def _learn(self, model: dict[str, Any], x: list[float], error: float) -> None:
        p = model["P"]
        px = [sum(a * b for a, b in zip(row, x, strict=True)) for row in p]
        denom = self.forget + sum(a * b for a, b in zip(x, px, strict=True))
        gain = [v / denom for v in px]
        model["w"] = [w + g * error for w, g in zip(model["w"], gain, strict=True)]
        model["P"] = [[(p[i][j] - gain[i] * px[j]) / self.forget for j in range(len(x))]
                      for i in range(len(x))]
