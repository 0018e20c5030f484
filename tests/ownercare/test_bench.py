"""`ownercare bench` runs end to end at a tiny size and writes a valid report.

No figure is asserted against a target (the machine decides those; the README lists them with
the command). What is asserted: the report is complete and self-consistent, nothing published
was lost on the way to the detectors, every injected trouble code became an alert at the API,
and the benchmark's lean publisher speaks MQTT that a real broker and paho understand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from ingest.contract import validate
from ingest.mqtt import make_client
from simulators.load import DrivingFleet, LeanPublisher, bench_vins

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("qos", [0, 1])
def test_lean_publisher_delivers_every_message_intact(mosquitto_url: str, qos: int) -> None:
    received: list[tuple[str, bytes]] = []
    subscribed, done = threading.Event(), threading.Event()
    total = 3 * 400

    def on_message(_c: object, _u: object, msg: object) -> None:
        received.append((msg.topic, msg.payload))  # type: ignore[attr-defined]
        if len(received) == total:
            done.set()

    sub, connect = make_client(mosquitto_url, f"lean-check-{qos}")
    sub.on_connect = lambda c, *_a: c.subscribe("vehicles/#", qos=1)
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = on_message
    sub.connect(**connect)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        fleet = DrivingFleet(bench_vins(400))
        pub = LeanPublisher(mosquitto_url, f"lean-{qos}", qos, max_in_flight=100)
        sent = []
        for tick in range(3):
            ts = 1_767_225_600_000 + 1000 * tick
            for topic, payload in fleet.payloads(fleet.tick(1.0), range(400), ts):
                pub.publish(topic, payload)
                sent.append((topic, payload))
            pub.flush()
        assert pub.wait_acked(30)
        assert pub.acked == (total if qos else 0)
        pub.close()
        assert done.wait(30), f"{len(received)} of {total} arrived"
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert sorted(received) == sorted(sent)
    for topic, payload in received[:50]:  # and every one is a valid contract message
        assert validate(topic, payload, 65536)["data"]["signals"]


def test_bench_smoke_writes_a_complete_report(tmp_path: Path) -> None:
    """Two workers in one group (the single worker is every other run's default)."""
    report_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    result = subprocess.run(
        [sys.executable, "-m", "ownercare", "bench", "--vehicles", "30", "--rate", "2",
         "--duration", "12", "--warmup", "3", "--raw-messages", "2000",
         "--workers", "2", "--partitions", "4",
         "--state-dir", str(tmp_path / "state"), "--json", str(report_path),
         "--plot", str(plot_path)],
        capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "publish->alert" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["config"]["vehicles"] == 30
    assert report["config"]["workers"] == 2
    assert "--workers 2 --partitions 4" in report["config"]["command"]
    assert report["offered_msgs_per_s"] == 60
    # Nothing published was lost on the way to the detectors.
    assert report["drained"] is True
    assert report["processed_msgs_per_s"] > 0
    # Every injected trouble code became an alert readable at the API, after its publish.
    latency = report["latency_s"]
    assert latency["injected"] >= 5
    assert latency["missing"] == 0
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert all(s["latency_s"] > 0 for s in report["latency_samples"])
    # The cost figures cover every process of the pipeline.
    group = ("worker", "views", "worker-2", "views-2")
    for name in ("broker", "tansu", "bridge", *group, "api", "load"):
        assert report["cpu_s_per_1000_msgs"][name] >= 0, name
    assert report["workers_cpu_s_per_1000_msgs"] == pytest.approx(
        sum(report["cpu_s_per_1000_msgs"][name] for name in group), abs=0.001)
    # The workers' memory is their own and their view writers' (child processes).
    rss = report["peak_rss_mib"]
    assert min(rss[name] for name in group) > 10
    # (each figure is rounded to 0.1 MiB on its own, so the sum may differ by that much)
    assert max(rss[name] for name in group) < report["worker_peak_rss_mib"] <= (
        sum(rss[name] for name in group) + 0.2)
    assert 100 < report["state_bytes_per_vehicle"]["mean"] < 16 * 1024
    assert report["state_bytes_per_vehicle"]["vehicles"] >= 30
    assert report["raw_broker"]["received"] == 2000
    assert report["raw_broker"]["rate"] > 0
    assert report["ownercare_over_raw"] == pytest.approx(
        report["processed_msgs_per_s"] / report["raw_broker"]["rate"], rel=0.01)
    assert len(report["timeseries"]) >= 10
    assert orjson.loads(orjson.dumps(report))  # plain JSON, nothing exotic
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
