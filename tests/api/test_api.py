"""The API on a real uvicorn server over real HTTP, with a real SQLite store and Tansu."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api import alert_stream
from config.settings import ApiSettings
from ownercare import embedded
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.storage.test_store import alert, row

pytestmark = pytest.mark.integration
VIN = "WCRAAAAAAAAAAAAA1"
VIN2 = "WCRAAAAAAAAAAAAA2"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Every API test on both databases ownercare supports (PostgreSQL: a real server)."""
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'api.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def settings(kafka_url: str, tmp_path: Path) -> ApiSettings:
    return ApiSettings(state_dir=tmp_path, kafka_url=kafka_url, api_page_max=100)


@pytest.fixture
def api(store: Store, settings: ApiSettings) -> Iterator[str]:
    with Server(settings, store) as server:
        yield server.url


@pytest.fixture
def http(store: Store) -> Iterator[httpx.Client]:
    """An HTTP client that presents a viewer key (reading is all these tests do)."""
    with httpx.Client(headers=headers_for(store, "viewer"), timeout=10) as client:
        yield client


@pytest.fixture
def fast_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll often and send keepalives every 0.3 s, so tests can also prove that nothing
    else arrives (the keepalive comments tick while we wait)."""
    monkeypatch.setattr(alert_stream, "POLL_S", 0.05)
    monkeypatch.setattr(alert_stream, "KEEPALIVE_S", 0.3)


def is_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == resp.request.url.raw_path.decode().split("?")[0]
    return body


# ---------------------------------------------------------------------------- alerts


def test_alert_list_detail_and_filters(api: str, store: Store, http: httpx.Client) -> None:
    store.upsert_alert(alert())
    store.upsert_alert(alert(id="b", asset_id=VIN2, severity="critical",
                             first_seen=2000, last_seen=2000))
    store.upsert_alert(alert(id="c", asset_id=VIN2, type="dtc", status="resolved",
                             first_seen=500, last_seen=1500))
    page = http.get(f"{api}/alerts").json()
    assert [a["id"] for a in page["items"]] == ["b", "c", "a-1"]
    assert page["next_cursor"] is None

    def ids(**params: Any) -> list[str]:
        resp = http.get(f"{api}/alerts", params=params)
        assert resp.status_code == 200, resp.text
        return [a["id"] for a in resp.json()["items"]]

    assert ids(vin=VIN) == ["a-1"]
    assert ids(severity="critical") == ["b"]
    assert ids(status="open") == ["b", "a-1"]
    assert ids(type="dtc") == ["c"]
    assert ids(vin=VIN2, status="resolved") == ["c"]
    assert ids(vin="WCRZZZZZZZZZZZZZ9") == []
    detail = http.get(f"{api}/alerts/a-1").json()
    # Every field, evidence and recommended action included; no root cause known; every
    # time named for its clock.
    assert detail == row()
    assert (detail["first_seen_event_ms"], detail["last_seen_event_ms"],
            detail["predicted_failure_event_ms"]) == (1000, 1000, 9000)


def test_consequences_carry_their_root_cause_and_can_be_hidden(api: str, store: Store,
                                                               http: httpx.Client) -> None:
    store.upsert_alert(alert(id="battery", first_seen=1000, last_seen=1000))
    store.upsert_alert(alert(id="lost-comm", type="dtc", first_seen=2000, last_seen=2000,
                             evidence={"active_codes": [{"code": "U0100"}]},
                             root_cause_id="battery"))
    store.upsert_alert(alert(id="other", asset_id=VIN2, first_seen=3000, last_seen=3000))
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, 2000)])

    def items(**params: Any) -> list[dict[str, Any]]:
        resp = http.get(f"{api}/alerts", params=params)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["items"])

    assert [(a["id"], a["root_cause_id"]) for a in items()] == [
        ("other", None), ("lost-comm", "battery"), ("battery", None)]
    assert [a["id"] for a in items(linked="false")] == ["other", "battery"]
    assert [a["id"] for a in items(linked="true")] == ["lost-comm"]
    assert [a["id"] for a in items(root_cause_id="battery")] == ["lost-comm"]
    assert items(root_cause_id="other") == []
    assert http.get(f"{api}/alerts/lost-comm").json()["root_cause_id"] == "battery"
    vehicle = http.get(f"{api}/vehicles/{VIN}").json()
    assert {a["id"]: a["root_cause_id"] for a in vehicle["open_alerts"]} == {
        "lost-comm": "battery", "battery": None}
    body = is_problem(http.get(f"{api}/alerts", params={"linked": "maybe"}), 422)
    assert body["errors"][0]["loc"] == ["query", "linked"], body


def test_alert_filters_by_charger_time_range_and_sort(api: str, store: Store,
                                                      http: httpx.Client) -> None:
    store.upsert_alert(alert(id="v", first_seen=1000, last_seen=5000))
    store.upsert_alert(alert(id="ch", asset_kind="charger", asset_id="CP-1", type="faulted",
                             first_seen=3000, last_seen=3000))
    store.upsert_alert(alert(id="old", asset_id=VIN2, first_seen=100, last_seen=900))

    def ids(**params: Any) -> list[str]:
        resp = http.get(f"{api}/alerts", params=params)
        assert resp.status_code == 200, resp.text
        return [a["id"] for a in resp.json()["items"]]

    assert ids(charger="CP-1") == ["ch"]
    assert ids(vin="CP-1") == []  # a vin filter only matches vehicles
    assert ids(since_event_ms=1000) == ["v", "ch"]  # "old" ended before the range
    assert ids(until_event_ms=1000) == ["v", "old"]  # "ch" started after it
    assert ids(since_event_ms=950, until_event_ms=2000) == ["v"]
    assert ids(sort="first_seen_event_ms") == ["old", "v", "ch"]
    assert ids(sort="-first_seen_event_ms") == ["ch", "v", "old"]
    assert ids(sort="last_seen_event_ms") == ["old", "ch", "v"]
    for bad, where in (({"vin": VIN, "charger": "CP-1"}, "charger"),
                       ({"since_event_ms": 10, "until_event_ms": 5}, "until_event_ms"),
                       ({"sort": "severity"}, "sort"), ({"sort": "-last_seen"}, "sort"),
                       ({"since_event_ms": -1}, "since_event_ms")):
        body = is_problem(http.get(f"{api}/alerts", params=bad), 422)
        assert body["errors"][0]["loc"] == ["query", where], body


@pytest.mark.parametrize("sort", ["-last_seen_event_ms", "last_seen_event_ms",
                                  "-first_seen_event_ms", "first_seen_event_ms"])
def test_every_sort_pages_through_all_alerts_exactly_once(api: str, store: Store,
                                                          http: httpx.Client, sort: str) -> None:
    for i in range(9):  # ties on the sort key are broken by id
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"V{i}", first_seen=i // 3,
                                 last_seen=10 + (i % 4)))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "sort": sort, **({"cursor": cursor} if cursor
                                                                else {})}
        page = http.get(f"{api}/alerts", params=params).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = http.get(f"{api}/alerts", params={"sort": sort, "limit": 100}).json()["items"]
    assert seen == [a["id"] for a in everything]
    assert sorted(seen) == [f"a-{i}" for i in
                                                                       range(9)]
    key = sort.lstrip("-")
    pairs = [(a[key], a["id"]) for a in everything]
    assert pairs == sorted(pairs, reverse=sort.startswith("-"))
    other = "first_seen_event_ms" if key == "last_seen_event_ms" else "last_seen_event_ms"
    first = http.get(f"{api}/alerts", params={"sort": sort, "limit": 2}).json()
    body = is_problem(http.get(f"{api}/alerts", params={"sort": other,
                                                        "cursor": first["next_cursor"]}), 422)
    assert f"sort={sort}" in body["detail"]


def test_pages_are_complete_while_alerts_arrive(api: str, store: Store,
                                               http: httpx.Client) -> None:
    for i in range(7):
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"V{i}", first_seen=i, last_seen=i))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"{api}/alerts", params=params).json()
        seen += [a["id"] for a in page["items"]]
        store.upsert_alert(alert(id=f"new-{len(seen)}", asset_id=f"N{len(seen)}",
                                 first_seen=100 + len(seen), last_seen=100 + len(seen)))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"a-{i}" for i in reversed(range(7))]


def test_errors_are_problem_json(api: str, http: httpx.Client) -> None:
    assert "no alert with id 'nope'" in is_problem(http.get(f"{api}/alerts/nope"),
                                                   404)["detail"]
    is_problem(http.get(f"{api}/no/such/route"), 404)
    not_allowed = is_problem(http.post(f"{api}/alerts"), 405)
    assert not_allowed["title"] == "Method Not Allowed"
    body = is_problem(http.get(f"{api}/alerts", params={"severity": "apocalyptic"}), 422)
    assert body["errors"][0]["loc"] == ["query", "severity"]
    assert body["detail"].startswith("query.severity: ")
    body = is_problem(http.get(f"{api}/alerts", params={"status": "closed"}), 422)
    assert body["errors"][0]["loc"] == ["query", "status"]
    body = is_problem(http.get(f"{api}/alerts", params={"limit": 0}), 422)
    assert body["errors"][0]["loc"] == ["query", "limit"]
    is_problem(http.get(f"{api}/alerts", params={"limit": "many"}), 422)
    body = is_problem(http.get(f"{api}/alerts", params={"limit": 101}), 422)
    assert body["errors"] == [{"loc": ["query", "limit"], "type": "less_than_equal",
                               "msg": "Input should be less than or equal to 100"}]
    body = is_problem(http.get(f"{api}/alerts", params={"cursor": "garbage"}), 422)
    assert body["errors"][0]["loc"] == ["query", "cursor"]
    body = is_problem(http.get(f"{api}/alerts", params={"type": "x" * 65}), 422)
    assert body["errors"][0]["loc"] == ["query", "type"]


@pytest.mark.parametrize("bad_vin", ["SHORT", "wcraaaaaaaaaaaaa1", "WCRIAAAAAAAAAAAA1",
                                     "WCRAAAAAAAAAAAAA1X", "WCRAAAAAAAAAAAAA1%0A"])
def test_malformed_vins_are_422(api: str, bad_vin: str, http: httpx.Client) -> None:
    body = is_problem(http.get(f"{api}/vehicles/{bad_vin}"), 422)
    assert "is not a VIN" in body["detail"]
    assert body["errors"][0]["loc"] == ["path", "vin"]


def test_an_internal_error_is_a_500_problem_without_details(settings: ApiSettings,
                                                             tmp_path: Path) -> None:
    class BrokenStore(Store):
        def get_alert(self, alert_id: str) -> dict[str, Any] | None:
            raise RuntimeError("secret internals")

    broken = BrokenStore(f"sqlite:///{tmp_path / 'b.sqlite'}")
    with Server(settings, broken) as server:
        body = is_problem(httpx.get(f"{server.url}/alerts/a-1",
                                    headers=headers_for(broken, "viewer")), 500)
        assert "secret" not in body["detail"]
        assert httpx.get(f"{server.url}/health/live").status_code == 200  # still serving


# ---------------------------------------------------------------------------- vehicles


def test_vehicle_view_shows_latest_signals_with_event_time_age(
        api: str, store: Store, http: httpx.Client) -> None:
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, 10_000),
                          ("vehicle", VIN, "Vehicle.LowVoltageBattery.CurrentVoltage", 12.3,
                           40_000),
                          ("vehicle", VIN, "Vehicle.Powertrain.TractionBattery.CellVoltage."
                           "CellVoltages", [3.7, 3.71], 40_000),
                          ("vehicle", VIN2, "Vehicle.Speed", 50.0, 70_000)])
    store.upsert_alert(alert())
    store.upsert_alert(alert(id="gone", type="dtc", status="resolved"))
    view = http.get(f"{api}/vehicles/{VIN}").json()
    assert (view["vin"], view["first_seen_event_ms"], view["last_seen_event_ms"]) == (
        VIN, 10_000, 40_000)
    assert view["fleet_now_event_ms"] == 70_000
    signals = {s["path"]: (s["value"], s["ts_event_ms"], s["age_s"]) for s in view["signals"]}
    assert signals == {
        "Vehicle.Speed": (0.0, 10_000, 60.0),
        "Vehicle.LowVoltageBattery.CurrentVoltage": (12.3, 40_000, 30.0),
        "Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages": ([3.7, 3.71], 40_000,
                                                                         30.0),
    }
    assert view["open_alerts"] == [row()]
    body = is_problem(http.get(f"{api}/vehicles/WCRZZZZZZZZZZZZZ9"), 404)
    assert "never reported" in body["detail"]


# ---------------------------------------------------------------------------- stream


def read_events(http: httpx.Client, api: str, n: int, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None, linger: float = 0.0,
                timeout: float = 15) -> list[tuple[int, dict[str, Any]]]:
    """The first ``n`` events of a fresh stream; with ``linger``, keep listening that long
    (keepalives tick) and include anything else that arrives."""
    events: list[tuple[int, dict[str, Any]]] = []
    deadline = None
    with http.stream("GET", f"{api}/alerts/stream", headers=headers or {},
                     params=params or {}, timeout=timeout) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        event_id, kind = None, None
        for line in resp.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                assert event_id is not None
                assert kind == "alert"
                events.append((event_id, orjson.loads(line[6:])))
                event_id, kind = None, None
            if len(events) >= n and deadline is None:
                deadline = time.monotonic() + linger
            if deadline is not None and time.monotonic() >= deadline:
                break
    return events


def test_stream_delivers_changes_and_resumes_exactly_once(
        api: str, store: Store, fast_stream: None, http: httpx.Client) -> None:
    store.upsert_alert(alert(id="old", asset_id="WCRAAAAAAAAAAAAA9"))  # before connecting

    def later() -> None:
        time.sleep(0.5)
        store.upsert_alert(alert())
        store.upsert_alert(alert(last_seen=2000, severity="warning"))
        store.upsert_alert(alert(last_seen=2000, severity="warning"))  # duplicate: no event

    threading.Thread(target=later).start()
    # A fresh stream starts at the current end: "old" is not replayed.
    first = read_events(http, api, 2, linger=0.7)
    assert [(e["change"], e["alert"]["severity"]) for _, e in first] == [
        ("created", "info"), ("updated", "warning")]
    assert first[1][1]["alert"] == row(last_seen=2000, severity="warning")
    assert first[1][0] > first[0][0]
    # Disconnected: changes happen meanwhile; resuming delivers exactly the missed ones.
    store.upsert_alert(alert(last_seen=3000, severity="critical"))
    store.upsert_alert(alert(last_seen=4000, status="resolved", severity="critical"))
    resumed = read_events(http, api, 2, {"Last-Event-ID": str(first[-1][0])}, linger=0.7)
    assert [e["change"] for _, e in resumed] == ["updated", "resolved"]
    assert [i for i, _ in resumed] == [first[-1][0] + 1, first[-1][0] + 2]
    # ?after= does the same for clients that cannot set headers.
    again = read_events(http, api, 1, params={"after": first[-1][0] + 1}, linger=0.5)
    assert [i for i, _ in again] == [first[-1][0] + 2]
    everything = read_events(http, api, 5, params={"after": 0}, linger=0.3)
    assert [i for i, _ in everything] == list(range(first[0][0] - 1, first[0][0] + 4))
    assert everything[0][1]["alert"]["id"] == "old"


def test_stream_sends_keepalives_and_stops_polling_when_the_client_leaves(
        settings: ApiSettings, tmp_path: Path, fast_stream: None) -> None:
    class CountingStore(Store):
        polls = 0

        def alert_events_after(self, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
            CountingStore.polls += 1
            return super().alert_events_after(after_id, limit)

    counting = CountingStore(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with Server(settings, counting) as server:
        lines: list[str] = []
        with httpx.stream("GET", f"{server.url}/alerts/stream", timeout=10,
                          headers=headers_for(counting, "viewer")) as resp:
            for line in resp.iter_lines():
                lines.append(line)
                if line == ": keepalive":
                    break
        assert lines[0] == "retry: 2000"
        assert CountingStore.polls > 0
        time.sleep(0.5)  # the server notices the disconnect and ends the generator
        polls = CountingStore.polls
        time.sleep(0.5)
        assert CountingStore.polls == polls, "the stream kept polling after the client left"


def test_stream_refuses_a_bad_resume_position(api: str, http: httpx.Client) -> None:
    body = is_problem(http.get(f"{api}/alerts/stream", headers={"Last-Event-ID": "x"}), 422)
    assert body["errors"][0]["loc"] == ["header", "last-event-id"]
    is_problem(http.get(f"{api}/alerts/stream", headers={"Last-Event-ID": "-1"}), 422)
    is_problem(http.get(f"{api}/alerts/stream", params={"after": -1}), 422)


# ---------------------------------------------------------------------------- health, docs


def test_readiness_checks_kafka_and_database(api: str, store: Store, tmp_path: Path) -> None:
    ok = httpx.get(f"{api}/health/ready", timeout=10)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["status"] == "ok"
    assert body["checks"]["kafka"]["ok"]
    assert body["checks"]["database"]["ok"]
    assert "1 broker(s)" in body["checks"]["kafka"]["detail"]
    assert httpx.get(f"{api}/health/live").json()["status"] == "ok"
    closed = f"kafka://127.0.0.1:{embedded.free_port()}"
    settings = ApiSettings(state_dir=tmp_path, kafka_url=closed)
    with Server(settings, store) as down:
        started = time.monotonic()
        body = is_problem(httpx.get(f"{down.url}/health/ready", timeout=15), 503)
        assert time.monotonic() - started < 5
        assert body["checks"]["kafka"]["ok"] is False
        assert body["checks"]["database"]["ok"]
        assert "kafka" in body["detail"]
        assert "database" not in body["detail"]
        assert httpx.get(f"{down.url}/health/live").status_code == 200


def test_readiness_names_a_failing_database(settings: ApiSettings, tmp_path: Path) -> None:
    class DownStore(Store):
        def ping(self) -> None:
            raise ConnectionError("database went away")

    with Server(settings, DownStore(f"sqlite:///{tmp_path / 'd.sqlite'}")) as server:
        body = is_problem(httpx.get(f"{server.url}/health/ready", timeout=10), 503)
        assert body["checks"]["database"]["ok"] is False
        assert body["checks"]["kafka"]["ok"]
        assert "database" in body["detail"]
        assert "went away" in body["detail"]


def test_the_app_opens_and_closes_its_own_store(settings: ApiSettings) -> None:
    with Server(settings) as server:  # no store given: sqlite in settings.state_dir
        keys = Store(settings.effective_database_url)  # a second opener of the same file
        headers = headers_for(keys, "viewer")
        keys.close()
        assert httpx.get(f"{server.url}/alerts", headers=headers).json() == {
            "items": [], "next_cursor": None}
    assert (settings.state_dir / "ownercare.db").exists()


def test_openapi_docs_are_served(api: str) -> None:
    assert httpx.get(f"{api}/docs").status_code == 200
    spec = httpx.get(f"{api}/openapi.json").json()
    assert spec["info"]["title"] == "ownercare API"
    assert {"alerts", "vehicles", "keys", "health"} <= {t["name"] for t in spec["tags"]}
    assert {"/alerts", "/alerts/{alert_id}", "/alerts/stream", "/vehicles/{vin}",
            "/health/live", "/health/ready"} <= set(spec["paths"])
    get_alert = spec["paths"]["/alerts/{alert_id}"]["get"]
    assert get_alert["tags"] == ["alerts"]
    assert get_alert["responses"]["404"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "application/problem+json" in get_alert["responses"]["422"]["content"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Every operation but the probes declares the API key and its 401/403 problems.
    for path, item in spec["paths"].items():
        for operation in item.values():
            secured = "security" in operation
            assert secured != path.startswith("/health"), path
            assert not secured or {"401", "403", "429"} <= set(operation["responses"]), path
            # Either way of presenting the key is declared, and either one is enough.
            assert not secured or operation["security"] == [{"bearerKey": []},
                                                            {"headerKey": []}], path
    assert spec["components"]["securitySchemes"]["bearerKey"]["scheme"] == "bearer"
    assert {k: v for k, v in spec["components"]["securitySchemes"]["headerKey"].items()
            if k != "description"} == {"type": "apiKey", "in": "header", "name": "X-API-Key"}


TIME_WORDS = re.compile(r"(^|_)(at|ts|time|seen|now|since|until|until_ts)$")
DURATIONS = {"startup_ms", "median_first_contact_ms", "median_resolution_ms"}  # lengths of time


def test_every_time_in_the_api_names_its_clock(api: str) -> None:
    """Each timestamp field and parameter ends in _event_ms (the devices' event time) or
    _wall_ms (the server's clock): the newcomer never has to guess which clock a time is."""
    spec = httpx.get(f"{api}/openapi.json").json()
    names = {(schema_name, prop) for schema_name, schema in spec["components"]["schemas"].items()
             for prop in schema.get("properties", {})}
    names |= {(f"{method.upper()} {path}", param["name"])
              for path, item in spec["paths"].items() for method, op in item.items()
              for param in op.get("parameters", [])}
    wrong = sorted((where, name) for where, name in names
                   if (TIME_WORDS.search(name) or name.endswith("_ms"))
                   and not name.endswith(("_event_ms", "_wall_ms")) and name not in DURATIONS)
    assert wrong == []
    sorts = spec["paths"]["/alerts"]["get"]["parameters"]
    (sort,) = [p for p in sorts if p["name"] == "sort"]
    assert all(v.lstrip("-").endswith("_event_ms") for v in sort["schema"]["enum"])
