"""``ownercare bench``: throughput, latency and cost of the whole pipeline on this machine.

1. Start the MQTT broker (Mosquitto from Debian's package when installed, else amqtt) as a
   process of its own.
2. Raw figure: a plain publisher sends the benchmark's payloads to a plain subscriber as fast
   as the broker acknowledges them (QoS as configured). That is the ceiling any MQTT consumer
   written in Python reaches on this machine.
3. Start Tansu, the worker (real detectors, Faust web port on for its counters; ``--workers N``
   starts N in one consumer group, counted as one), the bridge and the API exactly as
   ``ownercare run`` does, and wait until a probe message has gone through.
4. Drive N vehicles at the given rate from a separate process (``simulators.load``), with a
   trouble code injected every second; read the worker's counters, every process's CPU and
   memory, and the alerts arriving on the API's SSE stream, once a second.
5. Stop everything and report (text; ``--json``, ``--plot``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from config.settings import RunSettings
from ownercare import embedded
from ownercare.benchreport import Sample, plot, render_text, summarise
from ownercare.embedded_kafka import EmbeddedKafka
from ownercare.stack import Stack

log = logging.getLogger(__name__)

CATCH_UP_STALL_S = 30.0  # no message processed for this long: the rest is not coming

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# A benchmark must not lose messages to broker limits (see deploy/mosquitto/mosquitto.conf).
max_queued_messages 2000000
max_queued_bytes 0
max_inflight_messages 1000
max_packet_size 262144
log_type error
log_type warning
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vehicles", type=_bounded(int, 1, 200_000), default=1000,
                   help="simulated vehicles (default 1000)")
    p.add_argument("--rate", type=_bounded(float, 0.01, 50), default=1.0,
                   help="telemetry messages per vehicle per second (default 1)")
    p.add_argument("--duration", type=_bounded(float, 5, 86_400), default=60.0,
                   help="seconds the fleet publishes (default 60)")
    p.add_argument("--warmup", type=_bounded(float, 0, 3600), default=None,
                   help="seconds at the start left out of the figures (default: a fifth of "
                        "the duration, at most 20)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                   help="MQTT broker (auto: Mosquitto when installed, else amqtt)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1,
                   help="QoS of the vehicles' publishes (the contract says 1)")
    p.add_argument("--publishers", type=_bounded(int, 1, 16), default=None,
                   help="load generator processes (default: one per 6000 msg/s offered)")
    p.add_argument("--mqtt-protocol", choices=("3.1.1", "5"), default="3.1.1",
                   help="MQTT version the bridge speaks (default 3.1.1; amqtt has only 3.1.1)")
    p.add_argument("--raw-messages", type=_bounded(int, 1000, 10_000_000), default=None,
                   help="messages for the broker-only figure (default: 20 s of the offered "
                        "rate, 10 000 .. 200 000)")
    p.add_argument("--max-lag", type=_bounded(float, 0.1, 3600), default=5.0,
                   help="worker lag (s) above which the run did not keep up (default 5)")
    p.add_argument("--catch-up-timeout", type=_bounded(float, 1, 86_400), default=None,
                   help="seconds after publishing to wait for the pipeline to process every "
                        "acknowledged message (default: ten times the duration, at least 30; "
                        "it stops sooner when nothing was processed for 30 s)")
    p.add_argument("--partitions", type=_bounded(int, 1, 1024), default=None,
                   help="Kafka partitions (default: OWNERCARE_PARTITIONS or 8)")
    p.add_argument("--workers", type=_bounded(int, 1, 8), default=1,
                   help="worker processes in one consumer group (default 1); give a partition "
                        "count that is a multiple of it, or some get none")
    p.add_argument("--state-dir", default=".ownercare-bench",
                   help="where each run's logs and database go (default .ownercare-bench)")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write every figure here")
    p.add_argument("--plot", dest="plot_path", metavar="FILE",
                   help="draw throughput and latency over time into this PNG")


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low:g}..{high:g}")
        return value
    return parse


class BenchStack(Stack):
    """``ownercare run``'s services, with the broker as a process and each worker's web port."""

    def __init__(self, settings: RunSettings, worker_web_ports: list[int],
                 mqtt_protocol: str) -> None:
        super().__init__(settings, argparse.Namespace())
        self.worker_web_ports = worker_web_ports
        self.worker_web_port = worker_web_ports[0]  # what the next child is given
        self.mqtt_protocol = mqtt_protocol

    def spawn_workers(self) -> None:
        """The workers, one consumer group: ``worker``, ``worker-2``, ..."""
        for n, port in enumerate(self.worker_web_ports, 1):
            self.worker_web_port = port
            self.spawn(worker_name(n), ["worker"])
        self.worker_web_port = self.worker_web_ports[0]

    def child_env(self) -> dict[str, str]:
        return {**super().child_env(),
                "OWNERCARE_WORKER_WEB_PORT": str(self.worker_web_port),
                "OWNERCARE_MQTT_PROTOCOL": self.mqtt_protocol,
                "OWNERCARE_WORKER_APP_ID": "ownercare-bench"}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.state_dir).resolve() / time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.broker_name = self._pick_broker(args.broker)
        self.mqtt_port = embedded.free_port()
        self.mqtt_url = f"mqtt://127.0.0.1:{self.mqtt_port}"
        self.broker: subprocess.Popen[bytes] | None = None
        self.stack: BenchStack | None = None
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.latencies: dict[str, float] = {}
        self.injected: dict[str, float] = {}
        self.arrivals: dict[str, float] = {}
        self.drained_at: float | None = None  # when every acknowledged message was processed
        self.load_events: list[list[dict[str, Any]]] = []  # per publishing process
        self._stop_sse = threading.Event()

    @staticmethod
    def _pick_broker(choice: str) -> str:
        if choice == "auto":
            return "mosquitto" if shutil.which("mosquitto") else "amqtt"
        if choice == "mosquitto" and not shutil.which("mosquitto"):
            raise SystemExit("ownercare bench: --broker mosquitto, but no mosquitto executable "
                             "is on PATH (Debian: apt-get install mosquitto)")
        return choice

    # ---------------------------------------------------------------- processes

    def start_broker(self) -> None:
        out = open(self.log_dir / f"{self.broker_name}.log", "ab")  # noqa: SIM115
        if self.broker_name == "mosquitto":
            conf = self.run_dir / "mosquitto.conf"
            text = MOSQUITTO_CONF.format(port=self.mqtt_port)
            if os.geteuid() == 0:  # mosquitto refuses to keep running as root otherwise
                text += "user root\n"
            conf.write_text(text)
            argv = ["mosquitto", "-c", str(conf)]
        else:
            argv = [sys.executable, "-m", "ownercare.embedded", "amqtt", str(self.mqtt_port)]
        self.broker = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       preexec_fn=embedded.die_with_parent)
        out.close()
        if not embedded.wait_for_port(self.mqtt_port, 20):
            raise RuntimeError(f"{self.broker_name} did not listen on {self.mqtt_port} within "
                               f"20 s; see {self.log_dir}")

    def load(self, *argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.load", *argv, "--mqtt-url", self.mqtt_url,
             "--qos", str(self.args.qos)],
            stdout=subprocess.PIPE, stderr=open(self.log_dir / "load.log", "ab"),  # noqa: SIM115
            preexec_fn=embedded.die_with_parent)
        self.helpers.append(proc)
        return proc

    @staticmethod
    def read_events(proc: subprocess.Popen[bytes], until: str,
                    sink: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        assert proc.stdout is not None
        for line in proc.stdout:
            event: dict[str, Any] = json.loads(line)
            if sink is not None:
                sink.append(event)
            if event.get("event") == until:
                return event
        raise RuntimeError(f"load generator exited (status {proc.wait()}) before '{until}'")

    # ---------------------------------------------------------------- phases

    def raw_phase(self) -> dict[str, Any]:
        a = self.args
        count = a.raw_messages or int(min(200_000, max(10_000, a.vehicles * a.rate * 20)))
        sub = self.load("count", "--count", str(count), "--duration", "600")
        self.read_events(sub, "subscribed")
        pub = self.load("raw", "--count", str(count), "--vehicles", str(a.vehicles))
        sent = self.read_events(pub, "done")
        received = self.read_events(sub, "done")
        pub.wait(10)
        sub.wait(10)
        if received["received"] < count:
            # amqtt acknowledges a burst it then does not deliver; say so rather than hide it.
            print(f"  warning: the broker acknowledged {sent['acked']} messages but delivered "
                  f"{received['received']} of {count} to the plain subscriber",
                  file=sys.stderr, flush=True)
        return {"messages": count, "received": received["received"], "rate": received["rate"],
                "publisher_seconds": sent["seconds"]}

    def start_stack(self) -> None:
        overrides: dict[str, Any] = {
            "state_dir": self.run_dir, "mqtt_port": self.mqtt_port,
            "kafka_port": embedded.free_port(), "api_port": embedded.free_port(),
        }
        if self.args.partitions:
            overrides["partitions"] = self.args.partitions
        # Memory unless told: the disk engine is slower (docs/benchmarks.md, "Durable
        # embedded Kafka"); OWNERCARE_EMBEDDED_KAFKA_STORAGE=disk measures it.
        overrides["embedded_kafka_storage"] = os.environ.get(
            "OWNERCARE_EMBEDDED_KAFKA_STORAGE", "memory")
        settings = RunSettings(**overrides)
        protocol = self.args.mqtt_protocol
        self.stack = BenchStack(settings, [embedded.free_port() for _ in range(self.args.workers)],
                                protocol)
        from storage.keys import KeyStore
        from storage.store import Store

        store = Store(settings.effective_database_url)
        try:  # the SSE watcher needs a key; the bench's database is its own, so is the key
            _row, self.stack.api_key = KeyStore(store).create("ownercare-bench", "viewer")
        finally:
            store.close()
        self.stack.log_dir.mkdir(parents=True, exist_ok=True)
        self.stack.kafka = EmbeddedKafka(
            settings.kafka_port, settings.embedded_kafka_storage, self.run_dir, self.log_dir,
            settings.kafka_s3_port, settings.kafka_retention_h)
        self.stack.kafka.start()
        self.stack.tansu = self.stack.kafka.tansu.proc
        self.stack.spawn_workers()
        self.stack.spawn("bridge", ["bridge"])
        self.stack.spawn("api", ["api"])
        self.stack.wait_for_api(120)

    def worker_stats(self) -> dict[str, Any] | None:
        """The workers' counters as one (``combine_stats``); None until every worker serves
        them."""
        assert self.stack is not None
        each = []
        for port in self.stack.worker_web_ports:
            url = f"http://127.0.0.1:{port}/ownercare/stats/"
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    each.append(dict(json.load(resp)))
            except (OSError, ValueError):
                return None
        return combine_stats(each)

    def wait_until_flowing(self, timeout: float = 180) -> dict[str, Any]:
        """Probe with one vehicle beyond the fleet until the worker has processed it."""
        from ingest.contract import Kind, topic_for
        from ingest.mqtt import make_client
        from simulators.load import bench_vins

        vin = bench_vins(self.args.vehicles + 1)[-1]
        client, connect = make_client(self.mqtt_url, "bench-probe")
        client.connect(**connect)
        client.loop_start()
        deadline = time.monotonic() + timeout
        seq = 0
        try:
            while time.monotonic() < deadline:
                assert self.stack is not None
                self.stack.check_children()
                stats = self.worker_stats()
                if stats and stats["records"] > 0 and all(stats["view_writer_pids"]):
                    return stats
                seq += 1
                now = int(time.time() * 1000)
                payload = json.dumps({"ts": now, "seq": seq, "signals": {"Vehicle.Speed": 0.0}})
                client.publish(topic_for(Kind.VEHICLE_TELEMETRY, vin), payload, qos=1)
                time.sleep(0.5)
        finally:
            client.disconnect()
            client.loop_stop()
        raise RuntimeError(f"no probe message reached the worker within {timeout:.0f} s; "
                           f"see the logs in {self.log_dir}")

    def watch_alerts(self) -> None:
        """Record when each vehicle's first alert becomes readable on the API's SSE stream."""
        assert self.stack is not None
        request = self.stack.api_request("/alerts/stream")
        while not self._stop_sse.is_set():
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    for line in resp:
                        if self._stop_sse.is_set():
                            return
                        if line.startswith(b"data:"):
                            alert = json.loads(line[5:])["alert"]
                            self.arrivals.setdefault(alert["asset_id"], time.time())
            except (OSError, ValueError) as exc:
                log.warning("bench_sse_reconnect error=%r", exc)
                time.sleep(0.5)

    def paced_phase(self, samples: list[Sample]) -> tuple[float, float, bool, dict[str, Any]]:
        a = self.args
        assert self.stack is not None
        assert self.broker is not None
        warmup = a.warmup if a.warmup is not None else min(20.0, a.duration / 5)
        pids = {"broker": self.broker.pid, "tansu": self.stack.tansu.pid if self.stack.tansu
                else None, **{c.name: c.proc.pid for c in self.stack.children}}
        if self.stack.kafka is not None:
            pids["kafka-s3"] = self.stack.kafka.pids["kafka-s3"]
        baseline = self.worker_stats() or {"records": 0}
        for n, pid in enumerate(baseline.get("view_writer_pids", []), 1):
            pids[views_name(n)] = pid  # each worker's child process
        threading.Thread(target=self.watch_alerts, daemon=True).start()
        time.sleep(1.0)  # let the SSE stream open at the current end of the change log
        parts = a.publishers
        readers = []
        for part in range(parts):
            load = self.load("paced", "--vehicles", str(a.vehicles), "--rate", str(a.rate),
                             "--duration", str(a.duration), "--inject-after-s", str(warmup),
                             "--part", f"{part}/{parts}")
            pids[f"load{part}" if parts > 1 else "load"] = load.pid
            self.load_events.append([])
            readers.append(threading.Thread(
                target=self.read_events, args=(load, "done", self.load_events[part]),
                daemon=True))
        procs = _processes(pids)
        for reader in readers:
            reader.start()
        started = time.time()
        window_start = started + warmup
        window_end = started + a.duration  # replaced by when the last publisher really stopped
        while any(r.is_alive() for r in readers):
            samples.append(self.sample(procs, baseline))
            self.stack.check_children()
            time.sleep(max(0.0, 1.0 - (time.time() - samples[-1].t)))
        samples.append(self.sample(procs, baseline))
        ends = [self._last(events, "published") for events in self.load_events]
        done = [self._last(events, "done") for events in self.load_events]
        if None in ends or None in done:
            raise RuntimeError(f"the load generator failed; see {self.log_dir / 'load.log'}")
        window_end = max(e["t"] for e in ends if e)  # publishing time only, not the ack wait
        acked = sum(d["acked"] for d in done if d)
        # Catch up: everything published must reach the detectors (nothing lost on the way);
        # an overloaded run works off its backlog here, sampled like the rest.
        # It stops at the timeout, or once nothing more was processed for CATCH_UP_STALL_S:
        # messages lost on the way never arrive, however long it waits.
        self.drained_at = None
        deadline = time.time() + (a.catch_up_timeout if a.catch_up_timeout is not None
                                  else max(30.0, a.max_lag * 3, a.duration * 10))
        moved = (time.time(), samples[-1].processed)
        while time.time() < deadline and time.time() - moved[0] < CATCH_UP_STALL_S:
            samples.append(self.sample(procs, baseline))
            if samples[-1].processed >= acked:
                self.drained_at = samples[-1].t
                break
            if samples[-1].processed > moved[1]:
                moved = (samples[-1].t, samples[-1].processed)
            self.stack.check_children()
            time.sleep(max(0.0, 1.0 - (time.time() - samples[-1].t)))
        for e in self.load_events[0]:
            if e.get("event") == "inject":
                self.injected[e["vin"]] = e["t_pub"]
        # The alerts' way to the API (the view writer, which may still be catching up, then
        # the SSE poll): wait while probe alerts keep arriving; one still missing once none
        # came for CATCH_UP_STALL_S is counted as missing.
        arrived = (time.time(), len(self.arrivals))
        while (not self.injected.keys() <= self.arrivals.keys()
               and time.time() - arrived[0] < CATCH_UP_STALL_S):
            if len(self.arrivals) > arrived[1]:
                arrived = (time.time(), len(self.arrivals))
            time.sleep(0.5)
        time.sleep(1.0)
        return window_start, window_end, self.drained_at is not None, self.worker_stats() or {}

    @staticmethod
    def _last(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(events) if e.get("event") == kind), None)

    def sample(self, procs: dict[str, Any], baseline: dict[str, Any]) -> Sample:
        now = time.time()
        stats = self.worker_stats() or {}
        sent = acked = 0
        for events in self.load_events:
            progress: dict[str, Any] = next(
                (e for e in reversed(events)
                 if e.get("event") in ("progress", "published", "done")), {})
            sent += int(progress.get("sent", 0))
            acked += int(progress.get("acked", 0))
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for name, proc in procs.items():
            with contextlib.suppress(Exception):
                times = proc.cpu_times()
                cpu[name] = times.user + times.system
                rss[name] = proc.memory_info().rss
        last_ts = stats.get("last_event_ts") or 0
        return Sample(
            t=now,
            sent=sent,
            acked=acked,
            processed=int(stats.get("records", 0)) - int(baseline.get("records", 0)),
            lag_s=round(now - last_ts / 1000, 3) if last_ts else None,
            cpu_s=cpu,
            rss_bytes=rss,
        )

    def stop(self) -> None:
        self._stop_sse.set()
        for proc in self.helpers:
            embedded.stop_process(proc, 5)
        if self.stack is not None:
            for child in reversed(self.stack.children):
                embedded.stop_process(child.proc, 15)
            if self.stack.kafka is not None:
                self.stack.kafka.stop()
        if self.broker is not None:
            embedded.stop_process(self.broker, 5)


def worker_name(n: int) -> str:
    return "worker" if n == 1 else f"worker-{n}"


def views_name(n: int) -> str:
    return "views" if n == 1 else f"views-{n}"


def combine_stats(each: list[dict[str, Any]]) -> dict[str, Any]:
    """One group's counters from its workers': records and vehicles add up, the lag is the
    laggard's (the oldest newest event time of the workers that processed any), state sizes
    are averaged over the vehicles each holds."""
    vehicles = sum(int(s.get("vehicles") or 0) for s in each)
    newest = [int(s["last_event_ts"]) for s in each if s.get("last_event_ts")]
    return {
        "records": sum(int(s.get("records", 0)) for s in each),
        "last_event_ts": min(newest) if newest else 0,
        "vehicles": vehicles,
        "state_bytes_mean": round(sum(float(s.get("state_bytes_mean") or 0)
                                      * int(s.get("vehicles") or 0) for s in each)
                                  / vehicles, 1) if vehicles else None,
        "state_bytes_max": max((s.get("state_bytes_max") or 0 for s in each), default=None),
        "view_writer_pids": [s.get("view_writer_pid") for s in each],
        "view_writer_waits": sum(int(s.get("view_writer_waits") or 0) for s in each),
        "workers": len(each),
    }


def _processes(pids: dict[str, int | None]) -> dict[str, Any]:
    import psutil

    return {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}


def run(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
        import psutil  # noqa: F401
    except ImportError:
        print("ownercare bench needs the 'bench' extra: pip install 'ownercare[bench]'",
              file=sys.stderr)
        return 2
    if args.publishers is None:
        args.publishers = max(1, math.ceil(args.vehicles * args.rate / 6000))
    bench = Bench(args)
    samples: list[Sample] = []
    print(f"ownercare bench: logs in {bench.log_dir}", file=sys.stderr, flush=True)
    try:
        bench.start_broker()
        print(f"  broker-only fan-through ({bench.broker_name})...", file=sys.stderr, flush=True)
        raw = bench.raw_phase()
        print("  starting Tansu, worker, bridge, API...", file=sys.stderr, flush=True)
        bench.start_stack()
        bench.wait_until_flowing()
        print(f"  driving {args.vehicles} vehicles at {args.rate} Hz for {args.duration:g} s...",
              file=sys.stderr, flush=True)
        window_start, window_end, drained, stats = bench.paced_phase(samples)
    except RuntimeError as exc:
        print(f"ownercare bench: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
    latencies = {vin: bench.arrivals[vin] - t for vin, t in bench.injected.items()
                 if vin in bench.arrivals}
    config = {"vehicles": args.vehicles, "rate": args.rate, "duration": args.duration,
              "broker": bench.broker_name, "qos": args.qos, "mqtt_protocol": args.mqtt_protocol,
              "publishers": args.publishers,
              "partitions": bench.stack.settings.partitions if bench.stack else None,
              "workers": args.workers,
              "cpus": os.cpu_count(), "python": sys.version.split()[0],
              "command": (f"ownercare bench --vehicles {args.vehicles} --rate {args.rate:g} "
                          f"--duration {args.duration:g} --broker {bench.broker_name} "
                          f"--qos {args.qos}"
                          + (f" --workers {args.workers}" if args.workers > 1 else "")
                          + (f" --partitions {args.partitions}" if args.partitions else ""))}
    report = summarise(config=config, samples=samples, window_start=window_start,
                       window_end=window_end, latencies=latencies, injected=len(bench.injected),
                       raw=raw, worker_stats=stats, drained=drained, max_lag_s=args.max_lag,
                       drained_at=bench.drained_at)
    print(render_text(report), flush=True)
    if args.json_path:
        doc = {**report, "timeseries": [vars(s) for s in samples],
               "latency_samples": [{"vin": v, "t_pub": bench.injected[v], "latency_s": lat}
                                   for v, lat in latencies.items()]}
        Path(args.json_path).write_text(json.dumps(doc, indent=2) + "\n")
    if args.plot_path:
        points = [(bench.injected[v], lat) for v, lat in latencies.items()]
        plot(report, samples, points, args.plot_path)
    return 0
