"""The embedded Kafka of ``ownercare run``: Tansu, on disk or in memory, kept running.

On disk (the default, ``OWNERCARE_EMBEDDED_KAFKA_STORAGE=disk``) Tansu stores its log through
a local S3 server in ``<state dir>/kafka`` (``ownercare.embedded_s3``): records, consumer
groups' committed offsets and the worker's table changelogs outlive any process, so a
stopped or killed run started again on its state dir continues where it was. Either process
exiting is then only an outage: it is restarted on the same port after the supervisor's
backoff (``ownercare.supervisor``), and the services reconnect. In memory a Tansu exit
loses every topic, so it stops the stack. :mod:`ownercare.retention` bounds the disk.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ownercare import embedded, embedded_s3
from ownercare.retention import Retention, Sweep
from ownercare.supervisor import Crashes, GiveUp

log = logging.getLogger(__name__)

S3_STORAGE = f"s3://{embedded_s3.BUCKET}/"
SWEEP_EVERY_S = 60.0
# How long a committed offset must have stood before retention trims below it: well beyond
# what a restarted worker may replay (its last checkpoint interval or two, 30 s by default).
RETENTION_GRACE_S = 180.0
FETCH_WAIT_ENV = "OWNERCARE_KAFKA_FETCH_MAX_WAIT_MS"
DISK_FETCH_WAIT_MS = 500


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    restart_at_s: float | None = None
    crashes: Crashes = field(default_factory=Crashes)


class EmbeddedKafka:
    def __init__(self, port: int, storage: str, state_dir: Path, log_dir: Path,
                 s3_port: int, retention_h: float,
                 retention_grace_s: float = RETENTION_GRACE_S) -> None:
        if storage not in ("disk", "memory"):
            raise ValueError(f"embedded Kafka storage must be disk or memory, not {storage!r}")
        self.port = port
        self.durable = storage == "disk"
        self.data_root = state_dir / "kafka"
        self.log_dir = log_dir
        self.s3_port = s3_port or embedded.free_port()  # a restart keeps it: Tansu knows it
        # A new key each start: only this run's Tansu may use this run's S3 server.
        self.access_key = embedded_s3.new_access_key()
        self.tansu = Proc("tansu")
        self.s3 = Proc("kafka-s3")
        self.retention = Retention(self.data_root / embedded_s3.BUCKET, retention_h * 3600,
                                   retention_grace_s)
        self.next_sweep_s = 0.0
        self.last_sweep: Sweep | None = None

    def resume_notice(self) -> str:
        """What a resumed run continues on: the log an earlier run left, or nothing."""
        if not self.durable:
            return ("the embedded Kafka is in memory (OWNERCARE_EMBEDDED_KAFKA_STORAGE="
                    "memory): the detectors start with empty state")
        clusters = self.data_root / embedded_s3.BUCKET / "clusters"
        names = {t.name for t in clusters.glob("*/topics/*")}
        if not names:
            return (f"the embedded Kafka has no log in {self.data_root} to continue on: the "
                    "detectors start with empty state")
        size = sum(p.stat().st_size for p in clusters.rglob("*.batch"))
        return (f"the embedded Kafka resumes on its log in {self.data_root} ({len(names)} "
                f"topics, {size / 1e6:.1f} MB): the services continue from their committed "
                "offsets, the detectors from their states")

    def start(self) -> None:
        if self.durable:
            embedded.ensure_port_free(self.s3_port, "the embedded Kafka's storage (S3 server)")
            embedded.ensure_port_free(self.port, "the embedded Kafka broker (Tansu)")
            self._start_s3()
        self._start_tansu()

    def _start_s3(self) -> None:
        self.s3.proc = embedded_s3.start_s3(self.s3_port, self.data_root, self.access_key,
                                            self.log_dir / "kafka-s3.log")
        self.s3.started_s = time.monotonic()

    def _start_tansu(self) -> None:
        if self.durable:
            self.tansu.proc = embedded.start_tansu(
                self.port, self.log_dir / "tansu.log", S3_STORAGE,
                embedded_s3.tansu_env(self.s3_port, self.access_key))
        else:
            self.tansu.proc = embedded.start_tansu(self.port, self.log_dir / "tansu.log")
        self.tansu.started_s = time.monotonic()

    def service_env(self) -> dict[str, str]:
        """What the services need to read this broker well: on disk, Tansu answers a fetch
        with the partitions it could read from storage within the fetch's wait, one after
        the other, so under load a 100 ms wait starved the partitions read last for good."""
        if not self.durable or FETCH_WAIT_ENV in os.environ:
            return {}
        return {FETCH_WAIT_ENV: str(DISK_FETCH_WAIT_MS)}

    @property
    def pids(self) -> dict[str, int | None]:
        return {p.name: p.proc.pid if p.proc else None for p in (self.tansu, self.s3)}

    def tend(self) -> bool:
        """Restart whichever process exited (once its backoff passed) and trim the log when
        due; True when a process was restarted (its pid changed). RuntimeError (one line)
        when Tansu exits in memory mode or a process crashes too often."""
        now = time.monotonic()
        restarted = False
        for proc, start in ((self.s3, self._start_s3), (self.tansu, self._start_tansu)):
            if proc.proc is None:
                continue
            if proc.restart_at_s is not None:
                if now >= proc.restart_at_s:
                    start()
                    proc.restart_at_s = None
                    restarted = True
                    log.warning("kafka_process_restarted name=%s restarts=%s pid=%s", proc.name,
                                proc.crashes.restarts, proc.proc.pid)
                continue
            code = proc.proc.poll()
            if code is None:
                continue
            if not self.durable:
                raise RuntimeError("the embedded Kafka broker (Tansu) exited; its log was in "
                                   f"memory (see {self.log_dir / 'tansu.log'})")
            decision = proc.crashes.crashed(now, now - proc.started_s, code)
            if isinstance(decision, GiveUp):
                raise RuntimeError(f"{proc.name} {decision.reason}; stopped everything "
                                   f"(see {self.log_dir})")
            proc.restart_at_s = now + decision.backoff_s
            log.warning("kafka_process_crashed name=%s status=%s backoff_s=%s", proc.name,
                        code, decision.backoff_s)
        if self.durable and now >= self.next_sweep_s:
            self.next_sweep_s = now + SWEEP_EVERY_S
            self.sweep()
        return restarted

    def sweep(self) -> Sweep:
        swept = self.last_sweep = self.retention.sweep(time.time())
        if swept.deleted:
            log.info("kafka_retention deleted_batches=%s deleted_bytes=%s kept_bytes=%s",
                     swept.deleted, swept.deleted_bytes, swept.kept_bytes)
        return swept

    def stop(self) -> None:
        # Tansu first: it may still be writing to its storage.
        for proc in (self.tansu, self.s3):
            if proc.proc is not None:
                embedded.stop_process(proc.proc, 10)
