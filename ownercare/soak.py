"""``ownercare soak``: run the whole stack for a long while and show whether any process grows.

A leak shows only over time, and only in the real processes: this starts ``ownercare run`` in
a state dir of its own (everything after ``--`` goes to it), samples the resident memory of
every process of the stack (the run itself with its embedded MQTT broker, Tansu and its S3
server, every service and their children), the embedded Kafka's size on disk and the bridge's
message count, then stops the stack with SIGTERM. It writes ``soak.csv`` (one row per process
per sample), ``soak.json`` (the summary printed) and, with matplotlib, ``soak.png``.

``--load N`` drives the stack with N cars of the bench's load generator (``simulators.load``:
pre-encoded packets at one message per car per second, wall-clock event time) instead of the
simulated fleet, which cannot publish thousands of messages a second itself; the run then gets
``--no-simulator``.

"Flat" is judged on the second half of the run, after start-up and the retention window have
settled: the least-squares slope of each process's RSS there, in MiB per hour. Processing time
is right here: this measures the machine, it decides nothing a detector reports.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ownercare.embedded import free_port

MIB = 2**20


@dataclass(frozen=True)
class Sample:
    t_s: float
    process: str
    rss_mib: float


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour; None for < 2 times."""
    if len({t for t, _ in points}) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600.0


def summarise(samples: Sequence[Sample]) -> dict[str, dict[str, float | None]]:
    """Per process: RSS at the first and last sample, peak, and the second half's slope."""
    if not samples:
        return {}
    end = max(s.t_s for s in samples)
    out: dict[str, dict[str, float | None]] = {}
    for name in sorted({s.process for s in samples}):
        mine = sorted((s for s in samples if s.process == name), key=lambda s: s.t_s)
        half = [(s.t_s, s.rss_mib) for s in mine if s.t_s >= end / 2]
        slope = slope_per_hour(half)
        out[name] = {"first_mib": mine[0].rss_mib, "last_mib": mine[-1].rss_mib,
                     "peak_mib": max(s.rss_mib for s in mine),
                     "second_half_mib_per_h": None if slope is None else round(slope, 2)}
    return out


def stack_processes(run_info: Mapping[str, Any]) -> dict[str, int]:
    """The stack's own pids by name, from ``run.json``."""
    pids = {"run": int(run_info["pid"])}
    for name in ("mqtt_pid", "tansu_pid", "kafka_s3_pid"):
        if run_info.get(name):
            pids[name.removesuffix("_pid")] = int(run_info[name])
    for name, service in run_info.get("services", {}).items():
        pids[name] = int(service["pid"])
    return pids


def sample_rss(run_info: Mapping[str, Any], t_s: float) -> list[Sample]:
    import psutil

    out = []
    for name, pid in stack_processes(run_info).items():
        try:
            proc = psutil.Process(pid)
            out.append(Sample(t_s, name, proc.memory_info().rss / MIB))
            for i, child in enumerate(proc.children(recursive=True)):
                if name in ("run",):  # the run's children are the services, sampled by name
                    continue
                out.append(Sample(t_s, f"{name}/child{i}", child.memory_info().rss / MIB))
        except psutil.Error:
            continue  # restarted between reading run.json and sampling: next round has it
    return out


def bridge_messages(run_info: Mapping[str, Any]) -> float | None:
    request = urllib.request.Request(f"{run_info['api_url']}/metrics",
                                     headers={"Authorization": f"Bearer {run_info['api_key']}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ownercare_bridge_messages_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MIB if path.exists() \
        else 0.0


def plot(samples: Sequence[Sample], rates: Sequence[tuple[float, float]], path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    for name in sorted({s.process for s in samples}):
        mine = [(s.t_s / 60, s.rss_mib) for s in samples if s.process == name]
        top.plot(*zip(*mine, strict=True), label=name)
    top.set_ylabel("RSS (MiB)")
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small", ncol=3)
    if rates:
        bottom.plot([t / 60 for t, _ in rates], [r for _, r in rates], color="black")
    bottom.set_ylabel("bridge msg/s")
    bottom.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# A trouble code from a different car every 20 s: alerts and cases keep coming, as in a fleet,
# without the bench's one a second filling the database.
LOAD_DTC_PER_S = 0.05


def run_soak(minutes: float, every_s: float, out: Path, run_args: Sequence[str],
             load_vehicles: int | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    state = out / "state"
    mqtt_port = free_port()
    if load_vehicles:
        run_args = [*run_args, "--no-simulator"]
    command = [sys.executable, "-m", "ownercare", "run", "--state-dir", str(state),
               "--api-port", str(free_port()), "--mqtt-port", str(mqtt_port),
               "--kafka-port", str(free_port()), *run_args]
    load_command = None if not load_vehicles else [
        sys.executable, "-m", "simulators.load", "paced", "--vehicles", str(load_vehicles),
        "--rate", "1", "--duration", str(minutes * 60), "--inject-per-s", str(LOAD_DTC_PER_S),
        "--mqtt-url", f"mqtt://127.0.0.1:{mqtt_port}"]
    with (out / "run.out").open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            return _observe(proc, minutes, every_s, out, state, run_args, load_command)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()


def _observe(proc: subprocess.Popen[bytes], minutes: float, every_s: float, out: Path,
             state: Path, run_args: Sequence[str],
             load_command: Sequence[str] | None) -> dict[str, Any]:
    run_json = state / "run.json"
    deadline = time.monotonic() + 180
    while not run_json.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ownercare run did not start (see {out / 'run.out'})")
        time.sleep(0.5)
    if load_command is None:
        return _sample(proc, minutes, every_s, out, state, "ownercare run " + " ".join(run_args))
    with (out / "load.out").open("wb") as load_log:
        load = subprocess.Popen(load_command, stdout=load_log, stderr=subprocess.STDOUT)
        try:
            return _sample(proc, minutes, every_s, out, state,
                           f"ownercare run {' '.join(run_args)} + "
                           f"simulators.load {' '.join(load_command[3:-2])}")
        finally:
            load.terminate()
            try:
                load.wait(30)
            except subprocess.TimeoutExpired:
                load.kill()


def _sample(proc: subprocess.Popen[bytes], minutes: float, every_s: float, out: Path,
            state: Path, command: str) -> dict[str, Any]:
    run_json = state / "run.json"
    samples: list[Sample] = []
    rates: list[tuple[float, float]] = []
    disk: list[tuple[float, float]] = []
    last: tuple[float, float] | None = None
    t0 = time.monotonic()
    while (t := time.monotonic() - t0) < minutes * 60:
        if proc.poll() is not None:
            raise RuntimeError(f"ownercare run stopped after {t:.0f} s (see {out / 'run.out'})")
        info = json.loads(run_json.read_text())
        samples += sample_rss(info, t)
        disk.append((t, disk_mib(state / "kafka")))
        count = bridge_messages(info)
        if count is not None:
            if last is not None and t > last[0]:
                rates.append((t, (count - last[1]) / (t - last[0])))
            last = (t, count)
        time.sleep(every_s)
    with (out / "soak.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "process", "rss_mib"])
        writer.writerows((round(s.t_s, 1), s.process, round(s.rss_mib, 2)) for s in samples)
    report: dict[str, Any] = {
        "command": command, "minutes": minutes,
        "bridge_msgs_per_s": round(sum(r for _, r in rates) / len(rates), 1) if rates else None,
        "kafka_disk_mib": {"first": round(disk[0][1], 1), "last": round(disk[-1][1], 1),
                           "peak": round(max(d for _, d in disk), 1)} if disk else None,
        "processes": summarise(samples),
    }
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    # matplotlib is the `bench` extra; without it the CSV and JSON carry the same figures.
    with contextlib.suppress(ImportError):
        plot(samples, rates, out / "soak.png", f"ownercare soak: {report['command']}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulators.cli import positive_float, positive_int

    parser.add_argument("--minutes", type=positive_float, default=30.0,
                        help="how long to watch the running stack (default 30)")
    parser.add_argument("--every", type=positive_float, default=30.0, metavar="S",
                        help="seconds between samples (default 30)")
    parser.add_argument("--out", default="soak", metavar="DIR",
                        help="where soak.csv, soak.json, soak.png, run.out and the run's state "
                             "dir go (default ./soak)")
    parser.add_argument("--load", type=positive_int, metavar="VEHICLES",
                        help="drive the stack with this many cars of the bench's load "
                             "generator at 1 msg/s each instead of the simulated fleet "
                             "(the run gets --no-simulator)")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN ARGS",
                        help="arguments for `ownercare run` (the fleet), after --")


def run(args: argparse.Namespace) -> int:
    run_args = [a for a in args.run_args if a != "--"]
    forbidden = {"--state-dir", "--api-port", "--mqtt-port", "--kafka-port", "--resume"}
    if clash := sorted(forbidden & {a.split("=", 1)[0] for a in run_args}):
        print(f"ownercare soak: {', '.join(clash)}: chosen by the soak itself", file=sys.stderr)
        return 2
    try:
        report = run_soak(args.minutes, args.every, Path(args.out), run_args, args.load)
    except RuntimeError as exc:
        print(f"ownercare soak: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0
