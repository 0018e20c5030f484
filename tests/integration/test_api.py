"""The API on a real uvicorn server over real HTTP, with a real SQLite store and Tansu."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from api.app import create_app
from api.store import Store
from ownercare import embedded
from ownercare.settings import ApiSettings
from tests.unit.test_store import alert

pytestmark = pytest.mark.integration
VIN = "WCRAAAAAAAAAAAAA1"


class Server:
    def __init__(self, settings: ApiSettings, store: Store) -> None:
        self.port = embedded.free_port()
        config = uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=self.port,
                                log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        assert embedded.wait_for_port(self.port, 10)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'api.sqlite'}")


@pytest.fixture
def api(store: Store, kafka_url: str, tmp_path: Path) -> Iterator[str]:
    settings = ApiSettings(state_dir=tmp_path, kafka_url=kafka_url, api_page_max=100)
    with Server(settings, store) as server:
        yield server.url


def is_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_alert_list_detail_and_filters(api: str, store: Store) -> None:
    store.upsert_alert(alert())
    store.upsert_alert(alert(id="b", asset_id="WCRAAAAAAAAAAAAA2", severity="critical",
                             first_seen=2000, last_seen=2000))
    page = httpx.get(f"{api}/alerts").json()
    assert [a["id"] for a in page["items"]] == ["b", "a-1"] and page["next_cursor"] is None
    assert [a["id"] for a in httpx.get(f"{api}/alerts", params={"vin": VIN}).json()["items"]] \
        == ["a-1"]
    crit = httpx.get(f"{api}/alerts", params={"severity": "critical"}).json()["items"]
    assert [a["id"] for a in crit] == ["b"]
    first = httpx.get(f"{api}/alerts", params={"limit": 1}).json()
    second = httpx.get(f"{api}/alerts", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [first["items"][0]["id"], second["items"][0]["id"]] == ["b", "a-1"]
    detail = httpx.get(f"{api}/alerts/a-1").json()
    assert detail["evidence"] == {"slope_v_per_day": -0.05}
    assert detail["recommended_action"] == "Call the owner."


def test_errors_are_problem_json(api: str) -> None:
    is_problem(httpx.get(f"{api}/alerts/nope"), 404)
    body = is_problem(httpx.get(f"{api}/alerts", params={"severity": "apocalyptic"}), 422)
    assert body["errors"][0]["loc"] == ["query", "severity"]
    is_problem(httpx.get(f"{api}/alerts", params={"limit": 0}), 422)
    assert "at most 100" in is_problem(httpx.get(f"{api}/alerts", params={"limit": 101}),
                                       422)["detail"]
    is_problem(httpx.get(f"{api}/alerts", params={"cursor": "garbage"}), 422)
    assert "not a VIN" in is_problem(httpx.get(f"{api}/vehicles/SHORT"), 422)["detail"]
    is_problem(httpx.get(f"{api}/vehicles/WCRZZZZZZZZZZZZZ9"), 404)


def test_vehicle_view_shows_latest_signals_with_event_time_age(api: str, store: Store) -> None:
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, 10_000),
                          ("vehicle", VIN, "Vehicle.LowVoltageBattery.CurrentVoltage", 12.3,
                           40_000),
                          ("vehicle", "WCRAAAAAAAAAAAAA2", "Vehicle.Speed", 50.0, 70_000)])
    store.upsert_alert(alert())
    view = httpx.get(f"{api}/vehicles/{VIN}").json()
    ages = {s["path"]: s["age_s"] for s in view["signals"]}
    assert ages == {"Vehicle.Speed": 60.0, "Vehicle.LowVoltageBattery.CurrentVoltage": 30.0}
    assert view["fleet_now"] == 70_000
    assert [a["id"] for a in view["open_alerts"]] == ["a-1"]


def read_events(api: str, n: int, headers: dict[str, str] | None = None,
                timeout: float = 15) -> list[tuple[int, dict[str, Any]]]:
    events: list[tuple[int, dict[str, Any]]] = []
    with httpx.stream("GET", f"{api}/alerts/stream", headers=headers or {},
                      timeout=timeout) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in resp.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                assert event_id is not None
                events.append((event_id, orjson.loads(line[6:])))
                if len(events) >= n:
                    break
    return events


def test_stream_delivers_changes_and_resumes_exactly_once(api: str, store: Store) -> None:
    store.upsert_alert(alert(id="old", asset_id="WCRAAAAAAAAAAAAA9"))  # before connecting

    def later() -> None:
        time.sleep(1.0)
        store.upsert_alert(alert())
        store.upsert_alert(alert(last_seen=2000, severity="warning"))

    threading.Thread(target=later).start()
    first = read_events(api, 2)  # starts at the current end: "old" is not replayed
    assert [(e["change"], e["alert"]["severity"]) for _, e in first] == [
        ("created", "info"), ("updated", "warning")]
    # Disconnected: changes happen meanwhile; resuming delivers exactly the missed ones.
    store.upsert_alert(alert(last_seen=3000, severity="critical"))
    store.upsert_alert(alert(last_seen=4000, status="resolved"))
    resumed = read_events(api, 2, {"Last-Event-ID": str(first[-1][0])})
    assert [e["change"] for _, e in resumed] == ["updated", "resolved"]
    assert [i for i, _ in resumed] == [first[-1][0] + 1, first[-1][0] + 2]


def test_readiness_checks_kafka_and_database(api: str, store: Store, tmp_path: Path) -> None:
    ok = httpx.get(f"{api}/health/ready", timeout=10)
    assert ok.status_code == 200, ok.text
    assert ok.json()["checks"]["kafka"]["ok"] and ok.json()["checks"]["database"]["ok"]
    assert httpx.get(f"{api}/health/live").json()["status"] == "ok"
    closed = f"kafka://127.0.0.1:{embedded.free_port()}"
    settings = ApiSettings(state_dir=tmp_path, kafka_url=closed)
    with Server(settings, store) as down:
        body = is_problem(httpx.get(f"{down.url}/health/ready", timeout=15), 503)
        assert body["checks"]["kafka"]["ok"] is False and body["checks"]["database"]["ok"]
        assert "kafka" in body["detail"]


def test_openapi_docs_are_served(api: str) -> None:
    assert httpx.get(f"{api}/docs").status_code == 200
    spec = httpx.get(f"{api}/openapi.json").json()
    assert spec["info"]["title"] == "ownercare API"
    assert {"/alerts", "/alerts/{alert_id}", "/alerts/stream", "/vehicles/{vin}",
            "/health/ready"} <= set(spec["paths"])
