"""Care cases and GET /quality over real HTTP (uvicorn), with real API keys, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import ApiSettings
from storage.cases import CaseStore
from storage.store import Store
from tests.api.test_webhooks_http import Receiver, api_settings, wait_for
from tests.apikit import Server, headers_for
from tests.storage.test_store import alert

pytestmark = pytest.mark.integration
VIN = "WCRAAAAAAAAAAAAA1"
VIN2 = "WCRAAAAAAAAAAAAA2"
HOUR = 3_600_000
STAFF_NOW = 1_700_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'cases.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Iterator[str]:
    # No Kafka needed: these endpoints only read and write the database.
    with Server(ApiSettings(state_dir=tmp_path, api_page_max=100), store) as server:
        server.app.state.cases = CaseStore(store, clock=lambda: STAFF_NOW)
        yield server.url


@pytest.fixture
def agent(store: Store) -> dict[str, str]:
    return headers_for(store, "agent", "ann")


@pytest.fixture
def viewer(store: Store) -> dict[str, str]:
    return headers_for(store, "viewer", "vic")


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == resp.request.url.raw_path.decode().split("?")[0]
    return body


def first_case_id(api: str, headers: dict[str, str], **params: Any) -> int:
    resp = httpx.get(f"{api}/cases", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["items"][0]["id"])


# ---------------------------------------------------------------------------- auth

READS = [("GET", "/cases", None), ("GET", "/cases/{id}", None), ("GET", "/quality", None)]
WRITES = [("POST", "/cases/{id}/transition", {"to": "acknowledged"}),
          ("POST", "/cases/{id}/assign", {"assignee": "ann"}),
          ("POST", "/cases/{id}/notes", {"text": "called, no answer"})]


def test_every_case_endpoint_needs_a_key_and_the_right_role(api: str, store: Store) -> None:
    store.upsert_alert(alert())
    keys = {role: headers_for(store, role) for role in ("viewer", "agent", "ota_manager",
                                                        "admin")}
    case_id = first_case_id(api, keys["viewer"])
    for method, path, body in READS + WRITES:
        url = f"{api}{path.format(id=case_id)}"
        missing = problem(httpx.request(method, url, json=body), 401)
        assert "Authorization: Bearer" in missing["detail"]
        problem(httpx.request(method, url, json=body,
                              headers={"Authorization": "Bearer oc_nope"}), 401)
    for method, path, _body in READS:  # every role may read
        for role, headers in keys.items():
            resp = httpx.request(method, f"{api}{path.format(id=case_id)}", headers=headers)
            assert resp.status_code == 200, (role, path, resp.text)
    for method, path, body in WRITES:  # only agents (and admins) work cases
        for role in ("viewer", "ota_manager"):
            refused = problem(httpx.request(method, f"{api}{path.format(id=case_id)}",
                                            json=body, headers=keys[role]), 403)
            assert f"role {role!r}" in refused["detail"]
            assert "agent" in refused["detail"]
        for role in ("agent", "admin"):
            resp = httpx.request(method, f"{api}{path.format(id=case_id)}", json=body,
                                 headers=keys[role])
            assert resp.status_code in (200, 201), (role, path, resp.text)
            if path.endswith("/transition"):  # the next role's try must be legal again
                body = {"to": "owner_contacted"}


# ---------------------------------------------------------------------------- workflow


def test_working_a_case_from_alert_to_quality(api: str, store: Store, agent: dict[str, str],
                                              viewer: dict[str, str]) -> None:
    store.upsert_alert(alert(severity="warning"))
    store.upsert_alert(alert(id="tyre", type="slow_tyre_leak", detector="tyres",
                             first_seen=2000, last_seen=2000))
    page = httpx.get(f"{api}/cases", headers=viewer).json()
    assert page["next_cursor"] is None
    assert page["fleet_now_event_ms"] is None
    (case,) = page["items"]
    assert {k: case[k] for k in ("asset_kind", "asset_id", "state", "severity",
                                 "opened_event_ms", "due_event_ms", "assignee",
                                 "overdue")} == {
        "asset_kind": "vehicle", "asset_id": VIN, "state": "new", "severity": "warning",
        "opened_event_ms": 1000, "due_event_ms": 1000 + 24 * HOUR, "assignee": None,
        "overdue": False}
    assert case["updated_wall_ms"] > STAFF_NOW  # the store's real wall clock
    url = f"{api}/cases/{case['id']}"
    detail = httpx.get(url, headers=viewer).json()
    assert [a["id"] for a in detail["alerts"]] == ["a-1", "tyre"]
    assert detail["alerts"][0]["evidence"] == {"slope_v_per_day": -0.05}
    assert detail["allowed_transitions"] == ["acknowledged", "false_positive",
                                             "no_action_needed"]
    assert [(e["actor"], e["action"], e["at_event_ms"]) for e in detail["events"]] == [
        ("system", "opened", 1000), ("system", "alert_linked", 1000),
        ("system", "alert_linked", 2000)]

    # An illegal move: 409, and the legal ones in the body.
    illegal = problem(httpx.post(f"{url}/transition", json={"to": "resolved"},
                                 headers=agent), 409)
    assert illegal["allowed"] == ["acknowledged", "false_positive", "no_action_needed"]
    assert "'new' cannot move to 'resolved'" in illegal["detail"]

    moved = httpx.post(f"{url}/transition", json={"to": "acknowledged", "note": "on it"},
                       headers=agent)
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == "acknowledged"
    assigned = httpx.post(f"{url}/assign", json={"assignee": "ann"}, headers=agent).json()
    assert assigned["assignee"] == "ann"
    note = httpx.post(f"{url}/notes", json={"text": "left a voicemail"}, headers=agent)
    assert note.status_code == 201, note.text
    assert {k: note.json()[k] for k in ("at_event_ms", "at_wall_ms", "actor", "action",
                                        "detail")} == {
        "at_event_ms": None, "at_wall_ms": STAFF_NOW, "actor": "ann", "action": "note",
        "detail": {"text": "left a voicemail"}}
    httpx.post(f"{url}/transition", json={"to": "owner_contacted"}, headers=agent)
    # The call fixed the 12 V battery; the tyre alert was wrong.
    done = httpx.post(f"{url}/transition", headers=agent, json={
        "to": "resolved", "outcomes": {"tyre": "false_positive"}, "version": None})
    assert done.status_code == 200, done.text
    closed = done.json()
    assert closed["state"] == "resolved"
    assert closed["closed_wall_ms"] == closed["updated_wall_ms"] == STAFF_NOW
    assert closed["allowed_transitions"] == []
    assert {a["id"]: a["outcome"] for a in closed["alerts"]} == {"a-1": "confirmed",
                                                                 "tyre": "false_positive"}
    staff = [(e["actor"], e["action"], e["to_state"]) for e in closed["events"]
             if e["actor"] != "system"]
    assert staff == [("ann", "transitioned", "acknowledged"), ("ann", "assigned", None),
                     ("ann", "note", None), ("ann", "transitioned", "owner_contacted"),
                     ("ann", "transitioned", "resolved")]
    final = problem(httpx.post(f"{url}/transition", json={"to": "new"}, headers=agent), 409)
    assert final["allowed"] == []
    problem(httpx.post(f"{url}/assign", json={"assignee": "bob"}, headers=agent), 409)

    quality = httpx.get(f"{api}/quality", headers=viewer)
    assert quality.status_code == 200, quality.text
    assert quality.json()["items"] == [
        {"alert_type": "slow_tyre_leak", "detector": "tyres", "detector_version": "1.0.0",
         "alerts": 1, "confirmed": 0, "false_positive": 1, "precision": 0.0},
        {"alert_type": "weak_12v_battery", "detector": "battery12v",
         "detector_version": "1.0.0", "alerts": 1, "confirmed": 1, "false_positive": 0,
         "precision": 1.0}]


def test_a_stale_version_is_a_409_with_the_allowed_moves(api: str, store: Store,
                                                         agent: dict[str, str]) -> None:
    store.upsert_alert(alert())
    case = httpx.get(f"{api}/cases", headers=agent).json()["items"][0]
    url = f"{api}/cases/{case['id']}"
    ok = httpx.post(f"{url}/transition", json={"to": "acknowledged", "version": case["version"]},
                    headers=agent)
    assert ok.status_code == 200
    assert ok.json()["version"] == case["version"] + 1
    stale = problem(httpx.post(f"{url}/transition", headers=agent,
                               json={"to": "false_positive", "version": case["version"]}), 409)
    assert "someone changed it" in stale["detail"]
    assert stale["allowed"] == ["owner_contacted", "service_booked", "false_positive",
                                "no_action_needed"]
    problem(httpx.post(f"{url}/assign", json={"assignee": "x", "version": 1}, headers=agent),
            409)


def test_overdue_cases_are_listable(api: str, store: Store, viewer: dict[str, str]) -> None:
    store.upsert_alert(alert(severity="critical"))  # due 1000 + 4 h
    store.upsert_alert(alert(id="b", asset_id=VIN2))  # due 1000 + 72 h
    store.upsert_signals([("vehicle", VIN2, "Vehicle.Speed", 0, 1000 + 5 * HOUR)])
    page = httpx.get(f"{api}/cases", params={"overdue": "true"}, headers=viewer).json()
    assert [c["asset_id"] for c in page["items"]] == [VIN]
    assert page["items"][0]["overdue"] is True
    assert page["fleet_now_event_ms"] == 1000 + 5 * HOUR
    others = httpx.get(f"{api}/cases", params={"overdue": "false"}, headers=viewer).json()
    assert [c["asset_id"] for c in others["items"]] == [VIN2]
    queue = httpx.get(f"{api}/cases", params={"sort": "due", "limit": 1},
                      headers=viewer).json()
    assert [c["asset_id"] for c in queue["items"]] == [VIN]
    assert queue["next_cursor"]
    rest = httpx.get(f"{api}/cases", params={"sort": "due", "cursor": queue["next_cursor"]},
                     headers=viewer).json()
    assert [c["asset_id"] for c in rest["items"]] == [VIN2]
    assert rest["next_cursor"] is None


def test_pages_are_complete_while_cases_open(api: str, store: Store,
                                            viewer: dict[str, str]) -> None:
    for i in range(7):
        store.upsert_alert(alert(id=f"a-{i}", asset_id=f"V{i}", first_seen=i, last_seen=i))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api}/cases", params=params, headers=viewer).json()
        seen += [c["asset_id"] for c in page["items"]]
        store.upsert_alert(alert(id=f"n-{len(seen)}", asset_id=f"N{len(seen)}"))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"V{i}" for i in reversed(range(7))]


# ---------------------------------------------------------------------------- bad input


def test_bad_requests_are_precise_problems(api: str, store: Store,
                                           agent: dict[str, str]) -> None:
    store.upsert_alert(alert())
    case_id = first_case_id(api, agent)
    url = f"{api}/cases/{case_id}"
    missing = problem(httpx.get(f"{api}/cases/999", headers=agent), 404)
    assert missing["detail"] == "no case with id 999"
    for path, body in (("transition", {"to": "acknowledged"}), ("assign", {"assignee": "a"}),
                       ("notes", {"text": "x"})):
        problem(httpx.post(f"{api}/cases/999/{path}", json=body, headers=agent), 404)

    def bad(resp: httpx.Response, loc: list[Any]) -> dict[str, Any]:
        body = problem(resp, 422)
        assert [e["loc"] for e in body["errors"]] == [loc], body
        return body

    bad(httpx.post(f"{url}/transition", json={"to": "closed"}, headers=agent), ["body", "to"])
    bad(httpx.post(f"{url}/transition", json={"to": "acknowledged", "why": 1}, headers=agent),
        ["body", "why"])
    bad(httpx.post(f"{url}/transition", json={"to": "acknowledged",
                                              "outcomes": {"a-1": "confirmed"}},
                   headers=agent), ["body", "outcomes"])
    strangers = bad(httpx.post(f"{url}/transition", json={
        "to": "false_positive", "outcomes": {"nope": "confirmed"}}, headers=agent),
        ["body", "outcomes"])
    assert f"'nope' are not part of case {case_id}" in strangers["detail"]
    bad(httpx.post(f"{url}/transition", json={"to": "false_positive",
                                              "outcomes": {"a-1": "maybe"}},
                   headers=agent), ["body", "outcomes", "a-1"])
    bad(httpx.post(f"{url}/notes", json={"text": "   "}, headers=agent), ["body", "text"])
    bad(httpx.post(f"{url}/notes", json={"text": "a\x00b"}, headers=agent), ["body", "text"])
    bad(httpx.post(f"{url}/notes", json={"text": "x" * 4001}, headers=agent), ["body", "text"])
    bad(httpx.post(f"{url}/notes", content=b'{"text": "lone \\ud800"}',
                   headers={**agent, "Content-Type": "application/json"}), ["body", "text"])
    bad(httpx.post(f"{url}/assign", json={"assignee": ""}, headers=agent),
        ["body", "assignee"])
    bad(httpx.post(f"{url}/assign", json={"assignee": "a", "version": 0}, headers=agent),
        ["body", "version"])
    bad(httpx.get(f"{api}/cases/0", headers=agent), ["path", "case_id"])
    bad(httpx.get(f"{api}/cases/99999999999999999999", headers=agent), ["path", "case_id"])
    bad(httpx.get(f"{api}/cases", params={"limit": 101}, headers=agent), ["query", "limit"])
    bad(httpx.get(f"{api}/cases", params={"state": "closed"}, headers=agent),
        ["query", "state"])
    bad(httpx.get(f"{api}/cases", params={"sort": "oldest"}, headers=agent), ["query", "sort"])
    bad(httpx.get(f"{api}/cases", params={"cursor": "garbage"}, headers=agent),
        ["query", "cursor"])
    bad(httpx.get(f"{api}/cases", params={"asset_id": "V\x00"}, headers=agent),
        ["query", "asset_id"])
    bad(httpx.get(f"{api}/cases", params={"assignee": "a\x00"}, headers=agent),
        ["query", "assignee"])
    # Nothing of the above changed the case.
    case = httpx.get(url, headers=agent).json()
    assert case["state"] == "new"
    assert case["version"] == 2
    assert len(case["events"]) == 2


# ---------------------------------------------------------------------------- webhooks


def test_staff_actions_reach_a_real_webhook_receiver_signed(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hooks.sqlite'}")
    receiver = Receiver()
    try:
        with Server(api_settings(tmp_path), store) as server:
            admin, agent = headers_for(store, "admin"), headers_for(store, "agent", "ann")
            created = httpx.post(f"{server.url}/webhooks", headers=admin, json={
                "url": receiver.url, "events": ["case.transitioned"], "description": "CRM"})
            assert created.status_code == 201, created.text
            receiver.secret = created.json()["secret"]
            store.upsert_alert(alert())  # opens a case: no event this webhook wants
            case_id = first_case_id(server.url, agent)
            moved = httpx.post(f"{server.url}/cases/{case_id}/transition", headers=agent,
                               json={"to": "acknowledged", "note": "calling now"})
            assert moved.status_code == 200, moved.text
            wait_for(lambda: receiver.requests, "the case.transitioned delivery")
        (request,) = receiver.requests
        assert request.verified == "ok"
        (body,) = receiver.bodies()
        assert body["type"] == "case.transitioned"
        assert body["data"]["change"] == "transitioned"
        assert body["data"]["case"]["id"] == case_id
        assert body["data"]["case"]["state"] == "acknowledged"
        assert {k: body["data"]["event"][k] for k in ("actor", "from_state", "to_state",
                                                       "detail")} == {
            "actor": "ann", "from_state": "new", "to_state": "acknowledged",
            "detail": {"note": "calling now"}}
    finally:
        receiver.close()
        store.close()
