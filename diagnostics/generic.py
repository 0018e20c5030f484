"""The generic detector: an online anomaly score in [0, 1] for any numeric signal.

Three questions are asked of every value, each answered in a way that adapts to the signal
itself, so one set of parameters serves signals of any unit, scale or noise level:

1. **Is it beyond anything this signal has done?** (``range``) The value is compared with the
   lowest and highest values seen so far; how far it lies outside them, as a fraction of that
   range, is the score (``1 - exp(-range_gain * excess)``). A new extreme by 1.4 % of the
   range scores 0.5.
2. **Is the recent shape new?** (``shape``) Every ``downsample`` values become one point (the
   one farthest from the recent mean, so a spike survives), normalised into the seen range and
   flattened to the running median when within ``chomp`` of it (ordinary noise is not shape).
   The last ``window`` points are matched against a small memory of ``prototypes`` shapes
   (mean absolute distance; the nearest learns the new shape, or a new prototype replaces the
   least recently used one when none is within ``vigilance``). The distance is then judged
   against its own history: its short average against its long-run mean and spread, as a
   Gaussian tail probability on a log scale (``-log10(tail) / tail_decades``). A signal whose
   shapes are always a little new (noise) thus learns that this is normal.
3. **Is it unusual for this time of day?** (``daily``) A 24-bin profile of the signal by hour
   of the event-time day is learned; the residual from the profile is scored by its distance
   from its running mean in standard deviations, again judged as a tail probability against
   its own history (a daily cycle is normal, a night that looks like a day is not).
4. **Has its level moved?** (``shift``) A fast moving average of that same residual (about
   ``1 / shift_rate`` shape points) is compared with its slow mean; the gap, judged against
   the gap's own running mean and spread as a Gaussian tail probability (``shift_decades``),
   catches a level change that stays inside the usual range and keeps the usual shape: a day
   whose peak comes out lower, a baseline that steps down. Judging the gap against its own
   spread (not the residual's) keeps an autocorrelated signal from alarming on ordinary
   drifts.
5. **Is it stuck?** (``stuck``) A run of identical values longer than any the signal has had
   before (and than ``stuck_min``) scores by how far it exceeds that: 0.5 at one and a half
   times the longest run, 1 at twice. A reported run becomes the longest known, so a signal
   that stays stuck is reported again only when its run doubles. A signal constant since its
   first value is constant, not stuck.

The score is the largest of these. After a score of at least ``rest_at`` the detector
rests for ``rest`` values (it scores 0 while it learns what follows): one event is one alert,
not a burst. The first ``warmup`` values are learned and score 0.

Streaming constraints: score before learning, event time only (the timestamp's hour of day;
memory counts values, so a signal sampled irregularly ages by its own samples), deterministic,
and the state is a JSON-native dict the caller owns (≤ 4 KiB serialised): scoring continues
identically after ``json.loads(json.dumps(state))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from operator import sub
from typing import Any, ClassVar

DAY_MS = 86_400_000
_SQRT2 = math.sqrt(2.0)


def _tail_score(z: float, decades: float) -> float:
    """A one-sided Gaussian tail probability of ``z`` on a log scale, in [0, 1]."""
    if z <= 0.0:
        return 0.0
    tail = 0.5 * math.erfc(z / _SQRT2)
    return min(1.0, -math.log10(max(tail, 1e-300)) / decades)


@dataclass(frozen=True, slots=True)
class GenericScorer:
    """Online anomaly score for one numeric signal (state per asset and signal)."""

    version: ClassVar[str] = "1.1.0"

    warmup: int = 150  # values learned before scoring
    range_gain: float = 50.0  # range score per fraction of the seen range exceeded
    downsample: int = 3  # values per shape point
    window: int = 8  # shape points compared
    prototypes: int = 24  # shapes remembered
    vigilance: float = 0.04  # mean absolute distance (in range units) still "the same shape"
    learn_rate: float = 0.1  # how far the nearest prototype moves towards a matching shape
    chomp: float = 0.075  # points this close to the running median are the median
    median_step: float = 0.01  # step of the running median (range units)
    memory: int = 1000  # values (shape) over which a distance's usual level is learned
    daily_memory: int = 5000  # values over which the residual's usual level is learned
    daily_bins: int = 24  # bins of the time-of-day profile
    daily_rate: float = 0.05  # learning rate of a profile bin
    short: float = 0.3  # weight of the newest value in the short averages
    tail_decades: float = 5.0  # a tail probability of 1e-5 scores 1
    rest: int = 100  # values scored 0 after an alert-level score
    rest_at: float = 0.5
    shift_rate: float = 0.1  # weight of the newest point in the residual's fast average
    shift_memory: int = 2000  # shape points over which the level gap's usual spread is learned
    shift_decades: float = 10.0  # a level gap with tail probability 1e-10 scores 1
    stuck_min: int = 30  # identical values in a row that never count as stuck (0: off)

    def __post_init__(self) -> None:
        if not (self.warmup >= 0 and self.range_gain > 0 and self.downsample >= 1
                and self.window >= 2 and self.prototypes >= 1 and self.vigilance > 0
                and 0 < self.learn_rate <= 1 and self.chomp >= 0 and self.median_step > 0
                and self.memory >= 1 and self.daily_memory >= 1 and self.daily_bins >= 1
                and 0 < self.daily_rate <= 1 and 0 < self.short <= 1
                and self.tail_decades > 0 and self.rest >= 0 and 0 < self.rest_at <= 1
                and 0 < self.shift_rate <= 1 and self.shift_memory >= 1
                and self.shift_decades > 0 and self.stuck_min >= 0):
            raise ValueError("GenericScorer parameters out of range")

    def new_state(self) -> dict[str, Any]:
        return {
            "n": 0, "lo": 0.0, "hi": 0.0, "rest": 0,
            # shape: downsampling buffer, its moving mean, running median, window, prototypes
            # (rounded to 1e-4 of the range: keeps the state small) and when each last matched
            "buf": [], "avg": None, "med": None, "win": [], "P": [], "used": [],
            "k": 0, "dm": 0.0, "dv": 0.0, "ds": 0.0,  # shape distance: mean, var, short avg
            "prof": [None] * self.daily_bins,  # time-of-day profile
            "rm": 0.0, "rv": 0.0,  # residual's mean and variance
            "zm": 0.0, "zv": 0.0, "zs": 0.0,  # residual z: mean, var, short average
            "ff": 0.0, "fm": 0.0, "fv": 0.0,  # residual's fast average; level gap mean, var
            "last": 0.0, "run": 0, "maxrun": 0,  # identical values: current and longest run
        }

    def score_one(self, state: dict[str, Any], ts_ms: float, value: float) -> float:
        """Score ``value`` (at event time ``ts_ms``) then learn it; mutates ``state``."""
        if not math.isfinite(value) or not math.isfinite(ts_ms):
            raise ValueError(f"value and timestamp must be finite numbers, got "
                             f"({ts_ms!r}, {value!r})")
        value = float(value)
        n = state["n"]
        state["n"] = n + 1
        if n == 0:
            state["lo"] = state["hi"] = value
        lo, hi = state["lo"], state["hi"]
        score = 0.0
        if value > hi:
            score = 1.0 - math.exp(-self.range_gain * (value - hi) / (hi - lo)) \
                if hi > lo else 0.0
            state["hi"] = hi = value
        elif value < lo:
            score = 1.0 - math.exp(-self.range_gain * (lo - value) / (hi - lo)) \
                if hi > lo else 0.0
            state["lo"] = lo = value
        if self.stuck_min:
            score = max(score, self._stuck(state, n, value))
        buf = state["buf"]
        buf.append((value - lo) / (hi - lo) if hi > lo else 0.5)
        if len(buf) >= self.downsample:
            point = self._downsample(state, buf)
            score = max(score, self._shape(state, n, point),
                        self._daily(state, n, ts_ms, value, hi - lo))
        if n < self.warmup:
            return 0.0
        if state["rest"] > 0:
            state["rest"] -= 1
            return 0.0
        if score >= self.rest_at and self.rest:
            state["rest"] = self.rest
        return score

    # ------------------------------------------------------------------ stuck
    def _stuck(self, state: dict[str, Any], n: int, value: float) -> float:
        run, longest = int(state["run"]), int(state["maxrun"])
        if n and value == state["last"]:
            run += 1
        else:
            longest = max(longest, run)
            run = 1
        usual = max(longest, self.stuck_min)
        # run <= n: a run that began with the first value is a constant signal, not a stuck one
        score = min(1.0, (run - usual) / usual) if usual < run <= n else 0.0
        if score >= 1.0:
            longest = run
        state["run"], state["maxrun"], state["last"] = run, longest, value
        return score

    # ------------------------------------------------------------------ time of day
    def _daily(self, state: dict[str, Any], n: int, ts_ms: float, value: float,
               span: float) -> float:
        prof = state["prof"]
        b = int((ts_ms % DAY_MS) // (DAY_MS / self.daily_bins)) % self.daily_bins
        base = value if prof[b] is None else float(prof[b])
        resid = value - base
        prof[b] = base + self.daily_rate * resid
        alpha = max(1.0 / self.daily_memory, 1.0 / (n + 1))
        rm, rv = float(state["rm"]), float(state["rv"])
        if n == 0:
            rm = resid
        floor = max(1e-9 * max(1.0, abs(rm)), 1e-6 * span)
        z = min(abs(resid - rm) / max(math.sqrt(rv), floor), 50.0) if n else 0.0
        d = resid - rm
        state["rm"], state["rv"] = rm + alpha * d, (1 - alpha) * (rv + alpha * d * d)
        zm, zv = float(state["zm"]), float(state["zv"])
        zs = float(state["zs"]) + self.short * (z - float(state["zs"]))
        score = _tail_score((zs - zm) / max(math.sqrt(zv), 1e-3), self.tail_decades) \
            if n > 10 else 0.0
        alpha = max(1.0 / self.memory, 1.0 / (n + 1))
        d = z - zm
        state["zm"], state["zv"], state["zs"] = (zm + alpha * d,
                                                 (1 - alpha) * (zv + alpha * d * d), zs)
        return max(score, self._shift(state, n, resid, rm, floor))

    def _shift(self, state: dict[str, Any], n: int, resid: float, slow: float,
               floor: float) -> float:
        fast = float(state["ff"])
        fast = resid if n == 0 else fast + self.shift_rate * (resid - fast)
        gap = fast - slow
        fm, fv = float(state["fm"]), float(state["fv"])
        score = _tail_score(abs(gap - fm) / max(math.sqrt(fv), floor), self.shift_decades) \
            if n > 10 else 0.0
        alpha = max(1.0 / self.shift_memory, 1.0 / (n + 1))
        d = gap - fm
        state["ff"], state["fm"], state["fv"] = (fast, fm + alpha * d,
                                                 (1 - alpha) * (fv + alpha * d * d))
        return score

    # ------------------------------------------------------------------ shape
    def _downsample(self, state: dict[str, Any], buf: list[float]) -> float:
        mean = sum(buf) / len(buf)
        top, bottom = max(buf), min(buf)
        del buf[:]
        avg = mean if state["avg"] is None else (float(state["avg"]) + mean) / 2
        state["avg"] = avg
        point = top if abs(top - avg) >= abs(bottom - avg) else bottom
        med = point if state["med"] is None else float(state["med"])
        med += self.median_step * ((point > med) - (point < med))
        state["med"] = med
        return med if abs(point - med) < self.chomp else point

    def _shape(self, state: dict[str, Any], n: int, point: float) -> float:
        win = state["win"]
        win.append(point)
        if len(win) > self.window:
            del win[0]
        if len(win) < self.window:
            return 0.0
        protos, used = state["P"], state["used"]
        if not protos:
            protos.append([round(p, 4) for p in win])
            used.append(n)
            return 0.0
        dists = [sum(map(abs, map(sub, proto, win))) for proto in protos]
        best = min(dists)
        nearest = dists.index(best)  # the first of equals, as a loop would pick
        best /= self.window
        if best > self.vigilance:
            if len(protos) >= self.prototypes:
                oldest = min(range(len(used)), key=used.__getitem__)
                protos[oldest], used[oldest] = [round(p, 4) for p in win], n
            else:
                protos.append([round(p, 4) for p in win])
                used.append(n)
        else:
            rate = self.learn_rate
            protos[nearest] = [round(a + rate * (b - a), 4)
                               for a, b in zip(protos[nearest], win, strict=True)]
            used[nearest] = n
        k = int(state["k"])
        state["k"] = k + 1
        dm, dv = float(state["dm"]), float(state["dv"])
        ds = float(state["ds"]) + self.short * (best - float(state["ds"])) if k else best
        score = _tail_score((ds - dm) / max(math.sqrt(dv), 1e-3), self.tail_decades) \
            if k > 10 else 0.0
        alpha = max(1.0 / self.memory, 1.0 / (k + 1))
        d = best - dm
        state["dm"], state["dv"], state["ds"] = (dm + alpha * d,
                                                 (1 - alpha) * (dv + alpha * d * d), ds)
        return score


def score_series(pairs: Iterable[tuple[float, float]],
                 scorer: GenericScorer | None = None) -> list[float]:
    """Anomaly scores in [0, 1] for (epoch ms, value) pairs, in the order given."""
    scorer = scorer or GenericScorer()
    state = scorer.new_state()
    return [scorer.score_one(state, ts, value) for ts, value in pairs]
