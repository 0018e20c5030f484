"""The HTTP request metrics on their own: the histogram's arithmetic, and the middleware on a
small FastAPI app in process (the full API over real HTTP: tests/api/test_metrics.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from api.http_metrics import BUCKETS, UNMATCHED, HttpMetrics, HttpMetricsMiddleware

Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: HttpMetrics) -> Values:
    class Source(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return metrics.collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Source())
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@given(st.lists(st.floats(min_value=0, max_value=60, allow_nan=False), min_size=1, max_size=50))
def test_the_histogram_counts_each_duration_in_every_bucket_at_or_above_it(
        durations: list[float]) -> None:
    metrics = HttpMetrics()
    for seconds in durations:
        metrics.observe("GET", "/alerts", 200, seconds)
    values = scrape(metrics)
    key = (("method", "GET"), ("route", "/alerts"))
    for bound in BUCKETS:
        le = (("le", str(bound)), *key)
        assert values[("http_request_duration_seconds_bucket", le)] == sum(
            d <= bound for d in durations)
    assert values[("http_request_duration_seconds_bucket", (("le", "+Inf"), *key))] == len(
        durations)
    assert values[("http_request_duration_seconds_count", key)] == len(durations)
    assert values[("http_request_duration_seconds_sum", key)] == pytest.approx(sum(durations))
    assert values.get(("http_requests_total", (*key, ("status", "200"))), 0) == len(durations)


def small_app() -> tuple[FastAPI, HttpMetrics]:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
        return StreamingResponse(body(), media_type="text/event-stream")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    metrics = HttpMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    metrics.prime(app.routes)
    return app, metrics


def test_routes_are_templates_and_labels_stay_bounded() -> None:
    app, metrics = small_app()
    before = scrape(metrics)
    # primed: the series exist before the first request
    assert before[("http_requests_total", (("method", "GET"), ("route", "/items/{item_id}"),
                                           ("status", "200")))] == 0

    async def calls() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for i in range(3):
                assert (await client.get(f"/items/{i}")).status_code == 200
            assert (await client.get("/items/not-a-number")).status_code == 422
            assert (await client.get("/no/such/path/42")).status_code == 404
            assert (await client.request("BREW", "/items/1")).status_code == 405
            assert (await client.get("/boom")).status_code == 500
            assert (await client.get("/events")).text == "data: 1\n\n"

    asyncio.run(calls())
    values = scrape(metrics)

    def requests(method: str, route: str, status: str) -> float:
        return values[("http_requests_total",
                       (("method", method), ("route", route), ("status", status)))]

    def observed(method: str, route: str) -> float:
        return values[("http_request_duration_seconds_count",
                       (("method", method), ("route", route)))]

    assert requests("GET", "/items/{item_id}", "200") == 3
    assert requests("GET", "/items/{item_id}", "422") == 1
    assert requests("GET", UNMATCHED, "404") == 1
    assert requests("other", "/items/{item_id}", "405") == 1
    assert requests("GET", "/boom", "500") == 1
    assert observed("GET", "/items/{item_id}") == 4
    assert observed("GET", "/boom") == 1
    # The event stream is counted, and kept out of the latency histogram.
    assert requests("GET", "/events", "200") == 1
    assert observed("GET", "/events") == 0
    routes = {dict(labels)["route"] for (name, labels) in values if name == "http_requests_total"}
    assert "/items/1" not in routes
    assert "/no/such/path/42" not in routes
