"""``ownercare backtest`` scores the real pipeline against the simulator's ground truth."""

from __future__ import annotations

import argparse

import pytest

from ownercare.backtest import add_arguments, backtest_fleet, run


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


def test_backtest_scores_charger_faults_and_attribution() -> None:
    result = backtest_fleet(seed=31, vehicles=30, days=20,
                            faults={"charger_derating": 1, "charger_fault": 1, "inlet_fault": 1},
                            drive_interval_s=300, parked_interval_s=3600, chargers=6)
    assert result["faulty"] == 3 and result["detected"] == 3
    assert result["false_alarms"] == 0 and result["duplicate_alerts"] == 0
    assert result["healthy_assets"] == 30 + 6 - 3
    # Every charging-fault alert (the derating charger's included: ``evaluate.score``) is on
    # the asset that really is at fault.
    assert result["charging_fault_alerts"] == 3 and result["rightly_attributed"] == 3
    assert result["derating_sessions_to_alert"] and max(result["derating_sessions_to_alert"]) <= 2
    assert result["by_fault"] == {"charger_derating": [1, 1], "charger_fault": [1, 1],
                                  "inlet_fault": [1, 1]}


def test_backtest_cli_rejects_charger_faults_without_chargers(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--faults", "charger_fault:1"])) == 2
    assert "1 charger faults requested (charger_fault:1) but the fleet has only 0 chargers" \
        in capsys.readouterr().out
    assert run(parser.parse_args(["--chargers", "1", "--faults", "inlet_fault:1"])) == 2
    assert "inlet_fault needs --chargers 2 or more" in capsys.readouterr().out
    assert run(parser.parse_args(["--chargers", "-1"])) == 2
    assert "--chargers must be >= 0, got -1" in capsys.readouterr().out


def test_backtest_scores_a_failing_coolant_pump() -> None:
    # Every car of the fleet heats with load and hills; three pumps wear out.
    result = backtest_fleet(seed=3, vehicles=12, days=30, faults={"coolant_pump": 3},
                            drive_interval_s=120, parked_interval_s=3600)
    assert result["faulty"] == 3
    assert result["detected"] == 3 and result["missed"] == 0
    assert result["false_alarms"] == 0 and result["duplicate_alerts"] == 0
    assert min(result["lead_days"]) >= 5
