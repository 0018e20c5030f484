"""``ownercare faults``: kill -9 each part of a real ``ownercare run`` and count what it cost.

Two runs of the same labelled fleet (same seed, so the same message stream): one left alone,
one whose processes are killed with SIGKILL in turn while the fleet publishes: the bridge,
the worker, its view writer (the worker's child process), the API, and the embedded brokers:
the MQTT broker (amqtt) and, when the embedded Kafka keeps its log on disk, Tansu and its S3
server. Supervision restarts them; the figures compare the second run with the first: records
lost (distinct records in Kafka against what the simulator sent and the broker acknowledged),
alerts equal, lost, duplicated or false (by asset, type and first_seen event time).

With ``--kafka-storage memory`` a kill -9 of Tansu cannot be survived without loss;
:func:`kill_kafka` measures what the stack does instead: it stops with one line, the database
keeps every alert, and ``ownercare run --resume`` starts again and detects on new data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingest import contract
from ownercare.faultrun import (
    BROKER_TARGETS,
    EVERY_TARGET,
    KAFKA_TARGETS,
    TARGETS,
    FaultRunError,
    Kill,
    Scenario,
    StackRun,
    kill_in_turn,
    metrics_lines,
    read_records,
)
from ownercare.statedir import database_holds

__all__ = ["BROKER_TARGETS", "EVERY_TARGET", "KAFKA_SCENARIO", "KAFKA_TARGETS", "TARGETS",
           "Scenario", "compare", "default_kills", "kill_kafka", "match_alerts", "run_fleet",
           "table"]

# A small fleet with trouble codes, its Kafka in memory: alerts soon, then Kafka is killed.
KAFKA_SCENARIO = Scenario(vehicles=12, chargers=3, faults="dtc:3", speed=3600, days=365,
                          kafka_storage="memory")


@dataclass
class RunResult:
    name: str
    sent: int
    records: int  # records in Kafka, redeliveries included
    late: int  # distinct records more than LATE_MS behind their partition's newest
    distinct: set[bytes] = field(repr=False)
    alerts: list[dict[str, Any]] = field(repr=False)
    faulty_assets: set[str] = field(repr=False)
    kills: list[Kill]
    exit_code: int
    orphans: list[int]
    restarts: dict[str, int]


def settling(alerts: Callable[[], list[dict[str, Any]] | None], polls: int
             ) -> Callable[[], list[dict[str, Any]] | None]:
    """A ``wait_for`` predicate: the alerts once they stayed the same (ids and last-seen event
    times) for ``polls`` polls 1.5 s apart, None until then or while the API does not answer."""
    history: list[list[tuple[str, int]]] = []

    def settled() -> list[dict[str, Any]] | None:
        current = alerts()
        if current is None:
            return None
        history.append(sorted((a["id"], a["last_seen_event_ms"]) for a in current))
        time.sleep(1.5)
        return current if len(history) >= polls and all(
            h == history[-1] for h in history[-polls:]) else None

    return settled


def settled_alerts(run: StackRun, polls: int = 10, timeout: float = 900) -> list[dict[str, Any]]:
    """The alerts once the simulator is done and they stayed the same for ``polls`` polls."""
    run.wait_for(run.simulator_sent, "the simulation to finish", timeout)
    return run.wait_for(settling(run.alerts, polls), "the alerts to settle", timeout)


def default_kills(kafka_storage: str) -> tuple[str, ...]:
    """Every process a run of that storage survives: Tansu's and its S3 server's only on
    disk (in memory a kill stops the stack, :func:`kill_kafka`)."""
    return tuple(t for t in EVERY_TARGET
                 if kafka_storage == "disk" or t not in KAFKA_TARGETS)


def run_fleet(scenario: Scenario, workdir: Path, name: str,
              kills: tuple[str, ...] = ()) -> RunResult:
    """One run of ``scenario``; ``kills`` killed in turn while the fleet publishes."""
    run = StackRun(scenario, workdir, name)
    done: list[Kill] = []
    try:
        info = run.wait_for(run.info, "run.json", 180)
        run.wait_for(run.fleet_now, "telemetry in the database")
        done = kill_in_turn(run, scenario, kills)
        alerts = settled_alerts(run)
        sent = run.simulator_sent() or 0
        records, distinct, late = read_records(info["kafka_url"])
        health = run.api("/health/live")
        restarts = {n: s.get("restarts", 0) for n, s in health.get("services", {}).items()}
    finally:
        code = run.stop()
    truth = json.loads(run.truth.read_text()) if run.truth.exists() else []
    faulty = {t.get("vin") or t.get("charger_id") or t.get("asset_id") for t in truth}
    return RunResult(name, sent, records, late, distinct, alerts, {a for a in faulty if a}, done,
                     code, run.orphans(), restarts)


def alert_key(alert: dict[str, Any]) -> tuple[str, str, int]:
    return alert["asset_id"], alert["type"], alert["first_seen_event_ms"]


def match_alerts(baseline: list[dict[str, Any]], faulted: list[dict[str, Any]]
                 ) -> dict[str, int]:
    """Alerts equal (same asset, type and first_seen: a silence alert's is the first sweep
    boundary past its threshold, whatever batches the records came in), lost (only in the
    baseline), duplicated (a second alert for a problem already matched) and false (any other
    alert only in the faulted run)."""
    remaining = sorted(map(alert_key, baseline))
    matched: set[tuple[str, str]] = set()
    equal = duplicated = false = 0
    for asset, kind, first in sorted(map(alert_key, faulted)):
        twin = next((b for b in remaining if b == (asset, kind, first)), None)
        if twin is not None:
            remaining.remove(twin)
            matched.add((asset, kind))
            equal += 1
        elif (asset, kind) in matched:
            duplicated += 1
        else:
            false += 1
    return {"alerts_baseline": len(baseline), "alerts_equal": equal,
            "alerts_lost": len(remaining), "alerts_duplicated": duplicated,
            "alerts_false": false}


def compare(baseline: RunResult, faulted: RunResult) -> dict[str, Any]:
    """The figures of a faulted run against the uninterrupted one."""
    return {
        "faults_tried": len(faulted.kills),
        "faults_survived": sum(k.survived for k in faulted.kills),
        "kills": [asdict(k) for k in faulted.kills],
        "messages_sent": faulted.sent,
        "records_in_kafka": faulted.records,
        "distinct_records": len(faulted.distinct),
        "records_lost": max(0, faulted.sent - len(faulted.distinct)),
        "records_missing_vs_baseline": len(baseline.distinct - faulted.distinct),
        "records_extra_vs_baseline": len(faulted.distinct - baseline.distinct),
        "records_out_of_order": faulted.late,
        "baseline_records_out_of_order": baseline.late,
        "baseline_messages_sent": baseline.sent,
        "baseline_distinct_records": len(baseline.distinct),
        **match_alerts(baseline.alerts, faulted.alerts),
        "alerts_first_seen_moved": sorted(
            set(map(alert_key, faulted.alerts)) ^ set(map(alert_key, baseline.alerts))),
        "alerts_on_healthy_assets": sum(a["asset_id"] not in faulted.faulty_assets
                                        for a in faulted.alerts),
        "baseline_alerts_on_healthy_assets": sum(a["asset_id"] not in baseline.faulty_assets
                                                 for a in baseline.alerts),
        "restarts": faulted.restarts,
        "exit_codes": [baseline.exit_code, faulted.exit_code],
        "orphans": baseline.orphans + faulted.orphans,
    }


def kill_kafka(scenario: Scenario, workdir: Path) -> dict[str, Any]:
    """kill -9 the embedded Kafka broker mid-run: what the stack does and what it loses,
    then whether ``ownercare run --resume`` on the same state detects on new data."""
    run = StackRun(scenario, workdir, "kafka-killed")
    try:
        info = run.wait_for(run.info, "run.json", 180)
        run.wait_for(lambda: len(run.alerts() or []) >= 1, "a first alert")
        lag = consumer_lag(run)
        alerts_before = {alert_key(a) for a in run.alerts() or []}
        held_before = database_holds(run.db_url)
        killed_at = time.monotonic()
        os.kill(info["tansu_pid"], signal.SIGKILL)
        run.wait_for(lambda: run.proc.poll() is not None, "the stack to stop", 180,
                     may_exit=True)
        stopped_s = round(time.monotonic() - killed_at, 1)
    finally:
        exit_code = run.stop()
    reason = [line for line in run.output.splitlines() if line.startswith("ownercare run: ")]
    held_after = database_holds(run.db_url)
    resumed = StackRun(scenario, workdir, "kafka-resumed", "--resume", state=run.state)
    try:
        resumed.wait_for(resumed.info, "run.json of the resumed run", 180)
        resumed.wait_for(lambda: resumed.fleet_now() > (held_after.fleet_now_ms or 0),
                         "new telemetry after the resume")
        alerts_after = {alert_key(a) for a in resumed.alerts() or []}
        new_alert = detects_new_trouble_code(resumed)
    finally:
        resumed_code = resumed.stop()
    return {
        "exit_code": exit_code,
        "stopped_within_s": stopped_s,
        "stop_line": reason[0] if reason else "",
        "traceback": "Traceback" in run.output,
        "orphans": run.orphans() + resumed.orphans(),
        "unprocessed_records_lost_at_least": lag,
        "alerts_before": len(alerts_before),
        "alerts_kept": len(alerts_before & alerts_after),
        "alerts_in_database_before_after": [held_before.alerts, held_after.alerts],
        "resume_detects_new_data": new_alert,
        "resumed_exit_code": resumed_code,
    }


def consumer_lag(run: StackRun) -> int:
    """Records acknowledged to the devices but not yet processed (the worker's lag)."""
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in metrics_lines(run)
                   if line.startswith("ownercare_consumer_lag_records{")))


def detects_new_trouble_code(run: StackRun) -> bool:
    """Publish a critical trouble code for a car of the fleet now; True once it is an alert."""
    from ingest.mqtt import make_client

    truth = json.loads(run.truth.read_text()) if run.truth.exists() else []
    faulty = {t.get("vin") for t in truth}
    vin = next(v["vin"] for v in run.api("/vehicles?limit=100")["items"]
               if v["vin"] not in faulty)
    now = run.fleet_now()
    client, connect = make_client(run.info()["mqtt_url"], f"faults-{os.getpid()}")
    client.connect(**connect)
    client.loop_start()
    try:
        info = client.publish(contract.topic_for(contract.Kind.VEHICLE_EVENT, vin), orjson.dumps(
            {"ts": now + 1000, "seq": 2**62, "type": "dtc", "code": "P0AA6"}), qos=1)
        info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    found = run.wait_for(
        lambda: [a for a in run.alerts() or [] if a["asset_id"] == vin and a["type"] == "dtc"
                 and a["first_seen_event_ms"] > now], "the trouble code's alert", 120)
    return bool(found)


# ------------------------------------------------------------------------------------ CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the runs keep their state and logs, kept afterwards (default: "
                   "a new directory under the system's temporary directory)")
    p.add_argument("--kafka-storage", choices=("memory", "disk"), default="memory",
                   help="where the compared runs' embedded Kafka keeps its log (default "
                   "memory; then a separate small run measures a kill of Tansu, which stops "
                   "the stack)")
    p.add_argument("--kill", type=kill_list, default=None, metavar="LIST",
                   help="the processes killed in turn, comma-separated, from "
                   f"{','.join(EVERY_TARGET)} (default: all of them; {','.join(KAFKA_TARGETS)}"
                   " only with --kafka-storage disk)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    import tempfile

    kills = args.kill or default_kills(args.kafka_storage)
    in_memory = [t for t in kills if t in KAFKA_TARGETS and args.kafka_storage == "memory"]
    if in_memory:
        print(f"ownercare faults: --kill {','.join(in_memory)} needs --kafka-storage disk (in "
              "memory a killed Tansu loses its log and stops the stack)", file=sys.stderr)
        return 2
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="ownercare-faults-"))).resolve()
    if workdir.exists() and not workdir.is_dir():
        print(f"ownercare faults: --workdir {workdir} is not a directory", file=sys.stderr)
        return 2
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if any(workdir.iterdir()):
            # Runs write their state dirs by name: an earlier campaign's would be mixed in.
            print(f"ownercare faults: --workdir {workdir} is not empty; give a new or empty "
                  "directory", file=sys.stderr)
            return 2
    except OSError as exc:
        print(f"ownercare faults: --workdir {workdir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"ownercare faults: the runs' state and logs go to {workdir}", file=sys.stderr)
    scenario = Scenario(kafka_storage=args.kafka_storage)
    try:
        baseline = run_fleet(scenario, workdir, "baseline")
        faulted = run_fleet(scenario, workdir, "killed", kills)
        figures = compare(baseline, faulted)
        if args.kafka_storage == "memory":
            figures["kafka"] = kill_kafka(KAFKA_SCENARIO, workdir)
    except (FaultRunError, OSError) as exc:
        print(f"ownercare faults: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(table(figures))
    return 0


def kill_list(text: str) -> tuple[str, ...]:
    """``--kill``: names from EVERY_TARGET, comma-separated, each once."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in EVERY_TARGET]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give each of {','.join(EVERY_TARGET)} at most once, comma-separated")
    return names


def table(f: dict[str, Any]) -> str:
    rows = [("faults tried (kill -9)", f["faults_tried"]),
            ("faults survived", f["faults_survived"]),
            ("messages sent (acknowledged by the broker)", f["messages_sent"]),
            ("distinct records in Kafka", f["distinct_records"]),
            ("records lost", f["records_lost"]),
            ("records more than an hour out of order", f["records_out_of_order"]),
            ("alerts in the uninterrupted run", f["alerts_baseline"]),
            ("alerts equal", f["alerts_equal"]),
            ("alerts lost", f["alerts_lost"]),
            ("alerts duplicated", f["alerts_duplicated"]),
            ("alerts false", f["alerts_false"])]
    lines = ["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "| killed | survived | restarted and flowing again after |", "|---|---|---|",
             *(f"| {k['target']} | {'yes' if k['survived'] else 'no'} | {k['recovered_s']} s |"
               for k in f["kills"])]
    if "kafka" in f:
        k = f["kafka"]
        lines += ["", "| embedded Kafka (Tansu) killed | |", "|---|---|",
                  f"| stack stopped within | {k['stopped_within_s']} s, exit {k['exit_code']} |",
                  f"| its line | {k['stop_line']} |",
                  f"| unprocessed records lost (at least) | "
                  f"{k['unprocessed_records_lost_at_least']} |",
                  f"| alerts kept in the database | {k['alerts_kept']} of "
                  f"{k['alerts_before']} |",
                  f"| `--resume` detects on new data | "
                  f"{'yes' if k['resume_detects_new_data'] else 'no'} |"]
    return "\n".join(lines)
