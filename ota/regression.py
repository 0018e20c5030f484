"""The regression stop: are updated cars doing worse than the ones not yet updated?

During a wave's soak the engine compares, within one cohort (same model), the vehicles that
installed the release with those still on the old version, on three health indicators:

* alert rate per vehicle-day, by alert type (worse = higher): an exact conditional test. Given
  the total count n, the updated cars' share is Binomial(n, exposure share) when both rates
  are equal; a small upper-tail probability means the updated cars alert more often;
* 12 V resting voltage (worse = lower) and the energy used while parked, as the 12 V charge
  drawn per parked day (worse = higher; ``diagnostics/daily.py`` defines both): a one-sided
  permutation test of the difference of means, stratified by cohort (labels are
  shuffled only within a cohort, and the statistic is the cohort-weighted mean difference),
  with a fixed-seed generator so the verdict is deterministic (replays and back-tests give the
  same answer). Stratifying keeps model differences out of the comparison without needing
  three canary cars of every model: a canary of five cars over three models still decides.

A finding needs both statistical significance (p < alpha) and a practically relevant effect
(``MIN_EFFECT``), so a fleet of thousands does not stop a rollout over a 5 mV difference. For
the parked draw the effect must be at least 0.5 Ah/day (about 20 mA more dark current: with
some 22 Ah usable before a 45 Ah battery no longer starts the car, 1.2 Ah/day lasts 18 days
parked and 1.7 Ah/day 13) and at least 20 % of the cohort's own draw (models with a busy
telematics unit normally draw more).
Too few vehicles on either side gives no verdict rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.01
MIN_VEHICLES = 3  # on each side
PERMUTATIONS = 2000
MIN_EFFECT = {"v12_rest_volts": 0.10, "parked_12v_ah_per_day": 0.5,
              "parked_12v_relative": 0.20, "alert_rate_ratio": 2.0}


@dataclass(frozen=True, slots=True)
class VehicleHealth:
    vin: str
    updated: bool
    days: float  # vehicle-days observed in the soak window
    alerts: dict[str, int] = field(default_factory=dict)  # new alerts by type in the window
    v12_rest_volts: float | None = None  # mean resting voltage in the window
    parked_12v_ah_per_day: float | None = None  # mean 12 V draw while parked, Ah/parked day
    cohort: str = ""  # vehicles are compared only within a cohort (same model)


@dataclass(frozen=True, slots=True)
class Verdict:
    regressed: bool
    findings: list[dict[str, Any]]
    updated: int
    baseline: int
    reason: str = ""


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    total = 0.0
    for i in range(k, n + 1):
        log_term = (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                    + i * math.log(p) + (n - i) * math.log1p(-p))
        total += math.exp(log_term)
    return min(1.0, total)


def permutation_p(worse: np.ndarray, better: np.ndarray, seed: int) -> float:
    """One-sided p-value that mean(worse) > mean(better) arose by chance."""
    return stratified_permutation_p([(worse, better)], seed)


def _weighted_difference(strata: list[tuple[np.ndarray, np.ndarray]]) -> float:
    total = sum(len(w) for w, _ in strata)
    return float(sum(len(w) * (w.mean() - b.mean()) for w, b in strata) / total)


def stratified_permutation_p(strata: list[tuple[np.ndarray, np.ndarray]], seed: int) -> float:
    """One-sided p-value of the cohort-weighted mean difference (worse minus better), with
    labels shuffled within each stratum only."""
    observed = _weighted_difference(strata)
    pooled = [np.concatenate([w, b]) for w, b in strata]
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(PERMUTATIONS):
        shuffled = []
        for values, (worse, _better) in zip(pooled, strata, strict=True):
            rng.shuffle(values)
            shuffled.append((values[:len(worse)], values[len(worse):]))
        if _weighted_difference(shuffled) >= observed - 1e-12:
            count += 1
    return (count + 1) / (PERMUTATIONS + 1)


def _strata(updated: list[VehicleHealth], baseline: list[VehicleHealth], indicator: str,
            sign: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per cohort with cars on both sides: (updated, baseline) values, signed so that
    larger is worse."""
    strata = []
    for cohort in sorted({v.cohort for v in updated}):
        u = [getattr(v, indicator) for v in updated if v.cohort == cohort]
        b = [getattr(v, indicator) for v in baseline if v.cohort == cohort]
        u = [x for x in u if x is not None]
        b = [x for x in b if x is not None]
        if u and b:
            strata.append((sign * np.array(u, dtype=float), sign * np.array(b, dtype=float)))
    return strata


def compare(cohort: list[VehicleHealth], alpha: float = ALPHA, seed: int = 0) -> Verdict:
    updated = [v for v in cohort if v.updated and v.days > 0]
    baseline = [v for v in cohort if not v.updated and v.days > 0]
    if len(updated) < MIN_VEHICLES or len(baseline) < MIN_VEHICLES:
        return Verdict(False, [], len(updated), len(baseline),
                       reason=f"too few vehicles to compare (need {MIN_VEHICLES} each side)")
    findings: list[dict[str, Any]] = []
    days_u = sum(v.days for v in updated)
    days_b = sum(v.days for v in baseline)
    for alert_type in sorted({t for v in cohort for t in v.alerts}):
        k_u = sum(v.alerts.get(alert_type, 0) for v in updated)
        k_b = sum(v.alerts.get(alert_type, 0) for v in baseline)
        rate_u, rate_b = k_u / days_u, k_b / days_b
        p = binomial_upper_tail(k_u, k_u + k_b, days_u / (days_u + days_b))
        ratio = rate_u / rate_b if rate_b > 0 else (math.inf if rate_u > 0 else 1.0)
        if p < alpha and ratio >= MIN_EFFECT["alert_rate_ratio"]:
            findings.append({
                "indicator": "alert_rate", "alert_type": alert_type,
                "updated_per_vehicle_day": round(rate_u, 4),
                "baseline_per_vehicle_day": round(rate_b, 4),
                "p_value": round(p, 6)})
    for indicator, sign in (("v12_rest_volts", -1.0), ("parked_12v_ah_per_day", 1.0)):
        strata = _strata(updated, baseline, indicator, sign)
        n_u = sum(len(w) for w, _ in strata)
        n_b = sum(len(b) for _, b in strata)
        if n_u < MIN_VEHICLES or n_b < MIN_VEHICLES:
            continue
        effect = _weighted_difference(strata)  # in the "worse" direction
        baseline_mean = float(np.mean(np.concatenate([b for _, b in strata]))) * sign
        if indicator == "parked_12v_ah_per_day":
            relevant = (effect >= MIN_EFFECT[indicator] and effect >= MIN_EFFECT[
                "parked_12v_relative"] * max(baseline_mean, 0.0))
        else:
            relevant = effect >= MIN_EFFECT[indicator]
        if not relevant:
            continue
        p = stratified_permutation_p(strata, seed)
        if p < alpha:
            updated_mean = float(np.mean(np.concatenate([w for w, _ in strata]))) * sign
            findings.append({
                "indicator": indicator, "updated_mean": round(updated_mean, 4),
                "baseline_mean": round(baseline_mean, 4),
                "worse_by_within_cohorts": round(effect, 4), "p_value": round(p, 6),
                "vehicles": {"updated": n_u, "baseline": n_b},
                "cohorts": len(strata)})
    return Verdict(bool(findings), findings, len(updated), len(baseline))
