"""``ownercare run``: the whole service on one machine.

amqtt (the MQTT broker), Tansu, the bridge, the worker, the API and the simulator run as
child processes (each service is exactly what ``ownercare <service>`` runs in production, just
pointed at the embedded brokers). Children die with this process (PR_SET_PDEATHSIG), and
Ctrl-C / SIGTERM stops them in reverse order of start. A service that crashes is restarted
after a backoff (:mod:`ownercare.supervisor`); only a burst of crashes stops the stack. The
restart counts go to ``supervisor.json`` in the state dir, which the API serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from config.settings import ArchiveSettings, BridgeSettings, RunSettings
from ownercare import embedded, heap, statedir
from ownercare.embedded_kafka import EmbeddedKafka
from ownercare.embedded_mqtt_process import EmbeddedMqtt
from ownercare.ota_keys import OtaKeyError, RunKeys
from ownercare.supervisor import Crashes, GiveUp
from vocab.severity import SEVERITIES

if TYPE_CHECKING:
    from ownercare.ocpp_run import OcppRun
    from storage.store import Store

log = logging.getLogger(__name__)

# How often the supervisor returns the C allocator's free memory (ownercare.heap).
TRIM_EVERY_S = 60.0

# Flags of `ownercare run` forwarded to the simulator child unchanged.
SIMULATOR_FLAGS = ("vehicles", "chargers", "seed", "speed", "start", "duration", "faults",
                   "drive_interval", "parked_interval", "truth", "qos", "ota_public_key",
                   "ota_bad_releases", "ota_failure_rate", "ota_installed", "powertrains")


def simulated_future_skew_s(sim_argv: list[str], now_ms: float, margin_s: float) -> float:
    """The bridge's future-ts limit (s; 0: off) for a simulator run with ``sim_argv`` from
    about ``now_ms``: how far its event time gets ahead of the wall clock, plus ``margin_s``.

    At speed ``v`` from ``start``, the fleet's event time at wall time ``w`` is
    ``start + (w - now) * v``; its lead over ``w`` is linear in ``w``, so greatest at the run's
    first or last message. A later real start only shrinks it. Without ``--duration`` at a
    speed above 1 the lead grows without bound: no limit fits, the check is off.
    """
    from simulators.cli import duration_s, start_time
    from simulators.fleet import DEFAULT_START

    if margin_s == 0:
        return 0.0
    flags = {flag: value for flag, value in zip(sim_argv, sim_argv[1:], strict=False)
             if flag.startswith("--")}
    start = start_time(flags.get("--start", DEFAULT_START))
    speed = float(flags.get("--speed", "1"))
    duration = flags.get("--duration")
    if duration is None and speed > 1:
        return 0.0
    lead_ms = start - now_ms
    if duration is not None:
        length_ms = duration_s(duration) * 1000
        lead_ms = max(lead_ms, start + length_ms - (now_ms + length_ms / speed))
    return margin_s + max(0.0, lead_ms) / 1000


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]
    may_finish: bool = False  # the simulator ends by itself when given --duration
    started_s: float = field(default_factory=time.monotonic)
    restart_at_s: float | None = None  # crashed: restarted at this monotonic time
    crashes: Crashes = field(default_factory=Crashes)
    last_exit_status: int | None = None
    last_restart_wall_ms: int | None = None
    backoff_s: float = 0.0


class Stack:
    def __init__(self, settings: RunSettings, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.state_dir = settings.state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.children: list[Child] = []
        self.tansu: subprocess.Popen[bytes] | None = None
        self.kafka: EmbeddedKafka | None = None
        self.mqtt: EmbeddedMqtt | None = None
        self.stopping = asyncio.Event()
        self.api_key = ""  # the session's admin key, created at start, revoked at stop
        self.api_key_id = ""
        self.claim: statedir.Claim | None = None
        self.bridge_env: dict[str, str] = {}  # the future-ts limit fitted to the simulator
        self.ocpp: OcppRun | None = None  # the OCPP gateway's settings, when it runs
        self.wrote_run_json = False
        self.ota_keys: RunKeys | None = None  # what the worker signs with, the cars pin
        # (severity, status) of every alert already printed or, resuming, already there.
        self.seen_alerts: dict[str, tuple[str, str]] = {}

    @property
    def resuming(self) -> bool:
        return bool(getattr(self.args, "resume", False))

    def claim_state_dir(self) -> None:
        """Make the state dir this run's (see :mod:`ownercare.statedir`) and say what became
        of an earlier run's state; StateDirError when it must not start on it."""
        own_database = not self.settings.database_url
        try:
            self.claim = statedir.claim(
                self.state_dir, self.settings.effective_database_url,
                own_database=own_database, resume=self.resuming,
                now=datetime.now(tz=UTC))
        except OSError as exc:
            raise statedir.StateDirError(
                f"--state-dir {self.state_dir}: {exc.strerror or exc}") from None
        start = getattr(self.args, "start", None)
        held = self.claim.resumed
        if start is not None and held is not None and held.fleet_now_ms is not None:
            from simulators.cli import start_time

            if start_time(start) <= held.fleet_now_ms:
                raise statedir.StateDirError(
                    f"--start {start} is not after the database's latest event time "
                    f"({statedir.format_ms(held.fleet_now_ms)}): the alerts' history would "
                    "run backwards; give a later --start, or leave it out to continue from "
                    "there")
        if self.claim.notice:
            print(f"ownercare run: {self.claim.notice}", flush=True)

    @property
    def ota_private_key(self) -> Path:
        return self.state_dir / "keys" / "ota-signing.pem"

    @property
    def ota_public_key(self) -> Path:
        return self.state_dir / "keys" / "ota-signing.pub.pem"

    def ensure_ota_keys(self) -> None:
        """The keys of this run (``ownercare.ota_keys``): the worker signs with
        OWNERCARE_OTA_SIGNING_KEY or, without it, the demo pair kept in the state dir (so a
        resumed run signs with the key its cars pinned); the cars pin its public half, or a
        matching --ota-public-key. OtaKeyError when they cannot work together."""
        from ownercare.ota_keys import resolve

        self.ota_keys = resolve(self.state_dir, self.settings.ota_signing_key,
                                getattr(self.args, "ota_public_key", None))
        log.info("ota_keys signing=%s public=%s fingerprint=%s", self.ota_keys.signing,
                 self.ota_keys.public, self.ota_keys.fingerprint)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.settings.mqtt_port}"

    @property
    def kafka_url(self) -> str:
        return f"kafka://127.0.0.1:{self.settings.kafka_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def child_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "OWNERCARE_STATE_DIR": str(self.state_dir),
            # A username: the broker keeps only a named client's session across restarts.
            "OWNERCARE_MQTT_URL": f"mqtt://{embedded.MQTT_SERVICE_USER}@127.0.0.1:{s.mqtt_port}",
            "OWNERCARE_KAFKA_URL": self.kafka_url,
            "OWNERCARE_DATABASE_URL": s.effective_database_url,
            "OWNERCARE_API_PORT": str(s.api_port),
            "OWNERCARE_API_HOST": s.api_host,
            "OWNERCARE_PARTITIONS": str(s.partitions),
            "OWNERCARE_LOG_LEVEL": s.log_level,
            # `ownercare run` creates the demo key first; without it (the bench) no OTA.
            "OWNERCARE_OTA_SIGNING_KEY": str(self.ota_keys.signing) if self.ota_keys
            else str(self.ota_private_key) if self.ota_private_key.exists() else "",
            "PYTHONUNBUFFERED": "1",
            **(self.kafka.service_env() if self.kafka else {}),
            **self.bridge_env,
            **(self.ocpp.env if self.ocpp else {}),
        }

    def spawn(self, name: str, argv: list[str], may_finish: bool = False) -> Child:
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, self.popen(argv, log_path), log_path, argv, may_finish)
        self.children.append(child)
        log.info("service_started name=%s pid=%s log=%s", name, child.proc.pid, log_path)
        return child

    def popen(self, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        private(log_path, 0o600)
        out = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "ownercare", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.child_env(),
            preexec_fn=embedded.die_with_parent,
            # Its own process group: a Ctrl-C in the terminal reaches only `ownercare run`,
            # which stops the services in order (the worker commits while Kafka still runs).
            process_group=0,
        )
        out.close()
        return proc

    def simulator_argv(self) -> list[str]:
        argv = ["simulate", "--mqtt-url", self.mqtt_url]
        for flag in SIMULATOR_FLAGS:
            value = getattr(self.args, flag, None)
            if value is not None:
                argv += [f"--{flag.replace('_', '-')}", str(value)]
        resume_at = statedir.resume_start(self.claim.resumed if self.claim else None)
        if getattr(self.args, "start", None) is None and resume_at is not None:
            # The fleet continues after the database's history instead of repeating it.
            argv += ["--start", resume_at]
        if getattr(self.args, "ota_public_key", None) is None:
            # The simulated cars pin the demo key the worker signs with.
            argv += ["--ota-public-key", str(self.ota_keys.public if self.ota_keys
                                             else self.ota_public_key)]
        if self.ocpp is not None:  # the simulated chargers speak OCPP to the run's gateway
            argv += self.ocpp.simulator_flags
        return argv

    async def start(self) -> None:
        s = self.settings
        # A second run on this state dir is told about the first before its ports clash;
        # an earlier run's state is moved aside only once this one can start.
        statedir.refuse_if_in_use(self.state_dir)
        for port, what in ((s.mqtt_port, "the embedded MQTT broker"),
                           (s.kafka_port, "the embedded Kafka broker"), (s.api_port, "the API")):
            embedded.ensure_port_free(port, what)
        if getattr(self.args, "ocpp", False) or s.ocpp_enabled:
            embedded.ensure_port_free(s.ocpp_port, "the OCPP gateway")
        if s.embedded_kafka_storage == "disk" and s.kafka_s3_port:
            embedded.ensure_port_free(s.kafka_s3_port, "the embedded Kafka's storage")
        if self.settings.ota_signing_key:  # a key mistake must not move the old state aside
            from ownercare.ota_keys import check_configured

            check_configured(self.settings.ota_signing_key,
                             getattr(self.args, "ota_public_key", None))
        self.claim_state_dir()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The state dir holds the database (webhook secrets, all telemetry) and the logs.
        for directory in (self.state_dir, self.log_dir):
            private(directory, 0o700)
        for name in ("tansu.log", "kafka-s3.log", "mqtt.log"):
            private(self.log_dir / name, 0o600)
        self.ensure_ota_keys()
        # Create the schema once, before the worker and the API both open the database, and
        # the session's admin key (in run.json, so a newcomer can call the API at once).
        from storage.keys import KeyStore
        from storage.store import Store

        store = await asyncio.to_thread(Store, s.effective_database_url)
        try:
            row, self.api_key = await asyncio.to_thread(
                KeyStore(store).create, f"ownercare-run-{os.getpid()}", "admin")
            self.api_key_id = row["id"]
            if self.resuming:
                self.seen_alerts = await asyncio.to_thread(alert_states, store)
        finally:
            store.close()
        self.kafka = EmbeddedKafka(s.kafka_port, s.embedded_kafka_storage, self.state_dir,
                                   self.log_dir, s.kafka_s3_port, s.kafka_retention_h)
        if self.resuming:
            print(f"ownercare run: {self.kafka.resume_notice()}", flush=True)
        await asyncio.to_thread(self.kafka.start)
        self.tansu = self.kafka.tansu.proc
        self.mqtt = EmbeddedMqtt(s.mqtt_port, self.state_dir, self.log_dir)
        await asyncio.to_thread(self.mqtt.start)
        if not getattr(self.args, "no_simulator", False):
            skew = simulated_future_skew_s(self.simulator_argv(), time.time() * 1000,
                                           BridgeSettings().bridge_max_future_skew_s)
            self.bridge_env = {"OWNERCARE_BRIDGE_MAX_FUTURE_SKEW_S": f"{skew:g}"}
            log.info("bridge_future_skew s=%g reason=%s", skew, "the accelerated simulator's "
                     "event time outruns the wall clock without bound" if skew == 0 else
                     "the simulator's event time stays within it of the wall clock")
        self.spawn("worker", ["worker"])
        self.spawn("bridge", ["bridge"])
        self.spawn("api", ["api"])
        if getattr(self.args, "ocpp", False) or s.ocpp_enabled:
            await self.start_ocpp()
        if ArchiveSettings().influx_url:
            self.spawn("archive", ["archive"])
        else:
            log.info("archive_off reason=OWNERCARE_INFLUX_URL is not set (telemetry is not "
                     "archived)")
        # The bridge's persistent session must exist before the fleet publishes, otherwise
        # the broker has no subscriber to queue the first messages for.
        await self.wait_for_bridge_subscription()
        if not getattr(self.args, "no_simulator", False):
            self.spawn("simulator", self.simulator_argv(), may_finish=True)
        await asyncio.to_thread(self.wait_for_api)
        self.write_run_json()
        self.write_supervisor_json()

    async def start_ocpp(self) -> None:
        """The OCPP gateway as a supervised service; the simulated chargers connect to it."""
        from ownercare.ocpp_run import prepare
        from simulators.fleet import Fleet

        simulated = not getattr(self.args, "no_simulator", False)
        chargers = Fleet(0, self.args.chargers, seed=self.args.seed).chargers if simulated else []
        skew = float(self.bridge_env.get("OWNERCARE_BRIDGE_MAX_FUTURE_SKEW_S", "0"))
        self.ocpp = prepare(self.settings, self.state_dir, chargers,
                            skew if simulated else None)
        self.spawn("ocpp", ["ocpp"])
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(embedded.wait_for_port, self.settings.ocpp_port, 0.5):
            self.check_children()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OCPP gateway did not listen within 60 s; see "
                                   f"{self.log_dir / 'ocpp.log'}")
        log.info("ocpp_gateway_started url=%s", self.ocpp.url)

    async def wait_for_bridge_subscription(self, within_s: float = 60) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.mqtt is not None and self.mqtt.subscribed("vehicles/#"):
                return
            self.check_children()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the bridge did not subscribe within {within_s:.0f} s; "
                           f"see {self.log_dir / 'bridge.log'}")

    def api_request(self, path: str) -> urllib.request.Request:
        """A request to the API carrying the session's admin key."""
        return urllib.request.Request(f"{self.api_url}{path}",
                                      headers={"Authorization": f"Bearer {self.api_key}"})

    def wait_for_api(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (contextlib.suppress(OSError),
                  urllib.request.urlopen(f"{self.api_url}/health/live", timeout=2) as resp):
                if resp.status == 200:
                    return
            self.check_children()
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer within {timeout:.0f} s; "
                           f"see {self.log_dir / 'api.log'}")

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is None or (child.may_finish and code == 0):
                continue
            raise RuntimeError(f"{child.name} exited with status {code}; last log lines:\n"
                               + tail(child.log_path))

    async def tend_children(self) -> None:
        """Restart each crashed service once its backoff has passed; RuntimeError (one line)
        when one crashes too often to be worth restarting."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at_s is not None:
                if now >= child.restart_at_s:
                    await self.restart(child)
                continue
            code = child.proc.poll()
            if code is None or (child.may_finish and code == 0):
                continue
            child.last_exit_status = code
            decision = child.crashes.crashed(now, now - child.started_s, code)
            if isinstance(decision, GiveUp):
                log.error("service_given_up name=%s status=%s restarts=%s; last log lines:\n%s",
                          child.name, code, child.crashes.restarts, tail(child.log_path))
                raise RuntimeError(f"{child.name} {decision.reason}; stopped everything "
                                   f"(see {child.log_path})")
            child.backoff_s = decision.backoff_s
            child.restart_at_s = now + decision.backoff_s
            log.warning("service_crashed name=%s status=%s backoff_s=%s", child.name, code,
                        decision.backoff_s)

    async def restart(self, child: Child) -> None:
        argv = child.argv
        if child.name == "simulator":
            argv = await asyncio.to_thread(self.continued_simulator_argv, argv)
        child.proc = self.popen(argv, child.log_path)
        child.started_s = time.monotonic()
        child.restart_at_s = None
        child.last_restart_wall_ms = int(time.time() * 1000)
        log.warning("service_restarted name=%s status=%s restarts=%s backoff_s=%s pid=%s",
                    child.name, child.last_exit_status, child.crashes.restarts, child.backoff_s,
                    child.proc.pid)
        self.write_run_json()
        self.write_supervisor_json()

    def continued_simulator_argv(self, argv: list[str]) -> list[str]:
        """A restarted fleet continues after what the database holds: replaying from its
        first start would send events the detectors have already seen as new."""
        try:
            start = statedir.resume_start(
                statedir.database_holds(self.settings.effective_database_url))
        except statedir.StateDirError as exc:
            log.warning("simulator_restart_from_start reason=%s", exc)
            return argv
        if start is None:
            return argv
        kept: list[str] = []
        pairs = iter(argv)
        for arg in pairs:
            if arg == "--start":
                next(pairs, None)
            else:
                kept.append(arg)
        return [*kept, "--start", start]

    def write_supervisor_json(self) -> None:
        """Each service's restarts, for the API's /health and /metrics; replaced atomically
        (its temporary file sits in logs/, so the state dir only ever holds the whole file)."""
        status = {c.name: {"restarts": c.crashes.restarts, "last_exit_status": c.last_exit_status,
                           "last_restart_wall_ms": c.last_restart_wall_ms, "pid": c.proc.pid}
                  for c in self.children}
        tmp = self.log_dir / "supervisor.json.tmp"
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        os.replace(tmp, self.state_dir / "supervisor.json")

    def write_run_json(self) -> None:
        info = {
            "api_url": self.api_url,
            "docs_url": f"{self.api_url}/docs",
            "console_url": f"{self.api_url}/console",
            "api_key": self.api_key,
            "api_key_note": "an admin key for this session only: revoked when it stops; "
                            "create lasting keys with `ownercare keys create`",
            "mqtt_url": self.mqtt_url,
            "kafka_url": self.kafka_url,
            "database_url": self.settings.effective_database_url,
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "services": {c.name: {"pid": c.proc.pid, "log": str(c.log_path)}
                         for c in self.children},
            "tansu_pid": self.tansu.pid if self.tansu else None,
            "kafka_s3_pid": self.kafka.pids["kafka-s3"] if self.kafka else None,
            "mqtt_pid": self.mqtt.pid if self.mqtt else None,
        }
        path = self.state_dir / "run.json"
        # It holds an admin key: readable by its owner only, from its first byte on.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.wrote_run_json = True
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(info, indent=2) + "\n")

    def announce_new_alerts(self, seen: dict[str, tuple[str, str]]) -> None:
        """Print alerts as they open or change, so a newcomer sees the loop working."""
        try:
            with urllib.request.urlopen(self.api_request("/alerts?limit=100"),
                                        timeout=5) as resp:
                page = json.load(resp)
        except (OSError, ValueError):
            return
        for alert in reversed(page.get("items", [])):
            key = (alert["severity"], alert["status"])
            before = seen.get(alert["id"])
            if before == key:
                continue
            seen[alert["id"]] = key
            # Event time (the simulated fleet's clock), as the alert's name says.
            when = time.strftime("%Y-%m-%d %H:%M",
                                 time.gmtime(alert["last_seen_event_ms"] / 1000))
            print(f"[{when} sim] {change_word(before, key):10} {alert['severity']:8} "
                  f"{alert['type']} {alert['asset_id']}: {alert['title']}", flush=True)

    async def supervise(self) -> None:
        announced_finish = False
        seen = self.seen_alerts
        next_poll = next_trim = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 5
                await asyncio.to_thread(self.announce_new_alerts, seen)
            if time.monotonic() >= next_trim:  # this process runs as long as the stack
                next_trim = time.monotonic() + TRIM_EVERY_S
                heap.release_free_memory()
            await self.tend_children()
            if self.kafka is not None and await asyncio.to_thread(self.kafka.tend):
                self.tansu = self.kafka.tansu.proc
                self.write_run_json()
            if self.mqtt is not None and await asyncio.to_thread(self.mqtt.tend):
                self.write_run_json()
            sim = next((c for c in self.children if c.name == "simulator"), None)
            if sim and sim.proc.poll() == 0 and not announced_finish:
                announced_finish = True
                log.info("simulation_finished; the service keeps running (Ctrl-C to stop)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)

    async def stop(self) -> None:
        for child in reversed(self.children):
            await asyncio.to_thread(embedded.stop_process, child.proc, 15)
            log.info("service_stopped name=%s status=%s", child.name, child.proc.returncode)
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)
        if self.kafka is not None:
            await asyncio.to_thread(self.kafka.stop)
        elif self.tansu is not None:
            await asyncio.to_thread(embedded.stop_process, self.tansu, 10)
        if self.wrote_run_json:
            for name in ("run.json", "supervisor.json"):
                with contextlib.suppress(FileNotFoundError):
                    (self.state_dir / name).unlink()
        if self.api_key_id:
            await asyncio.to_thread(self._revoke_session_key)
        if self.claim is not None:
            self.claim.release()

    def _revoke_session_key(self) -> None:
        from storage.keys import KeyStore
        from storage.store import Store

        try:
            store = Store(self.settings.effective_database_url)
        except Exception as exc:  # a broken database must not hide the real exit reason
            log.warning("session_key_not_revoked id=%s error=%r", self.api_key_id, exc)
            return
        try:
            KeyStore(store).revoke(self.api_key_id)
        finally:
            store.close()


def change_word(before: tuple[str, str] | None, after: tuple[str, str]) -> str:
    """What happened to an alert between two looks at its (severity, status): opened,
    escalated, downgraded, resolved, reopened (or updated)."""
    severity, status = after
    if before is None:
        return "opened" if status == "open" else "resolved"
    old_severity, old_status = before
    if old_status != status:
        return "resolved" if status == "resolved" else "reopened"
    rank: dict[str, int] = {name: number for number, name in enumerate(SEVERITIES)}
    if rank.get(severity, 0) > rank.get(old_severity, 0):
        return "escalated"
    if rank.get(severity, 0) < rank.get(old_severity, 0):
        return "downgraded"
    return "updated"


def alert_states(store: Store) -> dict[str, tuple[str, str]]:
    """(severity, status) of every alert in ``store``: what a resumed run has already seen."""
    states: dict[str, tuple[str, str]] = {}
    cursor = None
    while True:
        rows, cursor = store.list_alerts(limit=1000, cursor=cursor)
        states.update((row["id"], (row["severity"], row["status"])) for row in rows)
        if cursor is None:
            return states


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _main(settings: RunSettings, args: argparse.Namespace) -> int:
    stack = Stack(settings, args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stack.stopping.set)
    try:
        await stack.start()
        print(f"ownercare is running\n  API:   {stack.api_url}  (docs: {stack.api_url}/docs)\n"
              f"  console: {stack.api_url}/console  (sign in with api_key from run.json)\n"
              f"  MQTT:  {stack.mqtt_url}\n  Kafka: {stack.kafka_url}\n"
              f"  state: {stack.state_dir} (run.json, logs/)\nPress Ctrl-C to stop.", flush=True)
        await stack.supervise()
        return 0
    except (embedded.PortBusyError, statedir.StateDirError, OtaKeyError) as exc:
        print(f"ownercare run: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"ownercare run: {exc}", file=sys.stderr)
        return 1
    finally:
        await stack.stop()
        if stack.wrote_run_json:
            print(f"ownercare run: stopped; the state stays in {stack.state_dir} (`ownercare "
                  "run --resume` continues on it, a plain `ownercare run` moves it aside)",
                  flush=True)


def run_stack(settings: RunSettings, args: argparse.Namespace) -> int:
    return asyncio.run(_main(settings, args))


def private(path: Path, mode: int) -> None:
    """Give ``path`` at most ``mode`` (0o700 a directory, 0o600 a file, created if missing):
    group and other lose access, and a mode the user made stricter stays as it is."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode))
    current = path.stat().st_mode & 0o777
    if current & ~mode:
        os.chmod(path, current & mode)
