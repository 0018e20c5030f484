"""The regression stop: are updated cars doing worse than the ones not yet updated?

During a wave's soak the engine compares, within one cohort (same model), the vehicles that
installed the release with those still on the old version, on three health indicators:

* alert rate per vehicle-day, by alert type (worse = higher): an exact conditional test. Given
  the total count n, the updated cars' share is Binomial(n, exposure share) when both rates
  are equal; a small upper-tail probability means the updated cars alert more often;
* 12 V resting voltage (worse = lower) and energy drawn while parked per day (worse = higher):
  a one-sided permutation test of the difference of means, with a fixed-seed generator so the
  verdict is deterministic (replays and back-tests give the same answer).

A finding needs both statistical significance (p < alpha) and a practically relevant effect
(``MIN_EFFECT``), so a fleet of thousands does not stop a rollout over a 5 mV difference.
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
MIN_EFFECT = {"v12_rest_volts": 0.10, "parked_energy_kwh_per_day": 0.20, "alert_rate_ratio": 2.0}


@dataclass(frozen=True, slots=True)
class VehicleHealth:
    vin: str
    updated: bool
    days: float  # vehicle-days observed in the soak window
    alerts: dict[str, int] = field(default_factory=dict)  # new alerts by type in the window
    v12_rest_volts: float | None = None  # mean resting voltage in the window
    parked_energy_kwh_per_day: float | None = None
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
    observed = worse.mean() - better.mean()
    pooled = np.concatenate([worse, better])
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(PERMUTATIONS):
        rng.shuffle(pooled)
        if pooled[:len(worse)].mean() - pooled[len(worse):].mean() >= observed:
            count += 1
    return (count + 1) / (PERMUTATIONS + 1)


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
    for indicator, sign in (("v12_rest_volts", -1.0), ("parked_energy_kwh_per_day", 1.0)):
        u = np.array([getattr(v, indicator) for v in updated
                      if getattr(v, indicator) is not None], dtype=float)
        b = np.array([getattr(v, indicator) for v in baseline
                      if getattr(v, indicator) is not None], dtype=float)
        if len(u) < MIN_VEHICLES or len(b) < MIN_VEHICLES:
            continue
        effect = sign * (u.mean() - b.mean())
        if indicator == "parked_energy_kwh_per_day":
            relevant = b.mean() > 0 and effect / b.mean() >= MIN_EFFECT[indicator]
        else:
            relevant = effect >= MIN_EFFECT[indicator]
        if not relevant:
            continue
        p = permutation_p(sign * u, sign * b, seed)
        if p < alpha:
            findings.append({
                "indicator": indicator, "updated_mean": round(float(u.mean()), 4),
                "baseline_mean": round(float(b.mean()), 4), "p_value": round(p, 6),
                "vehicles": {"updated": len(u), "baseline": len(b)}})
    return Verdict(bool(findings), findings, len(updated), len(baseline))
