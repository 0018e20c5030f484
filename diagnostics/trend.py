"""The trend estimator the detectors share: exponentially weighted least squares.

Recent samples count most (weights halve every ``half_life_days`` back in time), which lets a
trend follow a fault that accelerates while the slope's standard error still says how sure
the detector may be before it raises an alert.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def weighted_trend(t_days: npt.NDArray[np.float64], values: npt.NDArray[np.float64],
                   half_life_days: float) -> tuple[float, float, float, float]:
    """Weighted least squares ``value = level + slope * t`` (t in days, 0 = latest sample).

    Returns (slope, level, slope standard error, effective degrees of freedom). The weights
    are relative, not inverse variances, so the noise variance comes from the residuals and
    the slope variance is the sandwich ``s² Σw²(t-t̄)² / Sxx²``. All samples at one instant
    give no slope: (0, mean, inf, 0.5).
    """
    w = np.power(0.5, -t_days / half_life_days)
    sw = float(np.sum(w))
    t_mean = float(np.sum(w * t_days)) / sw
    v_mean = float(np.sum(w * values)) / sw
    dt = t_days - t_mean
    sxx = float(np.sum(w * dt * dt))
    if sxx <= 0.0:
        return 0.0, v_mean, math.inf, 0.5
    slope = float(np.sum(w * dt * (values - v_mean))) / sxx
    level = v_mean - slope * t_mean
    residuals = values - (level + slope * t_days)
    n_eff = sw * sw / float(np.sum(w * w))  # Kish effective sample size
    dof = max(n_eff - 2.0, 0.5)
    noise_var = float(np.sum(w * residuals * residuals)) / sw * n_eff / dof
    slope_var = noise_var * float(np.sum(w * w * dt * dt)) / (sxx * sxx)
    return slope, level, math.sqrt(slope_var), dof
