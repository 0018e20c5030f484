"""``ownercare backtest``: score the detectors on simulated fleets, without any broker.

Replays the simulator's message stream through the contract validator and the worker's
pipeline (the same code the Faust agent runs), then compares the alerts with the simulator's
ground truth: detections, misses, false alarms, duplicate alerts and lead time before failure.
Deterministic for the given seeds, so two runs print the same figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from ownercare.evaluate import Scenario, run_scenario, score_run
from simulators.faults import parse_fault_spec
from simulators.fleet import DAY_MS


def backtest_fleet(seed: int, vehicles: int, days: int, faults: dict[str, int],
                   drive_interval_s: float, parked_interval_s: float) -> dict[str, Any]:
    """One seed's figures, from the scoring ``ownercare eval`` uses (``evaluate.score``)."""
    scenario = Scenario(seed, vehicles, 0, days, faults, drive_interval_s, parked_interval_s)
    report = score_run(run_scenario(scenario, processes=1))
    rows = report["detections"]
    detected = sum(1 for d in rows if d["first_alert_ts"] is not None)
    return {"seed": seed, "messages": report["messages"], "faulty": len(rows),
            "detected": detected, "missed": len(rows) - detected,
            "false_alarms": report["false_alerts_on_healthy_vehicles"],
            "duplicate_alerts": report["duplicate_alerts"],
            "lead_days": [(d["failure_ts"] - d["first_alert_ts"]) / DAY_MS for d in rows
                          if d["lead_time_h"] is not None]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--seeds", default="1-5", help="seed range A-B or a single seed")
    parser.add_argument("--faults", default="weak_12v:5")
    parser.add_argument("--drive-interval", type=float, default=60.0)
    parser.add_argument("--parked-interval", type=float, default=1800.0)


def run(args: argparse.Namespace) -> int:
    first, _, last = args.seeds.partition("-")
    try:
        seeds = range(int(first), int(last or first) + 1)
        faults = parse_fault_spec(args.faults, args.vehicles, 0)
    except ValueError as exc:
        print(f"ownercare backtest: {exc}")
        return 2
    started = time.perf_counter()
    rows = []
    print("seed  messages  faulty  detected  missed  false_alarms  duplicates  "
          "lead_days(min/median)")
    for seed in seeds:
        r = backtest_fleet(seed, args.vehicles, args.days, faults, args.drive_interval,
                           args.parked_interval)
        rows.append(r)
        leads = r["lead_days"]
        lead = f"{min(leads):.1f}/{statistics.median(leads):.1f}" if leads else "-"
        print(f"{seed:>4}  {r['messages']:>8}  {r['faulty']:>6}  {r['detected']:>8}  "
              f"{r['missed']:>6}  {r['false_alarms']:>12}  {r['duplicate_alerts']:>10}  {lead}")
    all_leads = [x for r in rows for x in r["lead_days"]]
    healthy = sum(args.vehicles - r["faulty"] for r in rows)
    print(f"total: {sum(r['detected'] for r in rows)}/{sum(r['faulty'] for r in rows)} faults "
          f"detected before failure, {sum(r['false_alarms'] for r in rows)} false alarms on "
          f"{healthy} healthy vehicles x {args.days} days, "
          f"{sum(r['duplicate_alerts'] for r in rows)} duplicate alerts; lead time min "
          f"{min(all_leads, default=0):.1f} d, median "
          f"{statistics.median(all_leads) if all_leads else 0:.1f} d "
          f"({time.perf_counter() - started:.0f} s)")
    return 0
