"""``ownercare eval``: detection quality of every detector on a labelled simulated fleet.

A scenario (seed, fleet size, days, fault mix) is simulated, every message goes through the
contract validator and :class:`diagnostics.offline.OfflineDiagnostics` (what the worker runs,
without brokers), and the alerts are scored against the simulator's ground truth by
:func:`score`, which ``ownercare backtest`` uses too.

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
  the alert (the session that raised it included): the issue's "within 2 sessions".
* *duplicate alerts*: per (asset, alert type), alert ids beyond the first.
* *false alerts per 1000 healthy vehicle-days* (and charger-days): alerts of any type on
  assets carrying no fault, per 1000 days of such assets. Alerts on faulty assets of a type
  other than their fault's are counted separately (``unrelated_alerts_on_faulty_assets``).
* *attribution accuracy* (charging faults: charger faults and ``VEHICLE_CHARGING_FAULTS``): of
  all alerts whose type is the alert type of a charging fault in the scenario, the share raised
  on an asset that carries a charging fault with that alert type. A charger blamed for a car's
  charging problem (or the reverse) counts as wrong. ``null`` without charging faults or alerts.

Default fault mix (``default_fault_mix``): every registered fault gets
``max(1, assets // 50)`` assets of its kind (2 %), in name order, as long as at most half of
that kind's assets are faulty; the rest stay healthy as look-alikes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diagnostics.offline import OfflineDiagnostics
from ingest.contract import validate
from simulators.faults import FAULTS, parse_fault_spec
from simulators.fleet import DAY_MS, Fleet

HOUR_MS = 3_600_000
# Healthy cars report cell voltages only in the fleets that score the cell detector (so the
# simulator's output is otherwise unchanged); then all of them do, as look-alikes.
CELL_REPORT_FRACTION = {"cell_drift": 1.0}
# Vehicle faults that are charging faults (the car's side of a failed charge): scored for
# attribution together with every charger fault.
VEHICLE_CHARGING_FAULTS = frozenset({"inlet_fault"})
BATCH = 1000  # messages per pipe transfer from the simulator process

Alert = dict[str, Any]
Message = tuple[str, bytes]


@dataclass(frozen=True)
class Scenario:
    seed: int
    vehicles: int
    chargers: int
    days: int
    faults: Mapping[str, int] = field(default_factory=dict)
    drive_interval_s: float = 60.0
    parked_interval_s: float = 1800.0

    def fleet(self) -> Fleet:
        return Fleet(self.vehicles, self.chargers, seed=self.seed, faults=dict(self.faults),
                     drive_interval_s=self.drive_interval_s,
                     parked_interval_s=self.parked_interval_s,
                     cell_report_fraction=cell_report_fraction(self.faults))

    def end_ms(self, fleet: Fleet) -> int:
        return fleet.start_ms + self.days * DAY_MS


def cell_report_fraction(faults: Mapping[str, int]) -> float:
    return max((CELL_REPORT_FRACTION.get(f, 0.0) for f in faults if faults[f]), default=0.0)


def default_fault_mix(vehicles: int, chargers: int) -> dict[str, int]:
    """Every registered fault on 2 % of its asset kind (at least one), at most half faulty."""
    mix: dict[str, int] = {}
    for kind, assets in (("vehicle", vehicles), ("charger", chargers)):
        per_fault, budget = max(1, assets // 50), assets // 2
        for name in sorted(n for n, spec in FAULTS.items() if spec.asset == kind):
            count = min(per_fault, budget)
            if count:
                mix[name] = count
                budget -= count
    return mix


def is_charging_fault(name: str) -> bool:
    return FAULTS[name].asset == "charger" or name in VEHICLE_CHARGING_FAULTS


# ------------------------------------------------------------------------------ running


@dataclass
class Run:
    """What a scenario produced: the truth, every alert upsert in emission order, counts."""

    scenario: Scenario
    truth: list[dict[str, Any]]
    alerts: list[Alert]
    messages: int
    start_ms: int
    end_ms: int
    # Every charging session the charger pipeline finished (scores derating per session).
    session_outcomes: list[dict[str, Any]] = field(default_factory=list)


Observer = Callable[[Mapping[str, Any]], None]


def detect(records: Iterable[Mapping[str, Any]], end_ms: int,
           observe: Observer | None = None,
           diagnostics: OfflineDiagnostics | None = None) -> list[Alert]:
    """Every canonical record through the offline diagnostics, one at a time, then ``finish``.

    ``eval``, ``backtest`` and ``replay`` all call this, so they score the same thing.
    """
    diagnostics = diagnostics or OfflineDiagnostics()
    alerts: list[Alert] = []
    for record in records:
        if observe is not None:
            observe(record)
        alerts.extend(diagnostics.process([record]))
    alerts.extend(diagnostics.finish(end_ms))
    return alerts


def raw_stream(scenario: Scenario, record: Path | None = None) -> Iterator[Message]:
    """The scenario's MQTT messages (topic, payload); with ``record``, also written there as
    JSON lines ``{"topic": ..., "payload": {...}}`` (what ``ownercare replay`` reads)."""
    fleet = scenario.fleet()
    messages = fleet.messages(scenario.end_ms(fleet))
    if record is None:
        for _ts, topic, payload in messages:
            yield topic, payload
        return
    with record.open("wb") as out:
        for _ts, topic, payload in messages:
            out.write(b'{"topic":' + json.dumps(topic).encode() + b',"payload":' + payload
                      + b"}\n")
            yield topic, payload


def _produce(scenario: Scenario, record: Path | None, conn: Any, done: Any
             ) -> None:  # pragma: no cover - runs in the child process
    """Child process: simulate and send batches ``(validated, items)``; None ends.

    Work balancing: when the detectors are still busy with an earlier batch (``done``, a
    shared counter, is behind what was sent), detecting is the bottleneck, so this process
    validates the batch too; otherwise the parent is idle and gets the raw messages to
    validate. (A batch outgrows the pipe's buffer, so ``send`` returns only once the parent
    is reading it: "received" would always look caught up, "finished" does not.)
    Validation is pure, so where it runs changes nothing in the records.
    """
    batch: list[Message] = []
    sent = 0

    def send() -> None:
        nonlocal sent
        if done.value < sent:
            conn.send((True, [validate(topic, payload) for topic, payload in batch]))
        else:
            conn.send((False, batch))
        sent += 1

    for message in raw_stream(scenario, record):
        batch.append(message)
        if len(batch) >= BATCH:
            send()
            batch = []
    send()
    conn.send(None)
    conn.close()


def simulated_records(scenario: Scenario, processes: int = 2, record: Path | None = None
                      ) -> Iterator[dict[str, Any]]:
    """The scenario's messages as canonical records (``ingest.contract.validate``, as the
    bridge does). With ``processes=2`` the simulator runs in a child process that also
    validates whenever detecting is the bottleneck (the same records in the same order: the
    pipe keeps it), so simulating, validating and detecting share both cores. On a 500-car,
    60-day fleet the two processes took 131-134 s and 149-153 s of CPU (README)."""
    if processes < 2:
        for topic, payload in raw_stream(scenario, record):
            yield validate(topic, payload)
        return
    context: Any = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    done = context.Value("q", 0, lock=False)  # batches the detectors have finished
    child = context.Process(target=_produce, args=(scenario, record, sender, done),
                            daemon=True)
    child.start()
    sender.close()
    try:
        while (item := receiver.recv()) is not None:
            validated, batch = item
            if validated:
                yield from batch
            else:
                for topic, payload in batch:
                    yield validate(topic, payload)
            done.value += 1
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()
            child.join()
    if child.exitcode not in (0, None):
        raise RuntimeError(f"the simulator process failed (exit code {child.exitcode})")


def run_scenario(scenario: Scenario, processes: int = 2, observe: Observer | None = None,
                 record: Path | None = None) -> Run:
    """Simulate ``scenario`` and run the detectors over it (``record``: see
    ``raw_stream``)."""
    fleet = scenario.fleet()
    end_ms = scenario.end_ms(fleet)
    counter = [0]

    def counted() -> Iterator[dict[str, Any]]:
        for item in simulated_records(scenario, processes, record):
            counter[0] += 1
            yield item

    diagnostics = OfflineDiagnostics()
    alerts = detect(counted(), end_ms, observe, diagnostics)
    return Run(scenario, fleet.truth(), alerts, counter[0], fleet.start_ms, end_ms,
               diagnostics.session_outcomes)


# ------------------------------------------------------------------------------ scoring


def asset_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    """(asset kind, asset id) of a truth entry."""
    return ("vehicle", entry["vin"]) if "vin" in entry else ("charger", entry["charger_id"])


def _openings(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """One entry per alert id (its first upsert), in the order they were opened."""
    first: dict[str, Alert] = {}
    for alert in alerts:
        first.setdefault(alert["id"], alert)
    return first


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _per_1000(count: int, asset_days: int) -> float | None:
    return round(1000 * count / asset_days, 3) if asset_days else None


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
        report_faults[name] = _fault_summary(
            name, [d for d in detections if d["fault"] == name], len(of_type), len(on_faulty))

    healthy_alerts = {"vehicle": 0, "charger": 0}
    unrelated = 0
    for alert in openings:
        carried = fault_of.get((alert["asset_kind"], alert["asset_id"]))
        if carried is None:
            healthy_alerts[alert["asset_kind"]] = healthy_alerts.get(alert["asset_kind"], 0) + 1
        elif alert["type"] != FAULTS[carried["fault"]].alert_type:
            unrelated += 1
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
        "false_alerts_per_1000_vehicle_days": _per_1000(healthy_alerts["vehicle"],
                                                        healthy_days["vehicle"]),
        "false_alerts_on_healthy_chargers": healthy_alerts["charger"],
        "healthy_charger_days": healthy_days["charger"],
        "false_alerts_per_1000_charger_days": _per_1000(healthy_alerts["charger"],
                                                        healthy_days["charger"]),
        "unrelated_alerts_on_faulty_assets": unrelated,
        "duplicate_alerts": sum(len(v) - 1 for v in by_asset_type.values()),
        "alerts": len(openings),
        "charging_attribution_accuracy": _ratio(len(attributed), len(charging_alerts)),
        "charging_alerts": len(charging_alerts),
        "charging_alerts_rightly_attributed": len(attributed),
        "detections": detections,
    }


def _fault_summary(name: str, rows: list[dict[str, Any]], alerts: int, on_faulty: int
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
        "recall": _ratio(len(detected), len(rows)),
        "alerts": alerts, "alerts_on_faulty_assets": on_faulty,
        "precision": _ratio(on_faulty, alerts),
        "median_lead_time_h": round(statistics.median(leads), 2) if leads else None,
        "worst_lead_time_h": round(leads[0], 2) if leads else None,
        "lead_times_measured": len(leads),
        "median_delay_h": round(statistics.median(delays), 2) if delays else None,
        "worst_delay_h": round(delays[-1], 2) if delays else None,
        "median_sessions_to_alert": statistics.median(sessions) if sessions else None,
        "worst_sessions_to_alert": sessions[-1] if sessions else None,
        "duplicate_alerts": sum(max(0, d["alerts"] - 1) for d in rows),
    }


def pool(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report of several runs taken together (``eval --seeds``): counts add up, ratios,
    medians and worst cases are taken over every asset of every run. With four cars per fault
    type a run's recall moves in steps of 0.25; pooled, one miss in ten runs is 0.975."""
    names = sorted({name for r in reports for name in r["faults"]})
    detections = [{**d, "seed": r.get("scenario", {}).get("seed")}
                  for r in reports for d in r["detections"]]
    faults = {name: _fault_summary(
        name, [d for d in detections if d["fault"] == name],
        sum(r["faults"][name]["alerts"] for r in reports if name in r["faults"]),
        sum(r["faults"][name]["alerts_on_faulty_assets"] for r in reports
            if name in r["faults"])) for name in names}

    def total(key: str) -> int:
        return sum(int(r[key]) for r in reports)

    charging, attributed = total("charging_alerts"), total("charging_alerts_rightly_attributed")
    return {
        "faults": faults,
        "false_alerts_on_healthy_vehicles": total("false_alerts_on_healthy_vehicles"),
        "healthy_vehicle_days": total("healthy_vehicle_days"),
        "false_alerts_per_1000_vehicle_days": _per_1000(
            total("false_alerts_on_healthy_vehicles"), total("healthy_vehicle_days")),
        "false_alerts_on_healthy_chargers": total("false_alerts_on_healthy_chargers"),
        "healthy_charger_days": total("healthy_charger_days"),
        "false_alerts_per_1000_charger_days": _per_1000(
            total("false_alerts_on_healthy_chargers"), total("healthy_charger_days")),
        "unrelated_alerts_on_faulty_assets": total("unrelated_alerts_on_faulty_assets"),
        "duplicate_alerts": total("duplicate_alerts"),
        "alerts": total("alerts"),
        "charging_attribution_accuracy": _ratio(attributed, charging),
        "charging_alerts": charging,
        "charging_alerts_rightly_attributed": attributed,
        "detections": detections,
    }


def _sessions_to_alert(outcomes: Iterable[Mapping[str, Any]], charger_id: str, onset: int,
                       alert_ts: int) -> int:
    """Sessions on ``charger_id`` that started after the onset and ended by the alert (the
    session that raised it included)."""
    return sum(1 for o in outcomes if o["charger_id"] == charger_id
               and onset <= o["start_ts"] and o["ts"] <= alert_ts)


def score_run(run: Run) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------ printing


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


# ------------------------------------------------------------------------------ CLI


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
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
    parser.add_argument("--vehicles", type=_non_negative, default=100,
                        help="simulated cars (default 100)")
    parser.add_argument("--chargers", type=_non_negative, default=None,
                        help="public chargers (default: vehicles / 10)")
    parser.add_argument("--days", type=_positive, default=45,
                        help="simulated days (default 45)")
    parser.add_argument("--faults", default=None,
                        help="fault mix like weak_12v:5,charger_faulted:1 (default: every "
                        "registered fault on 2%% of its asset kind, at least one each, at most "
                        "half the assets faulty)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON here")
    parser.add_argument("--plot", metavar="DIR",
                        help="draw signal, onset, first alert and failure of sample detections "
                        "(PNG files) into this directory")
    parser.add_argument("--record", metavar="FILE",
                        help="write the simulated stream as JSON lines (what `ownercare replay` "
                        "reads)")
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


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> int:
    try:
        scenario = scenario_from_args(args)
        for flag, path in (("--json", args.json), ("--record", args.record)):
            if path is not None and not Path(path).parent.is_dir():
                raise ValueError(f"{flag}: directory {str(Path(path).parent)!r} does not exist")
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
        runs = [_run_one(replace(scenario, seed=seed), args) for seed in args.seeds]
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


def _run_one(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """Run, print and (``--plot``) draw one scenario; its report."""
    started, cpu_started = time.perf_counter(), time.process_time()
    children_started = _children_cpu_s()
    series = None
    observe = None
    if args.plot is not None:
        from ownercare.evalplot import SeriesRecorder

        series = SeriesRecorder(scenario.fleet().truth())
        observe = series.observe
    result = run_scenario(scenario, args.processes, observe,
                          Path(args.record) if args.record else None)
    report = score_run(result)
    print(f"ownercare eval: seed {scenario.seed}, {scenario.vehicles} vehicles, "
          f"{scenario.chargers} chargers, {scenario.days} days, faults "
          f"{','.join(f'{k}:{v}' for k, v in scenario.faults.items()) or 'none'}: "
          f"{result.messages} messages, {report['alerts']} alerts "
          f"({time.perf_counter() - started:.0f} s; CPU: {time.process_time() - cpu_started:.0f} s "
          f"this process, {_children_cpu_s() - children_started:.0f} s the simulator process)")
    print(format_report(report))
    if series is not None:
        from ownercare.evalplot import plot_detections

        written = plot_detections(report, series, Path(args.plot))
        print(f"{len(written)} plots written to {args.plot}")
    return report
