"""Small pieces every detector shares: reading a signal value, the key state, the Student-t bar,
the trend detectors' parameter checks and failure forecast.

They belong to no single detector: a detector that needs one imports it from here, so each
is defined once and no detector depends on another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from diagnostics.signals import ENGINE_RUNNING, ENGINE_SPEED
from vocab.eventtime import DAY_MS

# VSS LowVoltageSystemState (``signals.KEY_STATE``): ACC / ON / START power the car (the DC-DC
# may charge); OFF / LOCK mean parked. UNDEFINED tells us nothing and keeps the last known state.
ON_STATES = frozenset({"ON", "START", "ACC"})
OFF_STATES = frozenset({"OFF", "LOCK"})

# Student-t 97.5 % quantiles for 1..20 degrees of freedom (two-sided 95 %).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)


def t_critical(dof: float, floor: float) -> float:
    """Student-t 97.5 % quantile for (possibly fractional) ``dof``, never below ``floor``."""
    if dof <= 1.0:
        return max(floor, _T975[0])
    if dof >= len(_T975):
        return max(floor, 1.96)
    lo = int(dof)
    frac = dof - lo
    value = _T975[lo - 1] * (1 - frac) + _T975[lo] * frac
    return max(floor, value)


def check_trend_sizes(min_samples: int, max_history: int) -> None:
    """The sample counts a trend detector needs: a slope with its standard error takes three
    samples, and the bounded history must hold as many as the trend waits for."""
    if min_samples < 3:
        raise ValueError("a trend with its standard error needs min_samples >= 3")
    if max_history < min_samples:
        raise ValueError("max_history must hold at least min_samples samples")


def check_window_sizes(min_window_readings: int, max_window_readings: int) -> None:
    """The readings a sampling window closes with: at least one, at most its cap."""
    if not 1 <= min_window_readings <= max_window_readings:
        raise ValueError("need 1 <= min_window_readings <= max_window_readings")


# A trend barely faster than its standard error would put the latest failure centuries away.
_LATEST_DAYS = 3650.0


class FailureForecast(NamedTuple):
    """When a significant trend reaches its failure level (``predict_failure``)."""

    days_left: float
    ts: int  # event-time epoch ms
    evidence: dict[str, float | int]


def predict_failure(now: int, margin: float, rate: float, band: float,
                    days_key: str = "days_to_failure") -> FailureForecast:
    """The failure ``margin`` away from the fitted level at ``rate`` per day towards it (> 0),
    with its band ``rate ± band`` (``band`` = Student-t * stderr, below ``rate`` for a
    significant trend): the days left, the predicted time, and the evidence fields
    ``days_key``, ``predicted_failure_ts`` and its earliest / latest ends (at most ten years)."""
    days_left = margin / rate
    predicted = now + round(days_left * DAY_MS)
    return FailureForecast(days_left, predicted, {
        days_key: round(days_left, 2),
        "predicted_failure_ts": predicted,
        "predicted_failure_earliest_ts": now + round(margin / (rate + band) * DAY_MS),
        "predicted_failure_latest_ts":
            now + round(min(_LATEST_DAYS, margin / (rate - band)) * DAY_MS),
    })


def as_number(value: object) -> float | None:
    """A finite number as float; None for anything else (missing, NaN, text, a boolean)."""
    # bool is an int subclass; a boolean is never a voltage or a temperature.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def engine_running(signals: Mapping[str, object]) -> bool:
    """Whether a message says the combustion engine runs: ``IsRunning``, or, from a car that
    does not report it, an engine speed above 0 (a stop-start pause is not running)."""
    running = signals.get(ENGINE_RUNNING)
    if isinstance(running, bool):
        return running
    rpm = as_number(signals.get(ENGINE_SPEED))
    return rpm is not None and rpm > 0.0
