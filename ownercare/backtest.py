"""``ownercare backtest``: score the detectors on simulated fleets, without any broker.

Replays the simulator's message stream through the contract validator and the worker's
pipeline (the same code the Faust agent runs), then compares the alerts with the simulator's
ground truth: detections, misses, false alarms, duplicate alerts and lead time before failure
(or, for faults that cannot be foreseen such as ``silent``, the detection delay after the
onset: ``FaultSpec.scored_by``). Deterministic for the given seeds, so two runs print the
same figures.

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

from diagnostics.offline import OfflineDiagnostics
from ingest.contract import validate
from simulators.faults import FAULTS, parse_fault_spec
from simulators.fleet import DAY_MS, HOUR_MS, Fleet

# Healthy cars report cell voltages only in the fleets that score the cell detector (so the
# simulator's output is otherwise unchanged); then all of them do, as look-alikes.
CELL_REPORT_FRACTION = {"cell_drift": 1.0}
CHARGING_FAULT_TYPES = frozenset({"charger_fault", "charging_inlet_fault"})


def backtest_fleet(seed: int, vehicles: int, days: int, faults: dict[str, int],
                   drive_interval_s: float, parked_interval_s: float,
                   chargers: int = 0) -> dict[str, Any]:
    fleet = Fleet(vehicles, chargers, seed=seed, faults=faults, drive_interval_s=drive_interval_s,
                  parked_interval_s=parked_interval_s,
                  cell_report_fraction=max((CELL_REPORT_FRACTION.get(f, 0.0) for f in faults
                                            if faults[f]), default=0.0))
    truth = {t.get("vin") or t["charger_id"]: t for t in fleet.truth()}
    diagnostics = OfflineDiagnostics()
    first_open: dict[tuple[str, str], dict[str, Any]] = {}
    ids: dict[tuple[str, str], set[str]] = {}
    messages = 0
    end_ms = fleet.start_ms + days * DAY_MS
    for _ts, topic, payload in fleet.messages(end_ms):
        messages += 1
        _note(diagnostics.process([validate(topic, payload)]), first_open, ids)
    _note(diagnostics.finish(end_ms), first_open, ids)
    detected, missed, leads, delays, derating_sessions = 0, 0, [], [], []
    for asset, fault in truth.items():
        spec = FAULTS[fault["fault"]]
        alert = first_open.get((asset, spec.alert_type))
        if alert is None or not _in_time(fault, alert):
            missed += 1
            continue
        detected += 1
        if spec.scored_by == "delay":
            delays.append((alert["first_seen"] - fault["onset_ts"]) / HOUR_MS)
            continue
        leads.append((fault["failure_ts"] - alert["first_seen"]) / DAY_MS)
        if fault["fault"] == "charger_derating":
            derating_sessions.append(sum(
                1 for o in diagnostics.session_outcomes if o["charger_id"] == asset
                and fault["onset_ts"] <= o["start_ts"] and o["ts"] <= alert["first_seen"]))
    false_alarms = sum(1 for (asset, _type) in first_open if asset not in truth)
    duplicates = sum(len(v) - 1 for v in ids.values())
    charging_alerts = [key for key in first_open if key[1] in CHARGING_FAULT_TYPES]
    rightly = sum(1 for asset, alert_type in charging_alerts if asset in truth
                  and FAULTS[truth[asset]["fault"]].alert_type == alert_type)
    return {"seed": seed, "messages": messages, "faulty": len(truth), "detected": detected,
            "missed": missed, "false_alarms": false_alarms, "duplicate_alerts": duplicates,
            "lead_days": leads, "delay_hours": delays,
            "healthy_vehicles": vehicles - sum(1 for t in truth.values() if "vin" in t),
            "healthy_assets": vehicles + chargers - len(truth),
            "charging_fault_alerts": len(charging_alerts), "rightly_attributed": rightly,
            "derating_sessions_to_alert": derating_sessions,
            "by_fault": _by_fault(truth, first_open)}


def _by_fault(truth: dict[str, dict[str, Any]],
              first_open: dict[tuple[str, str], dict[str, Any]]) -> dict[str, list[int]]:
    """Per fault name: [faulty assets, detected before failure]."""
    out: dict[str, list[int]] = {}
    for asset, fault in truth.items():
        row = out.setdefault(fault["fault"], [0, 0])
        row[0] += 1
        alert = first_open.get((asset, FAULTS[fault["fault"]].alert_type))
        row[1] += int(_in_time(fault, alert))
    return out


def _in_time(fault: dict[str, Any], alert: dict[str, Any] | None) -> bool:
    """Did ``alert`` detect ``fault``: before its failure, or after its onset for faults
    scored by their detection delay."""
    if alert is None:
        return False
    if FAULTS[fault["fault"]].scored_by == "delay":
        return bool(alert["first_seen"] >= fault["onset_ts"])
    return bool(alert["first_seen"] < fault["failure_ts"])


def _note(alerts: list[dict[str, Any]], first_open: dict[tuple[str, str], dict[str, Any]],
          ids: dict[tuple[str, str], set[str]]) -> None:
    for alert in alerts:
        key = (alert["asset_id"], alert["type"])
        ids.setdefault(key, set()).add(alert["id"])
        if alert["status"] == "open":
            first_open.setdefault(key, alert)


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
        delays = r["delay_hours"]
        if delays:
            lead += f"  delay_h {statistics.median(delays):.2f}/{max(delays):.2f}"
        print(f"{seed:>4}  {r['messages']:>8}  {r['faulty']:>6}  {r['detected']:>8}  "
              f"{r['missed']:>6}  {r['false_alarms']:>12}  {r['duplicate_alerts']:>10}  {lead}")
    all_leads = [x for r in rows for x in r["lead_days"]]
    healthy = sum(r["healthy_vehicles"] for r in rows)
    lead_text = (f"lead time min {min(all_leads):.1f} d, median "
                 f"{statistics.median(all_leads):.1f} d" if all_leads else "no lead times")
    print(f"total: {sum(r['detected'] for r in rows)}/{sum(r['faulty'] for r in rows)} faults "
          f"detected (before failure; after the onset for faults scored by delay), "
          f"{sum(r['false_alarms'] for r in rows)} false alarms on "
          f"{healthy} healthy vehicles x {args.days} days, "
          f"{sum(r['duplicate_alerts'] for r in rows)} duplicate alerts; {lead_text} "
          f"({time.perf_counter() - started:.0f} s)")
    all_delays = [x for r in rows for x in r["delay_hours"]]
    if all_delays:
        print(f"detection delay after onset (faults scored by delay): median "
              f"{statistics.median(all_delays):.2f} h, max {max(all_delays):.2f} h")
    if args.chargers:
        _print_charging(rows, sum(r["healthy_assets"] for r in rows) * args.days)
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
