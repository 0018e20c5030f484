"""``ownercare eval``: its arguments, and the command that runs, prints and writes reports."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from diagnostics.generic_signals import GenericSignals
from ownercare import progress
from ownercare.evaluation.pooling import pool
from ownercare.evaluation.report import format_report, format_shortfalls
from ownercare.evaluation.run import Observer, run_scenario
from ownercare.evaluation.scenario import Scenario, default_fault_mix
from ownercare.evaluation.scoring import score_run
from simulators.cli import non_negative_int
from simulators.faults import parse_fault_spec
from vocab.eventtime import DAY_MS


def _positive(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def _seed_range(text: str) -> range:
    first, dash, last = text.partition("-")
    try:
        seeds = range(int(first), int(last if dash else first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed range like 1-10") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r}: the last seed is before the first")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    seeds = parser.add_mutually_exclusive_group()
    # default None, not 1: argparse takes an explicit "--seed 1" for its default (the same
    # int object) and would not see it conflict with --seeds.
    seeds.add_argument("--seed", type=int, default=None, help="scenario seed (default 1)")
    seeds.add_argument("--seeds", type=_seed_range, default=None, metavar="A-B",
                       help="run every seed from A to B (the same fleet size and fault mix), "
                       "print each run's report, then the runs pooled (the JSON is the pooled "
                       "report, with the runs under per_seed)")
    parser.add_argument("--vehicles", type=non_negative_int, default=100,
                        help="simulated cars (default 100)")
    parser.add_argument("--chargers", type=non_negative_int, default=None,
                        help="public chargers (default: vehicles / 10)")
    parser.add_argument("--days", type=_positive, default=45,
                        help="simulated days (default 45)")
    parser.add_argument("--faults", default=None,
                        help="fault mix like weak_12v:5,charger_fault:1 (default: every "
                        "registered fault on 2%% of its asset kind, at least one each, at most "
                        "half the assets faulty)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON here")
    parser.add_argument("--plot", metavar="DIR",
                        help="draw signal, onset, first alert and failure of sample detections "
                        "(PNG files) into this directory")
    parser.add_argument("--record", metavar="FILE",
                        help="write the simulated stream as JSON lines (what `ownercare replay` "
                        "reads), gzip-compressed when FILE ends in .gz (about a tenth the size)")
    parser.add_argument("--generic", action=argparse.BooleanOptionalAction, default=False,
                        help="also run the generic detector on every numeric signal "
                        "(alert type signal_drift; the worker's OWNERCARE_GENERIC_DETECTOR, "
                        "off by default)")
    parser.add_argument("--processes", type=int, choices=(1, 2), default=2,
                        help="2 (default): simulate in a child process while detecting "
                        "(the results are identical; 1 runs everything in this process)")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario the arguments describe; ValueError naming the flag that is wrong."""
    chargers = args.vehicles // 10 if args.chargers is None else args.chargers
    if args.vehicles + chargers == 0:
        raise ValueError("--vehicles/--chargers: the fleet is empty")
    if args.faults is None:
        faults = default_fault_mix(args.vehicles, chargers)
    else:
        try:
            faults = parse_fault_spec(args.faults, args.vehicles, chargers)
        except ValueError as exc:
            raise ValueError(f"--faults: {exc}") from None
    return Scenario(1 if args.seed is None else args.seed, args.vehicles, chargers, args.days,
                    faults)


def _all_of(observers: list[Callable[..., None]]) -> Observer | None:
    """One observer calling each of ``observers`` (None for none: the detectors' fast path)."""
    if not observers:
        return None

    def observe(*args: Any) -> None:
        for observer in observers:
            observer(*args)

    return observe


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> int:
    try:
        scenario = scenario_from_args(args)
        for flag, path in (("--json", args.json), ("--record", args.record)):
            if path is not None and not Path(path).parent.is_dir():
                raise ValueError(f"{flag}: directory {str(Path(path).parent)!r} does not exist")
            if path is not None and Path(path).is_dir():
                raise ValueError(f"{flag}: {path!r} is a directory; give a file name")
        if args.plot is not None and Path(args.plot).exists() and not Path(args.plot).is_dir():
            raise ValueError(f"--plot: {args.plot!r} exists and is not a directory")
        if args.seeds is not None and (args.plot is not None or args.record is not None):
            raise ValueError("--plot and --record draw one run: give --seed, not --seeds")
    except ValueError as exc:
        print(f"ownercare eval: {exc}", file=sys.stderr)
        return 2
    if args.seeds is None:
        final = _run_one(scenario, args)
    else:
        runs = [_run_one(replace(scenario, seed=seed), args,
                         f"seed {seed} ({number} of {len(args.seeds)})")
                for number, seed in enumerate(args.seeds, start=1)]
        final = pool(runs)
        final["scenario"] = {**runs[0]["scenario"], "seed": None, "seeds": list(args.seeds)}
        final["messages"] = sum(r["messages"] for r in runs)
        final["per_seed"] = runs
        print(f"ownercare eval: seeds {args.seeds[0]}-{args.seeds[-1]} pooled ({len(runs)} "
              f"runs, {final['messages']} messages, {final['alerts']} alerts)")
        print(format_report(final))
        print(format_shortfalls(runs))
    if args.json:
        Path(args.json).write_bytes(
            json.dumps(final, indent=2, sort_keys=True).encode() + b"\n")
    return 0


def _run_one(scenario: Scenario, args: argparse.Namespace, label: str | None = None
             ) -> dict[str, Any]:
    """Run, print and (``--plot``) draw one scenario; its report."""
    started, cpu_started = time.perf_counter(), time.process_time()
    children_started = _children_cpu_s()
    series = None
    observers: list[Callable[..., None]] = []
    if args.plot is not None:
        from ownercare.evaluation.plot import SeriesRecorder

        series = SeriesRecorder(scenario.fleet().truth())
        observers.append(series.observe)
    with progress.Bar(label or f"seed {scenario.seed}", scenario.days, "days") as bar:
        if bar.active:
            start_ms = scenario.fleet().start_ms
            observers.append(
                lambda record, *_: bar.update((record["ts"] - start_ms) / DAY_MS))
        result = run_scenario(scenario, args.processes, _all_of(observers),
                              Path(args.record) if args.record else None,
                              GenericSignals() if args.generic else None)
    report = score_run(result)
    print(f"ownercare eval: seed {scenario.seed}, {scenario.vehicles} vehicles, "
          f"{scenario.chargers} chargers, {scenario.days} days, faults "
          f"{','.join(f'{k}:{v}' for k, v in scenario.faults.items()) or 'none'}: "
          f"{result.messages} messages, {report['alerts']} alerts "
          f"({time.perf_counter() - started:.0f} s; CPU: {time.process_time() - cpu_started:.0f} s "
          f"this process, {_children_cpu_s() - children_started:.0f} s the simulator process)")
    print(format_report(report))
    if series is not None:
        from ownercare.evaluation.plot import plot_detections

        written = plot_detections(report, series, Path(args.plot))
        print(f"{len(written)} plots written to {args.plot}")
    return report
