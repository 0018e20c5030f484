"""``ownercare backtest``: an alias of ``ownercare eval --seeds``, to be removed.

Takes the flags ``backtest`` has always taken, with their defaults (no chargers, ``weak_12v:5``,
seeds 1-5), says on stderr that it is an alias, and runs ``ownercare eval`` with the same
fleet, seeds and fault mix. Eval has no flags for the reporting intervals, so only their
defaults are accepted.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ownercare.evaluation import cli as eval_cli
from simulators.faults import parse_fault_spec

DRIVE_INTERVAL_S = 60.0
PARKED_INTERVAL_S = 1800.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vehicles", default="100", help="simulated cars (default 100)")
    parser.add_argument("--chargers", default="0",
                        help="public chargers in the fleet (default 0; needed for the charger "
                        "faults)")
    parser.add_argument("--days", default="45", help="simulated days (default 45)")
    parser.add_argument("--seeds", default="1-5",
                        help="seed range A-B or a single seed (default 1-5)")
    parser.add_argument("--faults", default="weak_12v:5",
                        help="fault mix (default weak_12v:5)")
    parser.add_argument("--drive-interval", type=float, default=DRIVE_INTERVAL_S,
                        help=f"only the default, {DRIVE_INTERVAL_S:g} s, which eval uses")
    parser.add_argument("--parked-interval", type=float, default=PARKED_INTERVAL_S,
                        help=f"only the default, {PARKED_INTERVAL_S:g} s, which eval uses")


def eval_argv(args: argparse.Namespace) -> list[str]:
    """The ``ownercare eval`` arguments that run what ``args`` asks of ``backtest``."""
    return ["--seeds", args.seeds, "--vehicles", args.vehicles, "--chargers", args.chargers,
            "--days", args.days, "--faults", args.faults]


def _check(args: argparse.Namespace, evaluation: argparse.Namespace) -> None:
    """ValueError for what eval cannot run, or cannot run usefully, as backtest was asked to."""
    for flag, value, default in (("--drive-interval", args.drive_interval, DRIVE_INTERVAL_S),
                                 ("--parked-interval", args.parked_interval,
                                  PARKED_INTERVAL_S)):
        if value != default:
            raise ValueError(f"{flag}: ownercare eval has no such flag and simulates "
                             f"{default:g} s; only that value is accepted")
    try:
        faults = parse_fault_spec(evaluation.faults)
    except ValueError:
        return  # eval names what is wrong with --faults
    # A car's inlet fault is told from a charger fault by failures at several chargers.
    if faults.get("inlet_fault") and evaluation.chargers < 2:
        raise ValueError("inlet_fault needs --chargers 2 or more: a car's inlet fault is "
                         "told from a charger fault by failures at several chargers")


def run(args: argparse.Namespace) -> int:
    argv = eval_argv(args)
    print(f"ownercare backtest: an alias of `ownercare eval --seeds` and will be removed; "
          f"running: ownercare eval {shlex.join(argv)}", file=sys.stderr)
    parser = argparse.ArgumentParser(prog="ownercare eval")
    eval_cli.add_arguments(parser)
    evaluation = parser.parse_args(argv)  # bad values exit 2 naming the flag, as eval does
    try:
        _check(args, evaluation)
    except ValueError as exc:
        print(f"ownercare backtest: {exc}", file=sys.stderr)
        return 2
    return eval_cli.run(evaluation)
