"""The reports of ``ownercare eval`` as text: one table line per fault type, then the
figures that are not per fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: Mapping[str, Any]) -> str:
    lines = [f"{'fault':<18} {'asset':<8} {'alert type':<22} {'faulty':>6} {'detected':>8} "
             f"{'recall':>6} {'alerts':>6} {'precision':>9} {'median lead h':>13} "
             f"{'worst lead h':>12} {'dup':>4}"]
    for name, f in report["faults"].items():
        lines.append(
            f"{name:<18} {f['asset']:<8} {f['alert_type'] or '-':<22} {f['faulty']:>6} "
            f"{f['detected']:>8} {_fmt(f['recall'], '.2f'):>6} {f['alerts']:>6} "
            f"{_fmt(f['precision'], '.2f'):>9} {_fmt(f['median_lead_time_h']):>13} "
            f"{_fmt(f['worst_lead_time_h']):>12} {f['duplicate_alerts']:>4}")
    for name, f in report["faults"].items():
        if f.get("median_delay_h") is not None:
            lines.append(f"{name}: not foreseeable, scored by its detection delay after the "
                         f"onset: median {f['median_delay_h']:.2f} h, worst "
                         f"{f['worst_delay_h']:.2f} h")
        if f.get("median_sessions_to_alert") is not None:
            lines.append(f"{name}: sessions after the onset until the alert: median "
                         f"{f['median_sessions_to_alert']:g}, worst "
                         f"{f['worst_sessions_to_alert']}")
    lines.append(
        f"false alerts: {report['false_alerts_on_healthy_vehicles']} on "
        f"{report['healthy_vehicle_days']} healthy vehicle-days "
        f"({_fmt(report['false_alerts_per_1000_vehicle_days'], '.3f')} per 1000), "
        f"{report['false_alerts_on_healthy_chargers']} on {report['healthy_charger_days']} "
        f"healthy charger-days ({_fmt(report['false_alerts_per_1000_charger_days'], '.3f')} "
        f"per 1000); {report['unrelated_alerts_on_faulty_assets']} unrelated alerts on faulty "
        f"assets; {report['duplicate_alerts']} duplicate alerts")
    lines.append(f"charging fault attribution accuracy: "
                 f"{_fmt(report['charging_attribution_accuracy'], '.2f')} "
                 f"({report['charging_alerts']} charging-fault alerts)")
    return "\n".join(lines)


def format_shortfalls(runs: Sequence[Mapping[str, Any]]) -> str:
    """One line: which runs missed which faulty assets (a pooled recall hides where)."""
    parts = []
    for run in runs:
        missed = [f"{name} {f['detected']}/{f['faulty']}" for name, f in run["faults"].items()
                  if f["detected"] < f["faulty"]]
        if missed:
            parts.append(f"seed {run['scenario']['seed']}: {', '.join(missed)}")
    if not parts:
        return "every run detected every faulty asset"
    return "runs that missed faulty assets (detected/faulty): " + "; ".join(parts)
