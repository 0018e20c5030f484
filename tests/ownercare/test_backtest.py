"""``ownercare backtest``: an alias of ``ownercare eval --seeds`` with backtest's flags."""

from __future__ import annotations

import argparse
import re

import pytest

from ownercare import backtest
from ownercare.cli import main

NOTICE = "ownercare backtest: an alias of `ownercare eval --seeds` and will be removed"


def without_timings(text: str) -> str:
    """The printed reports without the wall-clock and CPU seconds of each run."""
    return re.sub(r"\(\d+ s; CPU: \d+ s this process, \d+ s the simulator process\)", "",
                  text)


def test_backtest_prints_what_eval_prints_for_the_same_fleet(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--vehicles", "6", "--days", "5", "--seeds", "2-3",
                 "--faults", "dtc:2"]) == 0
    aliased = capsys.readouterr()
    assert aliased.err.splitlines() == [
        f"{NOTICE}; running: ownercare eval --seeds 2-3 --vehicles 6 --chargers 0 --days 5 "
        "--faults dtc:2"]
    assert main(["eval", "--seeds", "2-3", "--vehicles", "6", "--chargers", "0", "--days", "5",
                 "--faults", "dtc:2"]) == 0
    direct = capsys.readouterr()
    assert without_timings(aliased.out) == without_timings(direct.out)
    assert "seeds 2-3 pooled (2 runs" in aliased.out


def test_backtest_keeps_its_own_defaults() -> None:
    parser = argparse.ArgumentParser()
    backtest.add_arguments(parser)
    assert backtest.eval_argv(parser.parse_args([])) == [
        "--seeds", "1-5", "--vehicles", "100", "--chargers", "0", "--days", "45",
        "--faults", "weak_12v:5"]
    assert backtest.eval_argv(parser.parse_args(["--seeds", "7"]))[:2] == ["--seeds", "7"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--faults", "charger_fault:1"],
     "1 charger faults requested (charger_fault:1) but the fleet has only 0 chargers"),
    (["--chargers", "1", "--faults", "inlet_fault:1"], "inlet_fault needs --chargers 2 or more"),
    (["--chargers", "-1"], "--chargers: must be >= 0, got -1"),
    (["--days", "0"], "--days: must be > 0"),
    (["--seeds", "5-2"], "--seeds: '5-2': the last seed is before the first"),
    (["--drive-interval", "300"], "--drive-interval: ownercare eval has no such flag"),
    (["--parked-interval", "600"], "--parked-interval: ownercare eval has no such flag"),
])
def test_backtest_rejects_what_eval_cannot_run(argv: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["backtest", *argv])
    except SystemExit as exc:  # argparse's own type errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(NOTICE)
    assert message in err
