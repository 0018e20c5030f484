"""One run's alerts scored against the simulator's ground truth.

Definitions (per fault type F, whose spec names the alert type T and the asset kind):

* *faulty*: assets carrying F; *detected*: those with an alert of type T on that asset first
  seen before the truth's failure time (any time in the run when the fault has no failure
  time); *recall* = detected / faulty.
* *precision*: alerts of type T on assets carrying F / all alerts of type T. An alert is one
  alert id (an opening); re-opening the same problem counts again, so duplicates cost precision.
* *lead time*: failure time - first alert's ``first_seen``, in hours, over the detected assets
  whose fault has a failure time; median and worst (smallest). ``null`` / ``-`` when nothing is
  measurable (no detection, or no failure time).
* Faults that cannot be foreseen (``FaultSpec.scored_by == "delay"``, e.g. ``silent``: the
  truth's failure is the onset) are *detected* by an alert first seen at or after the onset,
  and scored by their *detection delay* (first alert - onset, hours; median and worst) instead.
* ``charger_derating`` also reports the sessions started on the charger after the onset until
  the alert (the session that raised it included).
* *duplicate alerts*: per (asset, alert type), alert ids beyond the first.
* *false alerts per 1000 healthy vehicle-days* (and charger-days): alerts of any type on
  assets carrying no fault, per 1000 days of such assets. Alerts on faulty assets of a type
  other than their fault's are counted separately (``unrelated_alerts_on_faulty_assets``).
* *attribution accuracy* (charging faults: charger faults and ``VEHICLE_CHARGING_FAULTS``): of
  all alerts whose type is the alert type of a charging fault in the scenario, the share raised
  on an asset that carries a charging fault with that alert type. A charger blamed for a car's
  charging problem (or the reverse) counts as wrong. ``null`` without charging faults or alerts.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from ownercare.evaluation.run import Alert, Run
from simulators.faults import FAULTS
from vocab.eventtime import HOUR_MS

# Vehicle faults that are charging faults (the car's side of a failed charge): scored for
# attribution together with every charger fault.
VEHICLE_CHARGING_FAULTS = frozenset({"inlet_fault"})


def is_charging_fault(name: str) -> bool:
    return FAULTS[name].asset == "charger" or name in VEHICLE_CHARGING_FAULTS


def asset_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    """(asset kind, asset id) of a truth entry."""
    return ("vehicle", entry["vin"]) if "vin" in entry else ("charger", entry["charger_id"])


def _openings(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """One entry per alert id (its first upsert), in the order they were opened."""
    first: dict[str, Alert] = {}
    for alert in alerts:
        first.setdefault(alert["id"], alert)
    return first


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def per_1000(count: int, asset_days: int) -> float | None:
    return round(1000 * count / asset_days, 3) if asset_days else None


def _off_target(alert: Alert, carried: Mapping[str, Any] | None) -> dict[str, Any]:
    """A false or unrelated alert, for reading in the JSON report: on which asset, what it
    said, and the asset's fault (None: healthy) with its onset and failure."""
    return {"asset_kind": alert["asset_kind"], "asset_id": alert["asset_id"],
            "type": alert["type"], "first_seen": alert["first_seen"], "title": alert.get("title"),
            "fault": None if carried is None else carried["fault"],
            "onset_ts": None if carried is None else carried.get("onset_ts"),
            "failure_ts": None if carried is None else carried.get("failure_ts")}


def score(truth: list[dict[str, Any]], alerts: list[Alert], *, vehicles: int, chargers: int,
          days: int, faults: Mapping[str, int],
          session_outcomes: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The detection-quality report of a run (see the module docstring for definitions)."""
    openings = list(_openings(alerts).values())
    fault_of = {asset_key(t): t for t in truth}
    by_asset_type: dict[tuple[str, str, str], list[Alert]] = {}
    for alert in openings:
        key = (alert["asset_kind"], alert["asset_id"], alert["type"])
        by_asset_type.setdefault(key, []).append(alert)

    detections: list[dict[str, Any]] = []
    for entry in truth:
        spec = FAULTS[entry["fault"]]
        kind, asset_id = asset_key(entry)
        failure, onset = entry.get("failure_ts"), entry.get("onset_ts")
        own = by_asset_type.get((kind, asset_id, spec.alert_type), [])
        by_delay = spec.scored_by == "delay"
        if by_delay:  # cannot be foreseen: detected by an alert after the onset
            in_time = [a for a in own if onset is None or a["first_seen"] >= onset]
        else:
            in_time = [a for a in own if failure is None or a["first_seen"] < failure]
        first = in_time[0]["first_seen"] if in_time else None
        detections.append({
            "fault": entry["fault"], "asset_kind": kind, "asset_id": asset_id,
            "alert_type": spec.alert_type, "onset_ts": onset,
            "failure_ts": failure, "first_alert_ts": first,
            "lead_time_h": ((failure - first) / HOUR_MS if not by_delay
                            and first is not None and failure is not None else None),
            "delay_h": ((first - onset) / HOUR_MS if by_delay
                        and first is not None and onset is not None else None),
            "sessions_to_alert": (_sessions_to_alert(session_outcomes, asset_id, onset, first)
                                  if entry["fault"] == "charger_derating" and first is not None
                                  and onset is not None else None),
            "alerts": len(own),
        })

    report_faults: dict[str, dict[str, Any]] = {}
    for name in sorted(n for n, c in faults.items() if c):
        of_type = [a for a in openings if a["type"] == FAULTS[name].alert_type]
        on_faulty = [a for a in of_type
                     if fault_of.get((a["asset_kind"], a["asset_id"]), {}).get("fault") == name]
        report_faults[name] = fault_summary(
            name, [d for d in detections if d["fault"] == name], len(of_type), len(on_faulty))

    healthy_alerts = {"vehicle": 0, "charger": 0}
    unrelated = 0
    off_target: list[dict[str, Any]] = []
    for alert in openings:
        carried = fault_of.get((alert["asset_kind"], alert["asset_id"]))
        if carried is None:
            healthy_alerts[alert["asset_kind"]] = healthy_alerts.get(alert["asset_kind"], 0) + 1
        elif alert["type"] != FAULTS[carried["fault"]].alert_type:
            unrelated += 1
        else:
            continue
        off_target.append(_off_target(alert, carried))
    faulty_count = {kind: sum(1 for t in truth if asset_key(t)[0] == kind)
                    for kind in ("vehicle", "charger")}
    healthy_days = {"vehicle": (vehicles - faulty_count["vehicle"]) * days,
                    "charger": (chargers - faulty_count["charger"]) * days}

    charging_types = {FAULTS[n].alert_type for n, c in faults.items()
                      if c and is_charging_fault(n)}
    charging_alerts = [a for a in openings if a["type"] in charging_types]
    attributed = [a for a in charging_alerts
                  if (owner := fault_of.get((a["asset_kind"], a["asset_id"]))) is not None
                  and is_charging_fault(owner["fault"])
                  and FAULTS[owner["fault"]].alert_type == a["type"]]

    return {
        "faults": report_faults,
        "false_alerts_on_healthy_vehicles": healthy_alerts["vehicle"],
        "healthy_vehicle_days": healthy_days["vehicle"],
        "false_alerts_per_1000_vehicle_days": per_1000(healthy_alerts["vehicle"],
                                                       healthy_days["vehicle"]),
        "false_alerts_on_healthy_chargers": healthy_alerts["charger"],
        "healthy_charger_days": healthy_days["charger"],
        "false_alerts_per_1000_charger_days": per_1000(healthy_alerts["charger"],
                                                       healthy_days["charger"]),
        "unrelated_alerts_on_faulty_assets": unrelated,
        "off_target_alerts": off_target,
        "duplicate_alerts": sum(len(v) - 1 for v in by_asset_type.values()),
        "alerts": len(openings),
        "charging_attribution_accuracy": ratio(len(attributed), len(charging_alerts)),
        "charging_alerts": len(charging_alerts),
        "charging_alerts_rightly_attributed": len(attributed),
        "detections": detections,
    }


def fault_summary(name: str, rows: list[dict[str, Any]], alerts: int, on_faulty: int
                  ) -> dict[str, Any]:
    """One fault type's line of the report from its detection rows and alert counts."""
    spec = FAULTS[name]
    detected = [d for d in rows if d["first_alert_ts"] is not None]
    leads = sorted(d["lead_time_h"] for d in detected if d["lead_time_h"] is not None)
    delays = sorted(d["delay_h"] for d in detected if d["delay_h"] is not None)
    sessions = sorted(d["sessions_to_alert"] for d in detected
                      if d["sessions_to_alert"] is not None)
    return {
        "asset": spec.asset, "alert_type": spec.alert_type,
        "faulty": len(rows), "detected": len(detected), "missed": len(rows) - len(detected),
        "recall": ratio(len(detected), len(rows)),
        "alerts": alerts, "alerts_on_faulty_assets": on_faulty,
        "precision": ratio(on_faulty, alerts),
        "median_lead_time_h": round(statistics.median(leads), 2) if leads else None,
        "worst_lead_time_h": round(leads[0], 2) if leads else None,
        "lead_times_measured": len(leads),
        "median_delay_h": round(statistics.median(delays), 2) if delays else None,
        "worst_delay_h": round(delays[-1], 2) if delays else None,
        "median_sessions_to_alert": statistics.median(sessions) if sessions else None,
        "worst_sessions_to_alert": sessions[-1] if sessions else None,
        "duplicate_alerts": sum(max(0, d["alerts"] - 1) for d in rows),
    }


def _sessions_to_alert(outcomes: Iterable[Mapping[str, Any]], charger_id: str, onset: int,
                       alert_ts: int) -> int:
    """Sessions on ``charger_id`` that started after the onset and ended by the alert (the
    session that raised it included)."""
    return sum(1 for o in outcomes if o["charger_id"] == charger_id
               and onset <= o["start_ts"] and o["ts"] <= alert_ts)


def score_run(run: Run) -> dict[str, Any]:
    """:func:`score` of a run, with its scenario, message count and time span."""
    s = run.scenario
    report = score(run.truth, run.alerts, vehicles=s.vehicles, chargers=s.chargers,
                   days=s.days, faults=s.faults, session_outcomes=run.session_outcomes)
    report["scenario"] = {"seed": s.seed, "vehicles": s.vehicles, "chargers": s.chargers,
                          "days": s.days, "faults": dict(s.faults),
                          "drive_interval_s": s.drive_interval_s,
                          "parked_interval_s": s.parked_interval_s}
    report["messages"] = run.messages
    report["start_ms"], report["end_ms"] = run.start_ms, run.end_ms
    return report
