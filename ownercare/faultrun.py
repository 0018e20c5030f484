"""One ``ownercare run`` as a child of ``ownercare faults``: its processes killed with SIGKILL,
each replacement shown to do its work, and what reached Kafka read back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ingest import contract, topics
from ownercare import embedded
from ownercare.statedir import database_holds
from simulators.faults import FAULTS

T = TypeVar("T")
# A record this far behind the newest of its partition moves silence clocks out of order.
LATE_MS = 3_600_000
# What is killed, in this order; "view_writer" is the worker's child process. The embedded
# brokers' processes (run.json's pids) are BROKER_TARGETS; Kafka's survive only on disk.
TARGETS = ("bridge", "worker", "view_writer", "api")
KAFKA_TARGETS = {"tansu": "tansu_pid", "kafka-s3": "kafka_s3_pid"}
BROKER_TARGETS = {"mqtt": "mqtt_pid", **KAFKA_TARGETS}
EVERY_TARGET = (*TARGETS, *BROKER_TARGETS)
DEFAULT_FAULTS = ",".join(f"{name}:1" for name in FAULTS)


class FaultRunError(RuntimeError):
    """The stack did not do what a step waited for; the message says which and why."""


@dataclass(frozen=True)
class Scenario:
    """One labelled fleet, as ``ownercare run`` flags (the every-fault fleet of the tests)."""

    vehicles: int = 24
    chargers: int = 8
    seed: int = 4
    days: int = 30
    speed: int = 15000
    faults: str = DEFAULT_FAULTS
    drive_s: int = 300
    parked_s: int = 1800
    partitions: int = 2
    # OWNERCARE_EMBEDDED_KAFKA_STORAGE. In memory by default: a kill -9 of Tansu then stops
    # the stack (measured by kill_kafka); "disk" kills Tansu and its S3 server in turn too.
    kafka_storage: str = "memory"

    def argv(self) -> list[str]:
        return ["--vehicles", str(self.vehicles), "--chargers", str(self.chargers),
                "--seed", str(self.seed), "--faults", self.faults, "--speed", str(self.speed),
                "--duration", f"{self.days}d", "--drive-interval", str(self.drive_s),
                "--parked-interval", str(self.parked_s)]


class StackRun:
    """One ``ownercare run`` child with its own ports, state dir and output file."""

    def __init__(self, scenario: Scenario, workdir: Path, name: str, *extra: str,
                 state: Path | None = None) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = state or self.dir / "state"
        self.truth = self.dir / "truth.json"
        self.out_path = self.dir / "run.out"
        self.api_port = embedded.free_port()
        env = {**os.environ, "OWNERCARE_PARTITIONS": str(scenario.partitions),
               "OWNERCARE_LATEST_FLUSH_S": "0.5", "OWNERCARE_TREND_FLUSH_S": "0.5",
               "OWNERCARE_WORKER_APP_ID": f"faults-{os.getpid()}-{name}"}
        if scenario.kafka_storage:
            env["OWNERCARE_EMBEDDED_KAFKA_STORAGE"] = scenario.kafka_storage
        argv = [sys.executable, "-m", "ownercare", "run", *scenario.argv(), "--truth",
                str(self.truth), "--state-dir", str(self.state), "--api-port",
                str(self.api_port), "--mqtt-port", str(embedded.free_port()),
                "--kafka-port", str(embedded.free_port()), *extra]
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.every_pid: set[int] = set()

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.state / 'ownercare.db'}"

    def info(self) -> dict[str, Any]:
        try:
            info: dict[str, Any] = json.loads((self.state / "run.json").read_text())
        except (OSError, ValueError):
            return {}
        self.every_pid |= {s["pid"] for s in info.get("services", {}).values()}
        self.every_pid |= {info[k] for k in BROKER_TARGETS.values() if info.get(k)}
        return info

    def wait_for(self, predicate: Callable[[], T | None], what: str, timeout: float = 300,
                 may_exit: bool = False) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not may_exit and self.proc.poll() is not None:
                raise FaultRunError(f"{self.name}: ownercare run exited with "
                                    f"{self.proc.returncode} waiting for {what}:\n"
                                    f"{self.output[-3000:]}")
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise FaultRunError(f"{self.name}: no {what} within {timeout:.0f} s")

    def fleet_now(self) -> int:
        try:
            return database_holds(self.db_url).fleet_now_ms or 0
        except Exception:  # noqa: BLE001 - the database may be mid-write; ask again
            return 0

    def api(self, path: str, data: bytes | None = None) -> Any:
        info = self.info()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data,
            headers={"Authorization": f"Bearer {info.get('api_key', '')}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=15) as resp:
            return json.load(resp)

    def alerts(self) -> list[dict[str, Any]] | None:
        """Every alert at the API (all statuses), or None while the API does not answer."""
        items: list[dict[str, Any]] = []
        cursor = ""
        try:
            while True:
                page = self.api(f"/alerts?limit=200{'&cursor=' + cursor if cursor else ''}")
                items += page["items"]
                cursor = page.get("next_cursor") or ""
                if not cursor:
                    return items
        except (OSError, ValueError, KeyError):
            return None

    def simulator_sent(self) -> int | None:
        """Messages the simulator published and the broker acknowledged, once it is done."""
        log_path = self.state / "logs" / "simulator.log"
        with contextlib.suppress(OSError):
            for line in log_path.read_text(errors="replace").splitlines():
                if "simulator_done messages=" in line:
                    return int(line.split("simulator_done messages=")[1].split()[0])
        return None

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def orphans(self) -> list[int]:
        return [pid for pid in self.every_pid if alive(pid)]


def alive(pid: int) -> bool:
    """Running (a zombie is gone for our purposes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def view_writer_pid(worker_pid: int) -> int | None:
    """The worker's view writer: its child started by multiprocessing's spawn (not the
    resource tracker spawn also starts)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == worker_pid and b"spawn_main" in cmdline and alive(int(entry.name)):
            return int(entry.name)
    return None


def target_pid(run: StackRun, target: str) -> int | None:
    info = run.info()
    if target == "view_writer":
        worker = info.get("services", {}).get("worker", {}).get("pid")
        return view_writer_pid(worker) if worker else None
    if target in BROKER_TARGETS:
        pid = info.get(BROKER_TARGETS[target])
    else:
        pid = info.get("services", {}).get(target, {}).get("pid")
    return pid if pid and alive(pid) else None


@dataclass
class Kill:
    target: str
    pid: int
    during_publishing: bool  # the fleet was still publishing when it was killed
    survived: bool = False  # a new process took over and the telemetry moved on
    recovered_s: float | None = None


def kill_and_recover(run: StackRun, target: str, timeout: float = 300) -> Kill:
    """kill -9 ``target``; survived once a new process took over and did its work: the
    bridge forwards, the worker processes, the view writer writes, the API answers."""
    old = run.wait_for(lambda: target_pid(run, target), f"a running {target}")
    publishing = run.simulator_sent() is None
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    kill = Kill(target, old, publishing)
    new = run.wait_for(lambda: (p := target_pid(run, target)) != old and p,
                       f"a new {target} after kill -9 of {old}", timeout)
    run.every_pid.add(new)
    if target == "api" or not publishing:
        run.wait_for(lambda: run.alerts() is not None, "the API to answer", timeout)
    elif target == "view_writer" or target in BROKER_TARGETS:
        # Only the view writer writes the telemetry views the fleet's clock is read from, and
        # only from records that came through the brokers.
        before = run.fleet_now()
        run.wait_for(lambda: run.fleet_now() > before or run.simulator_sent() is not None,
                     "telemetry written by the new view writer", timeout)
    else:
        counter = "bridge_messages_acked_total" if target == "bridge" else \
            "worker_records_total"
        run.wait_for(lambda: service_counter(run, counter, new) > 0
                     or run.simulator_sent() is not None,
                     f"records through the new {target}", timeout)
    kill.survived = not alive(old) and alive(new)
    kill.recovered_s = round(time.monotonic() - killed_at, 1)
    return kill


def service_counter(run: StackRun, name: str, pid: int) -> float:
    """``ownercare_<name>`` of the process ``pid`` at the API's /metrics (0: not yet)."""
    lines = metrics_lines(run)
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(f"ownercare_{name}{{") and f':{pid}"' in line)


def metrics_lines(run: StackRun) -> list[str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{run.api_port}/metrics",
        headers={"Authorization": f"Bearer {run.info().get('api_key', '')}"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return list(resp.read().decode().splitlines())
    except (OSError, ValueError):
        return []


def kill_in_turn(run: StackRun, scenario: Scenario, targets: tuple[str, ...]) -> list[Kill]:
    """Each target killed in turn, spread over the simulated span (the i-th once the
    database's event time passed i/(n+1) of it), so each kill hits a different stretch."""
    from simulators.fleet import DEFAULT_START_MS

    span = scenario.days * 86_400_000
    kills = []
    for i, target in enumerate(targets, start=1):
        mark = DEFAULT_START_MS + span * i // (len(targets) + 1)

        def reached(m: int = mark) -> bool:
            return run.fleet_now() >= m or run.simulator_sent() is not None

        run.wait_for(reached, f"event time {mark} before killing the {target}")
        kills.append(kill_and_recover(run, target))
    return kills


def read_records(kafka_url: str) -> tuple[int, set[bytes], int]:
    """(records, distinct records, distinct records that came more than LATE_MS behind the
    newest of their partition) in the vehicle and charger topics, read to their ends."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> tuple[int, set[bytes], int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_url.removeprefix("kafka://"),
                                    group_id=None, enable_auto_commit=False)
        await consumer.start()
        total, distinct, late = 0, set(), 0
        try:
            await consumer.topics()  # fetches the metadata partitions_for_topic reads
            parts = [TopicPartition(t, p) for t in (topics.VEHICLES, topics.CHARGERS)
                     for p in sorted(consumer.partitions_for_topic(t) or [])]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            clocks: dict[Any, int] = {}
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for tp, msgs in (await consumer.getmany(timeout_ms=1000)).items():
                    for msg in msgs:
                        for record in contract.decode_batch(msg.value or b""):
                            total += 1
                            key = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
                            clock = clocks.get(tp, 0)
                            late += key not in distinct and record["ts"] < clock - LATE_MS
                            clocks[tp] = max(clock, record["ts"])
                            distinct.add(key)
        finally:
            await consumer.stop()
        return total, distinct, late

    return asyncio.run(go())
