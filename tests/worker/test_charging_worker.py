"""Charger diagnostics and charging-fault attribution in the real worker, killed mid-stream.

A fleet with a derating charger, a faulty charger and a car with a faulty inlet: its charger
records go straight to Kafka (as the bridge writes them), the Faust worker runs the charger
agent and the attribution agent (through ``ownercare.charging-outcomes``), is SIGKILLed
halfway and restarted with the same app id. The stored alerts must be those of an
uninterrupted offline run: the derating alert exactly (it depends on one charger's records,
in order), the attribution alerts on the same assets (the order in which outcomes from
different charger partitions meet in the outcomes topic may shift their timestamps), each
alert once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from diagnostics.offline import OfflineDiagnostics
from ingest import topics
from ingest.contract import encode_batch, validate
from ingest.kafka import ensure_topics, partition_for
from simulators.fleet import Fleet
from storage.alert_contract import record_of
from storage.store import Store
from tests.conftest import SHARED_PARTITIONS
from tests.stackkit import bootstrap_of, start_service, wait_for_log
from vocab.eventtime import DAY_MS

pytestmark = pytest.mark.integration
PARTITIONS = SHARED_PARTITIONS  # the ownercare topics on the shared broker (conftest)
ATTRIBUTED = ("charger_fault", "charging_inlet_fault")


def charger_batches() -> tuple[list[list[dict[str, Any]]], Fleet, list[dict[str, Any]]]:
    fleet = Fleet(30, 6, seed=31, faults={"charger_derating": 1, "charger_fault": 1,
                                          "inlet_fault": 1},
                  drive_interval_s=300, parked_interval_s=3600)
    records = [validate(t, p) for _, t, p in fleet.messages(fleet.start_ms + 20 * DAY_MS)
               if t.startswith("chargers/")]
    alerts = OfflineDiagnostics().process(records)
    batches = [records[i:i + 100] for i in range(0, len(records), 100)]
    return batches, fleet, alerts


async def produce(kafka_url: str, batches: list[list[dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(kafka_url), acks="all")
    await producer.start()
    try:
        for batch in batches:
            by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for record in batch:
                by_partition[partition_for(record["id"], PARTITIONS)].append(record)
            for partition, chunk in by_partition.items():
                await producer.send_and_wait(topics.CHARGERS, encode_batch(chunk),
                                             partition=partition)
    finally:
        await producer.stop()


async def wait_for_commits(kafka_url: str, group: str, within_s: float = 60) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(kafka_url), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.CHARGERS, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            committed = [await consumer.committed(tp) for tp in partitions]
            if all((c or 0) >= ends[tp] for c, tp in zip(committed, partitions, strict=True)):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the first worker did not commit in time: {committed}")
    finally:
        await consumer.stop()


def summary(alert: dict[str, Any]) -> tuple[Any, ...]:
    return (alert["asset_id"], alert["type"], alert["status"], alert["severity"],
            alert["first_seen"], alert["last_seen"], alert["predicted_failure_ts"])


def test_charger_alerts_and_attribution_survive_a_killed_worker(
        kafka_url: str, tmp_path: Path) -> None:
    batches, fleet, offline_alerts = charger_batches()
    truth = {(t.get("vin") or t["charger_id"], t["fault"]) for t in fleet.truth()}
    final: dict[str, dict[str, Any]] = {}
    for alert in offline_alerts:
        final[alert["id"]] = alert
    expected_derating = {i: summary(a) for i, a in final.items()
                         if a["type"] == "charger_derating"}
    expected_attributed = {(a["asset_id"], a["type"]) for a in final.values()
                           if a["type"] in ATTRIBUTED}
    # The offline run finds every fault on the right asset (else the test proves little).
    assert {(a, t) for a, t, *_ in expected_derating.values()} | expected_attributed == {
        (asset, {"inlet_fault": "charging_inlet_fault"}.get(fault, fault))
        for asset, fault in truth}
    assets = set(fleet.chargers) | {v.vin for v in fleet.vehicles}

    asyncio.run(ensure_topics(bootstrap_of(kafka_url), PARTITIONS))
    db = tmp_path / "alerts.sqlite"
    app_id = f"charging-{os.getpid()}"
    env = {"OWNERCARE_KAFKA_URL": kafka_url, "OWNERCARE_PARTITIONS": str(PARTITIONS),
           "OWNERCARE_DATABASE_URL": f"sqlite:///{db}", "OWNERCARE_STATE_DIR": str(tmp_path),
           "OWNERCARE_WORKER_APP_ID": app_id}
    half = len(batches) // 2
    first = start_service("worker", env, tmp_path / "worker1.log")
    try:
        asyncio.run(produce(kafka_url, batches[:half]))
        wait_for_log(tmp_path / "worker1.log", "alert_emitted", 180, first)
        asyncio.run(wait_for_commits(kafka_url, app_id))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    asyncio.run(produce(kafka_url, batches[half:]))
    second = start_service("worker", env, tmp_path / "worker2.log")
    store = Store(f"sqlite:///{db}")

    def stored() -> tuple[dict[str, tuple[Any, ...]], list[tuple[str, str]]]:
        rows, _ = store.list_alerts(limit=500)
        mine = [r for r in rows if r["asset_id"] in assets]
        return ({r["id"]: summary(record_of(r)) for r in mine
                 if r["type"] == "charger_derating"},
                sorted((r["asset_id"], r["type"]) for r in mine if r["type"] in ATTRIBUTED))

    wanted = (expected_derating, sorted(expected_attributed))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and stored() != wanted:
            time.sleep(1)
        assert stored() == wanted  # each attributed alert once: no duplicate after restart
        time.sleep(3)
        assert stored() == wanted
        log = (tmp_path / "worker1.log").read_text() + (tmp_path / "worker2.log").read_text()
        assert "alert_emitted" in (tmp_path / "worker2.log").read_text()
        assert "type=charger_derating" in log
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
