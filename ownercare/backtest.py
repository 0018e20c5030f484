"""``ownercare backtest``: score the detectors on simulated fleets over a range of seeds.

Each seed's fleet is simulated and scored by exactly the code of ``ownercare eval``
(``ownercare/evaluate.py``: same pipelines, same definitions); this command only loops over
seeds and prints one line per seed plus totals. Detections, misses, false alarms, duplicate
alerts and lead time before failure (or, for faults that cannot be foreseen such as
``silent``, the detection delay after the onset: ``FaultSpec.scored_by``). Deterministic for
the given seeds, so two runs print the same figures.

With ``--chargers M`` the fleet has public chargers: charger faults are scored on the charger
id, and for the charging faults (``charger_fault``, ``inlet_fault``) also the attribution
accuracy (share of ``charger_fault`` / ``charging_inlet_fault`` alerts raised on the asset that
really is at fault) and, for ``charger_derating``, how many sessions started on the charger
after the onset until the alert (the session that raised it included).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from ownercare.evaluate import Scenario, run_scenario, score_run
from simulators.faults import parse_fault_spec


def backtest_fleet(seed: int, vehicles: int, days: int, faults: dict[str, int],
                   drive_interval_s: float, parked_interval_s: float,
                   chargers: int = 0) -> dict[str, Any]:
    """One seed's figures, from the scoring ``ownercare eval`` uses (``evaluate.score``)."""
    scenario = Scenario(seed, vehicles, chargers, days, faults, drive_interval_s,
                        parked_interval_s)
    report = score_run(run_scenario(scenario, processes=1))
    rows = report["detections"]
    detected = [d for d in rows if d["first_alert_ts"] is not None]
    faulty_vehicles = sum(1 for d in rows if d["asset_kind"] == "vehicle")
    by_fault: dict[str, list[int]] = {}
    for d in rows:
        entry = by_fault.setdefault(d["fault"], [0, 0])
        entry[0] += 1
        entry[1] += d["first_alert_ts"] is not None
    return {"seed": seed, "messages": report["messages"], "faulty": len(rows),
            "detected": len(detected), "missed": len(rows) - len(detected),
            "false_alarms": (report["false_alerts_on_healthy_vehicles"]
                             + report["false_alerts_on_healthy_chargers"]),
            "duplicate_alerts": report["duplicate_alerts"],
            "lead_days": [d["lead_time_h"] / 24 for d in detected
                          if d["lead_time_h"] is not None],
            "delay_hours": [d["delay_h"] for d in detected if d["delay_h"] is not None],
            "healthy_vehicles": vehicles - faulty_vehicles,
            "healthy_assets": vehicles + chargers - len(rows),
            "charging_fault_alerts": report["charging_alerts"],
            "rightly_attributed": report["charging_alerts_rightly_attributed"],
            "derating_sessions_to_alert": [d["sessions_to_alert"] for d in detected
                                           if d["sessions_to_alert"] is not None],
            "by_fault": by_fault}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--chargers", type=int, default=0,
                        help="public chargers in the fleet (needed for the charger faults)")
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--seeds", default="1-5", help="seed range A-B or a single seed")
    parser.add_argument("--faults", default="weak_12v:5")
    parser.add_argument("--drive-interval", type=float, default=60.0)
    parser.add_argument("--parked-interval", type=float, default=1800.0)


def run(args: argparse.Namespace) -> int:
    first, _, last = args.seeds.partition("-")
    try:
        seeds = range(int(first), int(last or first) + 1)
        if args.chargers < 0:
            raise ValueError(f"--chargers must be >= 0, got {args.chargers}")
        faults = parse_fault_spec(args.faults, args.vehicles, args.chargers)
        if faults.get("inlet_fault") and args.chargers < 2:
            raise ValueError("inlet_fault needs --chargers 2 or more: a car's inlet fault is "
                             "told from a charger fault by failures at several chargers")
    except ValueError as exc:
        print(f"ownercare backtest: {exc}")
        return 2
    started = time.perf_counter()
    rows = []
    print("seed  messages  faulty  detected  missed  false_alarms  duplicates  "
          "lead_days(min/median)")
    for seed in seeds:
        r = backtest_fleet(seed, args.vehicles, args.days, faults, args.drive_interval,
                           args.parked_interval, args.chargers)
        rows.append(r)
        leads = r["lead_days"]
        lead = f"{min(leads):.1f}/{statistics.median(leads):.1f}" if leads else "-"
        print(f"{seed:>4}  {r['messages']:>8}  {r['faulty']:>6}  {r['detected']:>8}  "
              f"{r['missed']:>6}  {r['false_alarms']:>12}  {r['duplicate_alerts']:>10}  {lead}")
    all_leads = [x for r in rows for x in r["lead_days"]]
    healthy = sum(r["healthy_assets"] for r in rows)
    lead_text = (f"lead time min {min(all_leads):.1f} d, median "
                 f"{statistics.median(all_leads):.1f} d" if all_leads else "no lead times")
    print(f"total: {sum(r['detected'] for r in rows)}/{sum(r['faulty'] for r in rows)} faults "
          f"detected (before failure; after the onset for faults scored by delay), "
          f"{sum(r['false_alarms'] for r in rows)} false alarms on {healthy} healthy "
          f"{'assets' if args.chargers else 'vehicles'} x {args.days} days, "
          f"{sum(r['duplicate_alerts'] for r in rows)} duplicate alerts; {lead_text} "
          f"({time.perf_counter() - started:.0f} s)")
    all_delays = [x for r in rows for x in r["delay_hours"]]
    if all_delays:
        print(f"detection delay after onset (faults scored by delay): median "
              f"{statistics.median(all_delays):.2f} h, max {max(all_delays):.2f} h")
    if args.chargers:
        _print_charging(rows, healthy * args.days)
    return 0


def _print_charging(rows: list[dict[str, Any]], healthy_asset_days: int) -> None:
    by_fault: dict[str, list[int]] = {}
    for r in rows:
        for name, (faulty, detected) in r["by_fault"].items():
            row = by_fault.setdefault(name, [0, 0])
            row[0], row[1] = row[0] + faulty, row[1] + detected
    for name, (faulty, detected) in sorted(by_fault.items()):
        print(f"  {name}: recall {detected}/{faulty}"
              f" = {detected / faulty if faulty else 0:.2f}")
    false_alarms = sum(r["false_alarms"] for r in rows)
    print(f"  false alarms: {false_alarms} on {healthy_asset_days} healthy asset-days = "
          f"{1000 * false_alarms / max(1, healthy_asset_days):.2f} per 1000")
    sessions = [s for r in rows for s in r["derating_sessions_to_alert"]]
    if sessions:
        print(f"  charger_derating: sessions after onset until the alert: max {max(sessions)}, "
              f"median {statistics.median(sessions):g} ({sorted(sessions)})")
    alerts = sum(r["charging_fault_alerts"] for r in rows)
    right = sum(r["rightly_attributed"] for r in rows)
    if alerts:
        print(f"  attribution: {right}/{alerts} charging-fault alerts on the asset at fault "
              f"= {right / alerts:.2f}")
