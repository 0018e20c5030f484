"""GET /metrics over real HTTP with a real Tansu: service reports read back from Kafka, the
worker group's consumer lag asked of Kafka, alert counts from the database."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from config.settings import ApiSettings
from ingest import service_metrics, topics
from ingest.kafka import ensure_topics
from ingest.service_metrics import Report, Sample
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.storage.test_store import alert

pytestmark = pytest.mark.integration


async def produce_and_commit(bootstrap: str, group: str, instance: str) -> None:
    """A bridge's report, 5 vehicle records of which the group has processed 2."""
    await ensure_topics(bootstrap, 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        report = Report("bridge", instance, int(time.time() * 1000), [
            Sample("bridge_messages_total", 1234),
            Sample("bridge_dead_letters_total", 5, labels=(("reason", "bad_json"),))])
        await producer.send_and_wait(topics.SERVICE_METRICS, service_metrics.encode(report),
                                     key=instance.encode())
        for i in range(5):  # one at a time: each its own batch, so the high watermark is exact
            await producer.send_and_wait(topics.VEHICLES, b"x%d" % i, partition=1)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topics.VEHICLES, 1)
        consumer.assign([tp])  # manual assignment: commits without joining the group
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.commit({tp: end - 3})
    finally:
        await consumer.stop()


def scrape(url: str, headers: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                     float]:
    resp = httpx.get(f"{url}/metrics", headers=headers, timeout=15)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def test_metrics_show_service_reports_lag_and_alerts(kafka_url: str, tmp_path: Path) -> None:
    group = f"metrics-test-{os.getpid()}"
    instance = f"test-bridge-{os.getpid()}"
    settings = ApiSettings(state_dir=tmp_path, kafka_url=kafka_url, worker_app_id=group)
    store = Store(f"sqlite:///{tmp_path / 'metrics.sqlite'}")
    store.upsert_alert(alert())
    viewer = headers_for(store, "viewer")
    asyncio.run(produce_and_commit(settings.kafka_bootstrap, group, instance))
    with Server(settings, store) as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        labels = (("instance", instance), ("service", "bridge"))
        deadline = time.monotonic() + 30
        while True:  # the API's follower reads the report topic in the background
            values = scrape(server.url, viewer)
            if ("ownercare_bridge_messages_total", labels) in values:
                break
            assert time.monotonic() < deadline, "the bridge's report never showed up"
            time.sleep(0.5)
    assert values[("ownercare_bridge_messages_total", labels)] == 1234
    assert values[("ownercare_bridge_dead_letters_total",
                   (("instance", instance), ("reason", "bad_json"), ("service", "bridge")))] == 5
    assert values[("ownercare_consumer_lag_records", (
        ("group", group), ("partition", "1"), ("topic", topics.VEHICLES)))] == 3
    assert values[("ownercare_kafka_lag_available", ())] == 1
    assert values[("ownercare_alerts", (("severity", "info"), ("status", "open"),
                                        ("type", "weak_12v_battery")))] == 1


def test_metrics_still_answer_when_kafka_is_down(tmp_path: Path) -> None:
    from ownercare import embedded

    dead = f"kafka://127.0.0.1:{embedded.free_port()}"
    settings = ApiSettings(state_dir=tmp_path, kafka_url=dead)
    store = Store(f"sqlite:///{tmp_path / 'down.sqlite'}")
    store.upsert_alert(alert())
    with Server(settings, store) as server:
        values = scrape(server.url, headers_for(store, "viewer"))
    assert values[("ownercare_kafka_lag_available", ())] == 0
    assert values[("ownercare_alerts", (("severity", "info"), ("status", "open"),
                                        ("type", "weak_12v_battery")))] == 1
