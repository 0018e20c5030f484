"""GET /metrics over real HTTP with a real Tansu: service reports read back from Kafka, the
worker group's consumer lag asked of Kafka, alert counts from the database, and the replica's
own HTTP request metrics."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from config.settings import ApiSettings
from ingest import service_metrics, topics
from ingest.contract import Reason
from ingest.kafka import ensure_topics
from ingest.service_metrics import BRIDGE_DEAD_LETTERS, BRIDGE_MESSAGES, Report
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.conftest import SHARED_PARTITIONS
from tests.storage.test_store import alert

pytestmark = pytest.mark.integration

EMPTY_BATCH = orjson.dumps({"records": []})


async def produce_and_commit(bootstrap: str, group: str, instance: str) -> None:
    """A bridge's report, 5 vehicle records of which the group has processed 2."""
    await ensure_topics(bootstrap, SHARED_PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        report = Report("bridge", instance, int(time.time() * 1000), [
            BRIDGE_MESSAGES.sample(1234), BRIDGE_DEAD_LETTERS.sample(5, Reason.NOT_JSON.value)])
        await producer.send_and_wait(topics.SERVICE_METRICS, service_metrics.encode(report),
                                     key=instance.encode())
        # Empty record batches: valid for every other reader of this shared topic. One at a
        # time, each its own Kafka batch, so the high watermark is exact.
        for _ in range(5):
            await producer.send_and_wait(topics.VEHICLES, EMPTY_BATCH, partition=1)
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
        labels = (("replica", instance), ("service", "bridge"))
        deadline = time.monotonic() + 30
        while True:  # the API's follower reads the report topic in the background
            values = scrape(server.url, viewer)
            if ("ownercare_bridge_messages_total", labels) in values:
                break
            assert time.monotonic() < deadline, "the bridge's report never showed up"
            time.sleep(0.5)
    assert values[("ownercare_bridge_messages_total", labels)] == 1234
    assert values[("ownercare_bridge_dead_letters_total",
                   (("reason", "not_json"), ("replica", instance), ("service", "bridge")))] == 5
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


def test_http_requests_are_counted_by_route_template(tmp_path: Path) -> None:
    """Route templates, not raw paths; the SSE stream counted but not timed; an oversized body
    refused before routing still labelled with its route."""
    from ownercare import embedded

    dead = f"kafka://127.0.0.1:{embedded.free_port()}"
    settings = ApiSettings(state_dir=tmp_path, kafka_url=dead, api_max_body_bytes=1024)
    store = Store(f"sqlite:///{tmp_path / 'http.sqlite'}")
    store.upsert_alert(alert())
    viewer, admin = headers_for(store, "viewer"), headers_for(store, "admin")
    with Server(settings, store) as server:
        before = scrape(server.url, viewer)
        for alert_id in ("a-1", "no-such-alert"):
            httpx.get(f"{server.url}/alerts/{alert_id}", headers=viewer, timeout=10)
        assert httpx.get(f"{server.url}/no/such/path", headers=viewer).status_code == 404
        assert httpx.post(f"{server.url}/webhooks", headers=admin,
                          content=b"x" * 2000).status_code == 413
        with httpx.stream("GET", f"{server.url}/alerts/stream", headers=viewer,
                          timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
        values = scrape(server.url, viewer)

    def requests(route: str, status: str, method: str = "GET") -> float:
        return values[("http_requests_total",
                       (("method", method), ("route", route), ("status", status)))]

    def timed(route: str, method: str = "GET") -> float:
        return values[("http_request_duration_seconds_count",
                       (("method", method), ("route", route)))]

    # every route's series is there before its first request
    assert before[("http_requests_total", (("method", "GET"), ("route", "/alerts/{alert_id}"),
                                           ("status", "200")))] == 0
    assert requests("/alerts/{alert_id}", "200") == 1
    assert requests("/alerts/{alert_id}", "404") == 1
    assert timed("/alerts/{alert_id}") == 2
    assert requests("unmatched", "404") == 1
    assert requests("/webhooks", "413", "POST") == 1
    assert requests("/alerts/stream", "200") == 1
    assert timed("/alerts/stream") == 0
    assert requests("/metrics", "200") >= 1  # the first scrape, answered before the second
    routes = {dict(labels).get("route") for name, labels in values
              if name == "http_requests_total"}
    assert not {"/alerts/a-1", "/alerts/no-such-alert", "/no/such/path"} & routes
