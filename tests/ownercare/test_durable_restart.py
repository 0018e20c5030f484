"""The embedded Kafka on disk survives its own death and the worker's.

A labelled fleet's first half goes into the embedded Kafka (Tansu on the local S3 server); a
real worker processes and commits it; then the worker, Tansu and the S3 server are all
SIGKILLed at once. New processes on the same state dir must hold every record, the group's
committed offsets, and the detector states: after the second half, the alerts are exactly an
uninterrupted run's (a weakening 12 V battery is only seen with the days before the kill), and
the restarted worker replays no more than a checkpoint's worth of the first half.

Then ``ownercare run`` itself, stopped by SIGTERM or killed with all its children, started
again with ``--resume``: it says it resumes on the log, and nothing in Kafka is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest import topics
from ingest.kafka import ensure_topics
from ownercare import embedded, embedded_s3
from ownercare.embedded_kafka import EmbeddedKafka
from ownercare.retention import committed
from storage.store import Store
from tests.conftest import SHARED_PARTITIONS
from tests.stackkit import start_service, wait_for_log
from tests.worker.test_worker_restart import assert_settles_to, fleet_batches, produce

pytestmark = pytest.mark.integration

PARTITIONS = SHARED_PARTITIONS  # what fleet_batches and produce partition by


def cluster_dir(state: Path) -> Path:
    return next((state / "kafka" / embedded_s3.BUCKET / "clusters").iterdir())


def group_offsets(state: Path, group: str) -> dict[int, int]:
    """The group's committed offsets on the vehicles topic, as stored on disk."""
    parts = cluster_dir(state) / "groups" / "consumers" / group / "offsets" / topics.VEHICLES
    found = {}
    for path in (parts / "partitions").glob("*.json"):
        found[int(path.stem)] = json.loads(path.read_text())["offset"]
    return found


async def read_all(bootstrap: str, topic: str, ends: dict[int, int]) -> dict[int, list[int]]:
    """Every offset of ``topic`` up to ``ends`` (per partition), read from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        got: dict[int, list[int]] = {p: [] for p in ends}
        deadline = time.monotonic() + 60
        while any(len(got[p]) < ends[p] for p in ends) and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                got[tp.partition] += [r.offset for r in records]
        return got
    finally:
        await consumer.stop()


def wait_for_offsets(state: Path, group: str, ends: dict[int, int], within_s: float = 120,
                     ) -> dict[int, int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        offsets = group_offsets(state, group) if (state / "kafka").exists() else {}
        if all(offsets.get(p, 0) >= end for p, end in ends.items()):
            return offsets
        time.sleep(0.5)
    raise AssertionError(f"the worker did not commit {ends} in time: {offsets}")


def replayed(log_text: str, ends: dict[int, int]) -> int:
    """Records below ``ends`` (per partition) the worker replayed (its catch-up lines)."""
    return sum(max(0, min(int(to), ends.get(int(part), 0)) - int(start))
               for part, start, to in re.findall(
                   r"diagnose_catch_up partition=(\d+) from=(\d+) to=(\d+)", log_text))


def worker_env(tmp_path: Path, port: int, app_id: str) -> dict[str, str]:
    """A worker on the embedded Kafka at ``port``, alerts in SQLite under ``tmp_path``."""
    return {"OWNERCARE_KAFKA_URL": f"kafka://127.0.0.1:{port}",
            "OWNERCARE_PARTITIONS": str(PARTITIONS),
            "OWNERCARE_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.sqlite'}",
            "OWNERCARE_STATE_DIR": str(tmp_path), "OWNERCARE_WORKER_APP_ID": app_id,
            # Checkpoints and view writes every second: the replay after a kill is a second's
            # records or so (a checkpoint never passes what the view writer has written, and
            # with its default 10 s the replay was up to ten seconds' records).
            "OWNERCARE_STATE_CHECKPOINT_S": "1", "OWNERCARE_LATEST_FLUSH_S": "1"}


def test_kafka_and_worker_killed_together_resume_from_disk(tmp_path: Path) -> None:
    batches, expected = fleet_batches(seed=31)
    fleet_vins = {record["id"] for batch in batches for record in batch}
    assert len({asset for asset, *_ in expected.values()}) == 3
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    port = embedded.free_port()
    group = f"durable-{os.getpid()}"
    env = worker_env(tmp_path, port, group)
    half = len(batches) // 2

    kafka = EmbeddedKafka(port, "disk", state, logs, 0, retention_h=24)
    env.update(kafka.service_env())  # what `ownercare run` gives its services
    kafka.start()
    first = None
    try:
        asyncio.run(ensure_topics(f"127.0.0.1:{port}", PARTITIONS))
        first = start_service("worker", env, tmp_path / "worker1.log")
        ends: dict[int, int] = {}
        for batch in batches[:half]:
            # A steady stream, as a fleet sends it: the worker checkpoints a partition when
            # one of its records arrives a checkpoint interval after the last checkpoint.
            ends.update(asyncio.run(produce(env["OWNERCARE_KAFKA_URL"], [batch])))
            time.sleep(1.2)
        wait_for_log(tmp_path / "worker1.log", "alert_emitted", 180, first)
        before = wait_for_offsets(state, group, ends)
    finally:
        # Everything at once, no chance to flush or commit anything more.
        for proc in (first, kafka.tansu.proc, kafka.s3.proc):
            if proc is not None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
    assert committed(cluster_dir(state))[(topics.VEHICLES, 0)] == before[0]

    again = EmbeddedKafka(port, "disk", state, logs, 0, retention_h=24)
    assert again.resume_notice().startswith(f"the embedded Kafka resumes on its log in "
                                            f"{state / 'kafka'}")
    again.start()
    second = None
    try:
        held = asyncio.run(read_all(f"127.0.0.1:{port}", topics.VEHICLES, ends))
        assert held == {p: list(range(end)) for p, end in ends.items()}  # not one lost
        assert group_offsets(state, group) == before  # the offsets survived as committed
        asyncio.run(produce(env["OWNERCARE_KAFKA_URL"], batches[half:]))
        second = start_service("worker", env, tmp_path / "worker2.log")
        # The same alerts as an uninterrupted run: the detector states came back.
        assert_settles_to(Store(env["OWNERCARE_DATABASE_URL"]), fleet_vins, expected)
        text = (tmp_path / "worker2.log").read_text()
        assert "alert_emitted" in text
        # Resumed from the committed offsets and the changelogged position: no replay of
        # the first half from its start.
        assert replayed(text, ends) < sum(ends.values()) // 4, text[-3000:]
    finally:
        if second is not None:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
        again.stop()


class Run:
    """``ownercare run`` (no simulator) on ``state``, its output in a file."""

    def __init__(self, tmp_path: Path, name: str, state: Path, *args: str) -> None:
        self.out_path = tmp_path / f"{name}.out"
        self.api, mqtt, self.kafka = (embedded.free_port() for _ in range(3))
        env = {**os.environ, "OWNERCARE_PARTITIONS": "2",
               "OWNERCARE_WORKER_APP_ID": f"durable-run-{os.getpid()}"}
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ownercare", "run", "--vehicles", "3", "--chargers", "1",
                 "--speed", "100000", "--state-dir", str(state), "--api-port", str(self.api),
                 "--mqtt-port", str(mqtt), "--kafka-port", str(self.kafka), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_for(self, needle: str, within_s: float = 180) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if needle in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"{needle!r} not in the output:\n{self.output[-3000:]}")


def vehicle_ends(state: Path) -> dict[int, int]:
    """The vehicles topic's high watermarks as Tansu stored them."""
    parts = cluster_dir(state) / "topics" / topics.VEHICLES / "partitions"
    return {int(p.name): json.loads((p / "watermark.json").read_text())["high"] or 0
            for p in parts.iterdir() if (p / "watermark.json").exists()}


def vehicle_records(state: Path) -> int:
    return sum(vehicle_ends(state).values())


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_ownercare_run_resumes_on_its_kafka_log(tmp_path: Path, how: str) -> None:
    state = tmp_path / "state"
    group = f"durable-run-{os.getpid()}"
    run = Run(tmp_path, "first", state, "--duration", "1d")
    try:
        run.wait_for("simulation_finished")
        run_json = json.loads((state / "run.json").read_text())
        wait_for_offsets(state, group, vehicle_ends(state), within_s=180)
    finally:
        if how == "SIGTERM":
            run.proc.send_signal(signal.SIGTERM)
            assert run.proc.wait(90) == 0, run.output[-3000:]
        else:  # ownercare run and every process it started, at once
            for pid in (run.proc.pid, run_json["tansu_pid"], run_json["kafka_s3_pid"],
                        *(s["pid"] for s in run_json["services"].values())):
                with contextlib.suppress(ProcessLookupError):  # the finished simulator
                    os.kill(pid, signal.SIGKILL)
            run.proc.wait(30)
    held = vehicle_records(state)
    before = group_offsets(state, group)
    assert held > 0
    assert before
    worker_log = state / "logs" / "worker.log"
    first_lines = len(worker_log.read_bytes())

    resumed = Run(tmp_path, "resumed", state, "--resume", "--no-simulator")
    try:
        resumed.wait_for("ownercare is running")
        assert (f"ownercare run: the embedded Kafka resumes on its log in {state / 'kafka'}"
                in resumed.output)
        assert vehicle_records(state) == held  # nothing lost
        # The worker goes on from its committed offsets to the end of the log, replaying
        # only what its last checkpoint missed, never the log from its start.
        ends = vehicle_ends(state)
        after = wait_for_offsets(state, group, ends)
        assert all(after[p] >= before.get(p, 0) for p in after)
        text = worker_log.read_bytes()[first_lines:].decode(errors="replace")
        assert replayed(text, ends) < held // 2, text[-3000:]
    finally:
        resumed.proc.send_signal(signal.SIGTERM)
        assert resumed.proc.wait(90) == 0, resumed.output[-3000:]
