"""``ownercare backtest`` scores the real pipeline against the simulator's ground truth."""

from __future__ import annotations

from ownercare.backtest import backtest_fleet


def test_backtest_detects_the_injected_faults_and_nothing_else() -> None:
    result = backtest_fleet(seed=3, vehicles=12, days=30, faults={"weak_12v": 3},
                            drive_interval_s=300, parked_interval_s=3600)
    assert result["faulty"] == 3
    assert result["detected"] == 3 and result["missed"] == 0
    assert result["false_alarms"] == 0 and result["duplicate_alerts"] == 0
    assert min(result["lead_days"]) >= 2


def test_backtest_scores_trouble_codes_too() -> None:
    result = backtest_fleet(seed=6, vehicles=10, days=8, faults={"dtc": 2, "weak_12v": 1},
                            drive_interval_s=300, parked_interval_s=3600)
    assert result["faulty"] == 3
    assert result["false_alarms"] == 0 and result["duplicate_alerts"] == 0
    # Both codes are alerted as soon as the car reports them (at its next transmission, at
    # most one parked interval after the onset), i.e. about 2 days before it would stop.
    assert sum(1 for lead in result["lead_days"] if 2.0 - 1 / 24 <= lead <= 2.0) == 2


def test_backtest_is_deterministic() -> None:
    args = {"seed": 4, "vehicles": 4, "days": 6, "faults": {"weak_12v": 1},
            "drive_interval_s": 300, "parked_interval_s": 3600}
    assert backtest_fleet(**args) == backtest_fleet(**args)


def test_backtest_scores_a_failing_coolant_pump() -> None:
    # Every car of the fleet heats with load and hills; three pumps wear out.
    result = backtest_fleet(seed=3, vehicles=12, days=30, faults={"coolant_pump": 3},
                            drive_interval_s=120, parked_interval_s=3600)
    assert result["faulty"] == 3
    assert result["detected"] == 3 and result["missed"] == 0
    assert result["false_alarms"] == 0 and result["duplicate_alerts"] == 0
    assert min(result["lead_days"]) >= 5
