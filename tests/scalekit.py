"""A production topology on one machine, for the scale-out test: Mosquitto, the embedded
Kafka, PostgreSQL, and each ownercare service as its own process (``python -m ownercare
bridge|worker|api``, started as ``deploy/compose.yml`` starts them), so any number of bridges
(each forwarding its shard of the fleet), workers (one consumer group) and API replicas can
run, join, be killed and return while a labelled simulated fleet publishes.

The embedded Kafka keeps its log in memory: nothing here kills the broker (the fault suite
covers that), and the on-disk mode's S3 server would only add a process and fetch latency
to a run whose point is the services' replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ingest import topics
from ingest.kafka import ensure_topics
from ownercare import embedded
from ownercare.embedded_kafka import EmbeddedKafka
from ownercare.faultrun import Scenario, read_records
from ownercare.faults import settling

T = TypeVar("T")


class ClusterError(AssertionError):
    """A step of the topology did not happen in time; the message says which."""


class Cluster:
    """The brokers of one run, a fresh database, and the services started on them by name."""

    def __init__(self, workdir: Path, database_url: str, scenario: Scenario, name: str,
                 partitions: int = 4) -> None:
        self.dir = workdir / name
        self.logs = self.dir / "logs"
        self.logs.mkdir(parents=True)
        self.name = name
        self.scenario = scenario
        self.database_url = database_url
        self.partitions = partitions
        self.app_id = f"scale-{os.getpid()}-{name}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.api_ports: dict[str, int] = {}
        self.every_pid: set[int] = set()
        self.mqtt_log = self.logs / "mosquitto.log"
        self.mosquitto = self._start_mosquitto()
        self.kafka = EmbeddedKafka(embedded.free_port(), "memory", self.dir, self.logs, 0, 0)
        self.kafka.start()
        assert embedded.wait_for_port(self.kafka.port, 30), "Tansu did not listen"
        asyncio.run(ensure_topics(self.kafka_bootstrap, partitions))
        self.api_key = self._prepare_database()

    # ------------------------------------------------------------------ brokers, database

    def _start_mosquitto(self) -> subprocess.Popen[bytes]:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise ClusterError("mosquitto is not installed: apt-get install -y mosquitto")
        self.mqtt_port = embedded.free_port()
        conf = self.dir / "mosquitto.conf"
        # Queued messages are kept for an offline bridge's persistent session: a limit would
        # drop what the fleet sent while a bridge restarted. The subscribe log line is what
        # tells the harness a bridge's subscription is in place.
        conf.write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 1000\n"
            f"log_dest file {self.mqtt_log}\nlog_type subscribe\nlog_type error\n"
            "log_type warning\nlog_type notice\n"
            # Run as the test's user: started as root it would drop to the `mosquitto` user,
            # which cannot write its log into pytest's private temporary directory.
            f"user {getpass.getuser()}\n")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert embedded.wait_for_port(self.mqtt_port, 10), "mosquitto did not listen"
        return proc

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka.port}"

    def _prepare_database(self) -> str:
        """The schema, created once before any replica opens the database, and an admin key."""
        from storage.keys import KeyStore
        from storage.store import Store

        store = Store(self.database_url)
        try:
            _row, key = KeyStore(store).create(f"scale-{self.name}", "admin")
        finally:
            store.close()
        return key

    # ------------------------------------------------------------------ services

    def env(self, service: str, **extra: str) -> dict[str, str]:
        state = self.dir / service
        state.mkdir(exist_ok=True)
        return {
            **os.environ,
            "OWNERCARE_STATE_DIR": str(state),
            "OWNERCARE_MQTT_URL": f"mqtt://127.0.0.1:{self.mqtt_port}",
            "OWNERCARE_KAFKA_URL": f"kafka://{self.kafka_bootstrap}",
            "OWNERCARE_DATABASE_URL": self.database_url,
            "OWNERCARE_PARTITIONS": str(self.partitions),
            "OWNERCARE_WORKER_APP_ID": self.app_id,
            "OWNERCARE_LATEST_FLUSH_S": "0.5",
            "OWNERCARE_TREND_FLUSH_S": "0.5",
            # The accelerated fleet's event time outruns the wall clock without bound.
            "OWNERCARE_BRIDGE_MAX_FUTURE_SKEW_S": "0",
            "OWNERCARE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        if name in self.procs and self.procs[name].poll() is None:
            raise ClusterError(f"{name} is already running")
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "ownercare", *argv], stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=embedded.die_with_parent)
        self.procs[name] = proc
        self.every_pid.add(proc.pid)
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_bridge(self, name: str, shard: str = "") -> None:
        """A bridge with its own persistent session (client id = ``name``) forwarding shard
        ``k/n`` of the fleet (all of it by default), subscribed before this returns."""
        before = self.subscribe_lines(name)
        extra = {"OWNERCARE_MQTT_CLIENT_ID": name, "OWNERCARE_BRIDGE_SHARD": shard}
        self.spawn(name, ["bridge"], self.env(name, **extra))
        self.wait_for(lambda: self.subscribe_lines(name) > before,
                      f"{name}'s subscription at the broker", 60, name)

    def subscribe_lines(self, client_id: str) -> int:
        text = self.mqtt_log.read_text(errors="replace") if self.mqtt_log.exists() else ""
        return sum(f" {client_id} 1 " in line and "vehicles/#" in line
                   for line in text.splitlines())

    def start_worker(self, name: str, **extra: str) -> None:
        self.spawn(name, ["worker"], self.env(name, **extra))

    def start_api(self, name: str) -> None:
        port = self.api_ports.setdefault(name, embedded.free_port())
        # Webhooks may reach the test's receiver on the loopback interface, over plain HTTP.
        self.spawn(name, ["api"], self.env(name, OWNERCARE_API_PORT=str(port),
                                           OWNERCARE_API_HOST="127.0.0.1",
                                           OWNERCARE_WEBHOOK_ALLOW_HTTP="true",
                                           OWNERCARE_WEBHOOK_ALLOW_NETWORKS="127.0.0.1/32"))
        self.wait_for(lambda: self.get(name, "/health/live") is not None,
                      f"{name} to answer", 90, name)

    def start_simulator(self, truth: Path, *extra: str) -> None:
        self.spawn("simulator", ["simulate", "--mqtt-url", f"mqtt://127.0.0.1:{self.mqtt_port}",
                                 *self.scenario.argv(), "--truth", str(truth), *extra],
                   self.env("simulator"))

    def kill(self, name: str) -> int:
        """kill -9 ``name``; its pid."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        return proc.pid

    def stop(self) -> dict[str, int | None]:
        """Every service stopped (SIGTERM, then SIGKILL), then the brokers; the services'
        exit statuses."""
        codes: dict[str, int | None] = {}
        for name, proc in reversed(self.procs.items()):
            already = proc.poll()
            embedded.stop_process(proc, 20)
            codes[name] = already if already is not None else proc.returncode
        embedded.stop_process(self.mosquitto, 10)
        self.kafka.stop()
        return codes

    def orphans(self) -> list[int]:
        from ownercare.faultrun import alive

        return sorted(pid for pid in self.every_pid if alive(pid))

    # ------------------------------------------------------------------ waiting, reading

    def wait_for(self, predicate: Callable[[], T | None], what: str, timeout: float,
                 watch: str = "") -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(watch)
            exited = proc is not None and proc.poll() is not None
            value = predicate()  # after the look at the process: its last word counts
            if value:
                return value
            if exited and proc is not None:
                raise ClusterError(f"{self.name}: {watch} exited with {proc.returncode} "
                                   f"waiting for {what}:\n{self.log(watch)[-3000:]}")
            time.sleep(0.5)
        raise ClusterError(f"{self.name}: no {what} within {timeout:.0f} s")

    def get(self, api: str, path: str) -> Any:
        """GET ``path`` from API replica ``api`` with the admin key; None when it does not
        answer (yet)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_ports[api]}{path}",
            headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                body = resp.read()
        except OSError:
            return None
        return body.decode() if path == "/metrics" else json.loads(body)

    def post(self, api: str, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_ports[api]}{path}", data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.api_key}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=15) as resp:
            return json.load(resp)

    def pages(self, api: str, path: str) -> list[dict[str, Any]] | None:
        """Every item of a paged listing (following ``next_cursor``); None while the
        replica does not answer."""
        items: list[dict[str, Any]] = []
        cursor = ""
        sep = "&" if "?" in path else "?"
        while True:
            page = self.get(api, f"{path}{sep}limit=200{'&cursor=' + cursor if cursor else ''}")
            if page is None:
                return None
            items += page["items"]
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return items

    def alerts(self, api: str) -> list[dict[str, Any]] | None:
        return self.pages(api, "/alerts")

    def metric(self, api: str, name: str, pid: int | None = None) -> float | None:
        """The sum of ``ownercare_<name>`` series (of the process ``pid`` only, if given: its
        ``replica`` label ends in it)."""
        text = self.get(api, "/metrics")
        if text is None:
            return None
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(f"ownercare_{name}{{") and line.split(" ")[0] != \
                    f"ownercare_{name}":
                continue
            if pid is None or f':{pid}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def simulator_sent(self) -> int | None:
        for line in self.log("simulator").splitlines():
            if "simulator_done messages=" in line:
                return int(line.split("simulator_done messages=")[1].split()[0])
        return None

    def fleet_done(self, fraction: float) -> bool:
        """The simulator has published about ``fraction`` of its span (by its progress in
        event time, read from the database's newest telemetry), or has finished."""
        from ownercare.statedir import database_holds
        from simulators.fleet import DEFAULT_START_MS

        if self.simulator_sent() is not None:
            return True
        try:
            now = database_holds(self.database_url).fleet_now_ms or 0
        except Exception:  # noqa: BLE001 - the database may be mid-write; ask again
            return False
        return now >= DEFAULT_START_MS + self.scenario.days * 86_400_000 * fraction

    def lag(self, api: str) -> float | None:
        """Records of the telemetry topics the worker group has not processed."""
        text = self.get(api, "/metrics")
        if text is None:
            return None
        lines = [line for line in text.splitlines()
                 if line.startswith("ownercare_consumer_lag_records{")
                 and any(f'topic="{t}"' in line for t in (topics.VEHICLES, topics.CHARGERS))]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines) if lines else None

    def settled_alerts(self, api: str, polls: int = 6, timeout: float = 600
                       ) -> list[dict[str, Any]]:
        """The alerts once the fleet is done, the group has no lag and the alerts stayed the
        same for ``polls`` polls."""
        self.wait_for(self.simulator_sent, "the simulation to finish", timeout, "simulator")
        self.wait_for(lambda: self.lag(api) == 0, "the workers to catch up", timeout)
        return self.wait_for(settling(lambda: self.alerts(api), polls), "the alerts to settle",
                             timeout)

    def records(self) -> tuple[int, set[bytes], int]:
        return read_records(f"kafka://{self.kafka_bootstrap}")

    def topic_values(self, topic: str) -> list[bytes]:
        """Every record value in ``topic``, each partition in order."""
        return topic_values(self.kafka_bootstrap, topic)

    def log_lines(self, name: str, event: str) -> list[dict[str, str]]:
        """The ``key=value`` fields of each ``<event> k=v ...`` line in ``name``'s log, in
        order."""
        found = []
        for line in self.log(name).splitlines():
            words = line.split(f" {event} ", 1)
            if len(words) == 2:
                found.append(dict(w.split("=", 1) for w in words[1].split() if "=" in w))
        return found


def truth_assets(truth: Path) -> set[str]:
    with contextlib.suppress(OSError, ValueError):
        rows = json.loads(truth.read_text())
        return {a for t in rows if (a := t.get("vin") or t.get("charger_id")
                                    or t.get("asset_id"))}
    return set()


class StreamTap(threading.Thread):
    """Every event of one API replica's alert stream (``GET /alerts/stream``) from the change
    log's start, reconnecting with ``Last-Event-ID`` whenever the connection drops, as a
    browser's EventSource does."""

    def __init__(self, cluster: Cluster, api: str) -> None:
        super().__init__(daemon=True, name=f"sse-{api}")
        self.cluster = cluster
        self.api = api
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.position = 0
        self.connections = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.cluster.api_ports[self.api]}/alerts/stream?after=0",
                headers={"Authorization": f"Bearer {self.cluster.api_key}",
                         "Last-Event-ID": str(self.position)})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    self.connections += 1
                    self._read(resp)
            except (OSError, ValueError):
                self.stopping.wait(0.5)

    def _read(self, resp: Any) -> None:
        event_id: int | None = None
        while not self.stopping.is_set():
            line = resp.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("id: "):
                event_id = int(text[4:])
            elif text.startswith("data: ") and event_id is not None:
                self.events.append((event_id, json.loads(text[6:])))
                self.position = event_id

    def alert_ids(self) -> set[str]:
        return {data["alert"]["id"] for _id, data in self.events}

    def stop(self) -> None:
        self.stopping.set()


class WebhookReceiver:
    """A plain HTTP receiver of webhook deliveries: every ``webhook-id`` it was sent, with
    the body, in arrival order (answers 204 to each)."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.headers.get("webhook-id", ""), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ownercare"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        values: list[bytes] = []
        try:
            await consumer.topics()
            parts = [TopicPartition(topic, p)
                     for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            # Past the end offsets, until a fetch brings nothing: Tansu's ListOffsets may
            # answer short of the end (docs/operations.md), and a record missed here could
            # be the duplicate a test looks for.
            fetched = True
            while fetched or [tp for tp, end in ends.items()
                              if await consumer.position(tp) < end]:
                batches = (await consumer.getmany(timeout_ms=1000)).values()
                fetched = any(batches)
                for msgs in batches:
                    values += [msg.value or b"" for msg in msgs]
        finally:
            await consumer.stop()
        return values

    return asyncio.run(go())


def reordered_records(bootstrap: str) -> int:
    """Records of the vehicle and charger topics (each partition read in order) whose first
    copy came after a newer record of the same asset: what the worker's ``seq``/``ts`` check
    would drop as redeliveries though it never saw them. A redelivered copy of a record is not
    counted: the worker is right to drop it."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ingest import contract

    async def go() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        newest: dict[str, tuple[int, int]] = {}
        seen: set[tuple[str, int, int]] = set()
        behind = 0
        try:
            await consumer.topics()
            parts = [TopicPartition(t, p) for t in (topics.VEHICLES, topics.CHARGERS)
                     for p in sorted(consumer.partitions_for_topic(t) or [])]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                    for msg in msgs:
                        for record in contract.decode_batch(msg.value or b""):
                            mark = (int(record["seq"]), int(record["ts"]))
                            copy = (record["id"], *mark)
                            if copy in seen:
                                continue
                            seen.add(copy)
                            last = newest.get(record["id"])
                            if last is not None and mark[0] <= last[0] and mark[1] <= last[1]:
                                behind += 1
                            newest[record["id"]] = max(last or mark, mark)
        finally:
            await consumer.stop()
        return behind

    return asyncio.run(go())
