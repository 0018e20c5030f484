"""The weak 12 V battery detector on synthetic series (no brokers)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from diagnostics import alerting
from diagnostics.base import Assessment
from diagnostics.battery12v import WeakBattery12V
from tests.unit.battery_series import (
    DAY_MS,
    START_MS,
    Sample,
    cold_snap,
    daily_cycle,
    failure_day,
    series,
    weakening,
)


def run(samples: Iterable[Sample], detector: WeakBattery12V | None = None
        ) -> tuple[list[tuple[int, Assessment]], list[dict[str, Any]], dict[str, Any]]:
    detector = detector or WeakBattery12V()
    state = detector.new_state()
    alert_state = alerting.new_alert_state()
    assessments: list[tuple[int, Assessment]] = []
    alerts: list[dict[str, Any]] = []
    for ts, signals in samples:
        _, assessment = detector.update(state, ts, signals)
        if assessment is None:
            continue
        assessments.append((ts, assessment))
        alert = alerting.apply(alert_state, asset_kind="vehicle", asset_id="V", alert_type="t",
                               detector=detector.name, detector_version=detector.version,
                               assessment=assessment, ts_ms=ts)
        if alert:
            alerts.append(alert)
    return assessments, alerts, state


@pytest.mark.parametrize("rate", [0.02, 0.04, 0.08])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weakening_battery_is_flagged_days_before_it_fails(rate: float, seed: int) -> None:
    v0 = 12.65
    fail_ts = START_MS + int(failure_day(v0, rate) * DAY_MS)
    days = int(failure_day(v0, rate)) + 2
    _, alerts, _ = run(series(days, weakening(v0, rate), seed=seed))
    opened = [a for a in alerts if a["status"] == "open"]
    assert opened, "no alert before failure"
    first = opened[0]
    lead_days = (fail_ts - first["first_seen"]) / DAY_MS
    assert lead_days >= 2, f"alert only {lead_days:.1f} days before failure"
    assert len({a["id"] for a in alerts}) == 1, "the alert flapped"
    # The first estimate is rough (the trend window still holds the flat days before the
    # onset); as evidence accumulates the prediction converges on the truth.
    assert first["predicted_failure_ts"] is not None
    late = [a for a in opened if fail_ts - a["last_seen"] <= 5 * DAY_MS]
    assert late, "the alert should be updated in the last days before failure"
    ev = late[-1]["evidence"]
    error_days = abs(late[-1]["predicted_failure_ts"] - fail_ts) / DAY_MS
    assert error_days <= 1.5, error_days
    assert ev["slope_v_per_day"] == pytest.approx(-rate, abs=0.01)
    assert (ev["predicted_failure_earliest_ts"] <= late[-1]["predicted_failure_ts"]
            <= ev["predicted_failure_latest_ts"])
    json.dumps(ev)  # evidence is plain JSON


def test_severity_escalates_as_failure_approaches() -> None:
    _, alerts, _ = run(series(22, weakening(12.65, 0.04), seed=5))
    severities = [a["severity"] for a in alerts]
    assert severities[0] in ("info", "warning")
    assert severities[-1] == "critical"
    order = {"info": 0, "warning": 1, "critical": 2}
    assert [order[s] for s in severities] == sorted(order[s] for s in severities)


@pytest.mark.parametrize("seed", range(10))
def test_healthy_battery_in_a_cold_snap_stays_quiet(seed: int) -> None:
    assessments, alerts, _ = run(series(25, lambda _d: 12.70, daily_cycle(cold_snap), seed=seed))
    assert alerts == []
    assert assessments, "the detector should still evaluate resting samples"
    assert not any(a.active for _, a in assessments)


def test_raw_voltage_does_fall_in_the_cold_snap_so_compensation_matters() -> None:
    """Without temperature compensation the cold snap looks like a battery losing charge."""

    def slope_on_day_10(detector: WeakBattery12V) -> float:
        assessments, _, _ = run(series(11, lambda _d: 12.60, daily_cycle(cold_snap), seed=1),
                                detector)
        return float(assessments[-1][1].evidence["slope_v_per_day"])

    # 30 °C colder over five days: about -75 mV on the raw resting voltage.
    assert slope_on_day_10(WeakBattery12V(temp_coeff_v_per_c=0.0)) < -0.006
    assert abs(slope_on_day_10(WeakBattery12V())) < 0.002


def test_week_long_park_of_a_healthy_car_stays_quiet() -> None:
    _, alerts, state = run(series(20, lambda d: 12.65 - 0.005 * max(0.0, min(d, 10) - 3),
                                  parked_days=set(range(3, 10)), seed=4))
    assert alerts == []
    assert len(state["hist"]) >= 10


def test_abstains_with_a_reason_after_a_long_silence() -> None:
    samples = series(20, lambda _d: 12.65, seed=2, offline_days=set(range(4, 13)))
    assessments, _, _ = run(samples)
    reasons = [a.abstain_reason for _, a in assessments if a.abstain_reason]
    assert any("no resting sample for 7 days" in r for r in reasons)
    # Too little history at the start is an abstention too, never an alert.
    first_ts, first = assessments[0]
    assert first.abstain_reason and "resting samples" in first.abstain_reason


def test_battery_replacement_resolves_the_alert() -> None:
    def v25(day: float) -> float:
        return weakening(12.65, 0.06)(day) if day < 9 else 12.72

    _, alerts, _ = run(series(30, v25, seed=3))
    assert [a["status"] for a in alerts][0] == "open"
    assert alerts[-1]["status"] == "resolved"
    assert len({a["id"] for a in alerts}) == 1


def test_top_up_while_parked_restarts_the_rest_clock() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    t0 = START_MS
    detector.update(state, t0, {"Vehicle.LowVoltageSystemState": "OFF",
                                "Vehicle.LowVoltageBattery.CurrentVoltage": 12.9})
    assert state["rest"] == t0
    t1 = t0 + 5 * 3_600_000
    changed, _ = detector.update(state, t1, {"Vehicle.LowVoltageBattery.CurrentVoltage": 14.0})
    assert changed and state["rest"] == t1 and state["on"] is False
    # Within the rest delay after the top-up nothing is sampled.
    detector.update(state, t1 + 3_600_000, {"Vehicle.LowVoltageBattery.CurrentVoltage": 12.7})
    assert state["win"] == []
