"""The archive against a real server speaking the InfluxDB v2 write API (VictoriaMetrics).

VictoriaMetrics runs with ``-dedup.minScrapeInterval=1ms``: like InfluxDB, a point written
twice (same series, same timestamp) is one point. Points are read back through its export API.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from ingest import topics
from ingest.contract import encode_batch
from ingest.kafka import ensure_topics, partition_for
from ownercare import embedded
from tests.stackkit import bootstrap_of, random_vin, start_service, wait_for_log

pytestmark = pytest.mark.integration
T0 = 1_767_571_200_000


class VictoriaMetrics:
    def __init__(self, data: Path) -> None:
        binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        if not Path(binary).exists():
            pytest.fail("victoria-metrics is not installed: apt-get install -y victoria-metrics"
                        " (see .ci/run)")
        self.binary = binary
        self.data = data
        self.port = embedded.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-dedup.minScrapeInterval=1ms", "-retentionPeriod=100y", "-search.latencyOffset=0s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert embedded.wait_for_port(self.port, 20), "victoria-metrics did not start"

    def stop(self) -> None:
        if self.proc is not None:
            embedded.stop_process(self.proc)

    def series(self, match: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as resp:
            lines = resp.read().decode().splitlines()
        out: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for line in lines:
            row = json.loads(line)
            labels = row["metric"]
            key = (labels["__name__"], labels.get("vin") or labels.get("charger_id", ""))
            out[key] = sorted(zip(row["timestamps"], row["values"], strict=True))
        return out


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm-data")
    server.start()
    yield server
    server.stop()


def telemetry(vin: str, seq: int) -> dict[str, Any]:
    signals: dict[str, Any] = {"Vehicle.LowVoltageBattery.CurrentVoltage": 12.0 + seq / 1000,
                               "Vehicle.Speed": float(seq % 90), "Vehicle.IsMoving": True,
                               "Vehicle.LowVoltageSystemState": "ON"}
    if seq == 1:  # the car reports its model when it wakes
        signals["Vehicle.VehicleIdentification.Model"] = "Aurora EV"
    return {"kind": "vehicle_telemetry", "id": vin, "ts": T0 + seq * 60_000, "seq": seq,
            "data": {"signals": signals}}


async def produce(kafka_url: str, batches: list[tuple[str, bytes, int | None]],
                  pause_s: float = 0.0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(kafka_url))
    await producer.start()
    try:
        for topic, value, partition in batches:
            await producer.send_and_wait(topic, value, partition=partition)
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


def archive_env(kafka_url: str, vm: VictoriaMetrics) -> dict[str, str]:
    return {"OWNERCARE_KAFKA_URL": kafka_url, "OWNERCARE_INFLUX_URL": vm.url,
            "OWNERCARE_INFLUX_TOKEN": "unused-by-victoriametrics",
            "OWNERCARE_ARCHIVE_GROUP": f"archive-{random_vin()}",
            "OWNERCARE_ARCHIVE_RETRY_MAX_S": "1", "OWNERCARE_PARTITIONS": "8"}


def vehicle_batches(vins: list[str], seqs: range) -> list[tuple[str, bytes, int | None]]:
    out: list[tuple[str, bytes, int | None]] = []
    for seq in seqs:
        for vin in vins:
            out.append((topics.VEHICLES, encode_batch([telemetry(vin, seq)]),
                        partition_for(vin, 8)))
    return out


def wait_for_points(vm: VictoriaMetrics, match: str, expected: int, timeout: float = 60
                    ) -> dict[tuple[str, str], list[tuple[int, float]]]:
    deadline = time.monotonic() + timeout
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    while time.monotonic() < deadline:
        series = vm.series(match)
        if sum(len(v) for v in series.values()) >= expected:
            return series
        time.sleep(0.5)
    raise AssertionError(f"{sum(len(v) for v in series.values())} of {expected} points arrived")


def test_records_and_alerts_are_archived_with_event_time(kafka_url: str, vm: VictoriaMetrics,
                                                         tmp_path: Path) -> None:
    asyncio.run(ensure_topics(bootstrap_of(kafka_url), 8))
    vins = [random_vin() for _ in range(3)]
    charger = f"CP-{random_vin()[:6]}"
    meter = {"kind": "charger_meter", "id": charger, "ts": T0, "seq": 1,
             "data": {"connectorId": 1, "measurands": {"Power.Active.Import": 7200.0,
                                                        "SoC": 55.5}}}
    alert = {"id": "al-1", "asset_kind": "vehicle", "asset_id": vins[0],
             "type": "weak_12v_battery", "severity": "warning", "status": "open",
             "first_seen": T0, "last_seen": T0 + 5000, "title": "12 V battery weakening",
             "evidence": {}, "predicted_failure_ts": None, "recommended_action": "call",
             "detector": "battery12v", "detector_version": "1.0.0"}
    asyncio.run(produce(kafka_url, [
        *vehicle_batches(vins, range(1, 11)),
        (topics.CHARGERS, encode_batch([meter]), None),
        (topics.ALERTS, orjson.dumps(alert), None),
    ]))
    log = tmp_path / "archive.log"
    proc = start_service("archive", archive_env(kafka_url, vm), log)
    try:
        wait_for_log(log, "archive_started", 30, proc)
        match = "{vin=~\"" + "|".join(vins) + "\"}"
        series = wait_for_points(vm, match, expected=3 * 10 * 4)
        for vin in vins:
            volts = series[("vehicle_LowVoltageBattery.CurrentVoltage", vin)]
            assert volts == [(T0 + s * 60_000, pytest.approx(12.0 + s / 1000)) for s in
                             range(1, 11)]
            assert series[("vehicle_IsMoving", vin)][0][1] == 1
        tagged = vm.series("{model=\"Aurora EV\", vin=~\"" + "|".join(vins) + "\"}")
        assert sum(len(v) for v in tagged.values()) == 3 * 10 * 4  # every point has the model
        charger_series = wait_for_points(vm, f'{{charger_id="{charger}"}}', expected=2)
        assert charger_series[("charger_Power.Active.Import", charger)] == [(T0, 7200.0)]
        annotations = wait_for_points(vm, f'{{asset_id="{vins[0]}"}}', expected=1)
        assert [ts for ts, _ in next(iter(annotations.values()))] == [T0 + 5000]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_influx_outage_delays_the_archive_and_loses_nothing(kafka_url: str,
                                                            vm: VictoriaMetrics,
                                                            tmp_path: Path) -> None:
    asyncio.run(ensure_topics(bootstrap_of(kafka_url), 8))
    vins = [random_vin() for _ in range(4)]
    log = tmp_path / "archive.log"
    proc = start_service("archive", archive_env(kafka_url, vm), log)
    try:
        wait_for_log(log, "archive_started", 30, proc)
        match = "{vin=~\"" + "|".join(vins) + "\"}"
        # The fleet keeps publishing through three phases: server up, down, up again.
        asyncio.run(produce(kafka_url, vehicle_batches(vins, range(1, 21)), pause_s=0.01))
        wait_for_points(vm, match, expected=len(vins) * 20 * 4)
        vm.stop()
        asyncio.run(produce(kafka_url, vehicle_batches(vins, range(21, 41)), pause_s=0.01))
        wait_for_log(log, "archive_write_failed", 30, proc)  # the outage is noticed, retried
        vm.start()
        asyncio.run(produce(kafka_url, vehicle_batches(vins, range(41, 61)), pause_s=0.01))
        series = wait_for_points(vm, match, expected=len(vins) * 60 * 4, timeout=90)
        for vin in vins:
            timestamps = [ts for ts, _ in series[("vehicle_LowVoltageBattery.CurrentVoltage",
                                                  vin)]]
            assert timestamps == [T0 + s * 60_000 for s in range(1, 61)]  # each exactly once
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_archive_command_says_when_it_is_off(tmp_path: Path) -> None:
    log = tmp_path / "archive.log"
    proc = start_service("archive", {"OWNERCARE_INFLUX_URL": ""}, log)
    assert proc.wait(30) == 2
    assert "telemetry archive is off; set OWNERCARE_INFLUX_URL" in log.read_text()
