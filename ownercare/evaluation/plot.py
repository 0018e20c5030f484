"""``ownercare eval --plot DIR``: what a detection looked like, one PNG per sampled asset.

For up to ``DETECTED_PER_FAULT`` detected and ``MISSED_PER_FAULT`` missed assets of each fault
type: the fault's signal(s) over time (``PLOT_SIGNALS``), with the onset, the first alert of
the fault's type and the failure marked. Only faulty assets' series are kept while the
scenario runs, so memory stays small on large fleets.

``PLOT_SIGNALS`` maps a fault to the series worth looking at: a signal path of the contract
(telemetry signal or OCPP measurand), a derived series from ``DERIVED``, or
``event:<type>`` (vehicle events of that type, drawn as points). A fault without an entry is
drawn with its markers only, and the title says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ingest.contract import TIRE_PRESSURE_SIGNALS
from ownercare.evaluation.scoring import asset_key
from vocab.eventtime import DAY_MS

DETECTED_PER_FAULT = 3
MISSED_PER_FAULT = 1
_CELL = "Vehicle.Powertrain.TractionBattery.CellVoltage."

DERIVED: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "cell spread (mV)": lambda s: (
        (s[_CELL + "Max"] - s[_CELL + "Min"]) * 1000
        if _CELL + "Max" in s and _CELL + "Min" in s else None),
}

PLOT_SIGNALS: dict[str, tuple[str, ...]] = {
    "weak_12v": ("Vehicle.LowVoltageBattery.CurrentVoltage",),
    "dtc": ("event:dtc",),
    "slow_leak": TIRE_PRESSURE_SIGNALS,
    "cell_drift": ("cell spread (mV)",),
    "coolant_pump": ("Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature",),
    "charger_derating": ("Power.Active.Import", "Power.Offered"),
    "charger_fault": ("Power.Active.Import",),
    "inlet_fault": ("Vehicle.Powertrain.TractionBattery.Charging.ChargeRate",),
}


def _asset_of(record: Mapping[str, Any]) -> tuple[str, str]:
    return ("vehicle" if record["kind"].startswith("vehicle_") else "charger", record["id"])


class SeriesRecorder:
    """Collects, while the scenario runs, the plotted series of every faulty asset."""

    def __init__(self, truth: list[dict[str, Any]]) -> None:
        self.fault_of: dict[tuple[str, str], str] = {asset_key(t): t["fault"] for t in truth}
        # (asset kind, asset id) -> series name -> [(ts, value)]
        self.series: dict[tuple[str, str], dict[str, list[tuple[int, float]]]] = {}

    def observe(self, record: Mapping[str, Any]) -> None:
        asset = _asset_of(record)
        fault = self.fault_of.get(asset)
        if fault is None:
            return
        data = record["data"]
        values = data.get("signals") or data.get("measurands") or {}
        out = self.series.setdefault(asset, {})
        ts = int(record["ts"])
        for name in PLOT_SIGNALS.get(fault, ()):
            if name.startswith("event:"):
                if record["kind"] == "vehicle_event" and data.get("type") == name[6:]:
                    out.setdefault(name, []).append((ts, 1.0))
                continue
            derive = DERIVED.get(name)
            value = derive(values) if derive is not None else values.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.setdefault(name, []).append((ts, float(value)))


def _short(name: str) -> str:
    for prefix in ("Vehicle.Chassis.Axle.", "Vehicle.Powertrain.", "Vehicle."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _sample(detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    for fault in sorted({d["fault"] for d in detections}):
        rows = [d for d in detections if d["fault"] == fault]
        chosen += [d for d in rows if d["first_alert_ts"] is not None][:DETECTED_PER_FAULT]
        chosen += [d for d in rows if d["first_alert_ts"] is None][:MISSED_PER_FAULT]
    return chosen


def plot_detections(report: Mapping[str, Any], recorder: SeriesRecorder,
                    out_dir: Path) -> list[Path]:
    """Write the sampled assets' PNGs into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    start = report.get("start_ms")
    written: list[Path] = []
    for d in _sample(report["detections"]):
        series = recorder.series.get((d["asset_kind"], d["asset_id"]), {})
        origin = start if start is not None else min(
            (pts[0][0] for pts in series.values() if pts), default=d["onset_ts"] or 0)

        def days(ts: int, origin: int = origin) -> float:
            return (ts - origin) / DAY_MS

        fig, ax = plt.subplots(figsize=(9, 4))
        for name, points in sorted(series.items()):
            xs = [days(t) for t, _ in points]
            ys = [v for _, v in points]
            if name.startswith("event:"):
                ax.plot(xs, ys, "o", label=name)
            else:
                ax.plot(xs, ys, linewidth=0.8, label=_short(name))
        for ts, label, color, line in ((d["onset_ts"], "onset", "green", "--"),
                                       (d["first_alert_ts"], "first alert", "red", "-"),
                                       (d["failure_ts"], "failure", "black", ":"),
                                       (report.get("end_ms"), "end of the run", "grey", "-.")):
            if ts is not None:
                ax.axvline(days(ts), color=color, linestyle=line, label=label)
        lead = "missed" if d["first_alert_ts"] is None else (
            f"lead {d['lead_time_h']:.1f} h" if d["lead_time_h"] is not None else "detected")
        note = "" if d["fault"] in PLOT_SIGNALS else " (no signal table entry)"
        ax.set_title(f"{d['fault']} on {d['asset_kind']} {d['asset_id']}: {lead}{note}")
        ax.set_xlabel("days since the start of the scenario")
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        path = out_dir / f"{d['fault']}-{d['asset_id']}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
