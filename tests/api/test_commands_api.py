"""Remote commands, the public survey page, follow-up tasks and GET /quality/contact over
real HTTP (uvicorn) with real API keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import ApiSettings
from storage import commands as command_store
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.storage.test_store import alert

pytestmark = pytest.mark.integration
VIN = "WCRAAAAAAAAAAAAA1"
T0 = 1_767_225_600_000


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'api.sqlite'}")
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, T0)])
    store.upsert_alert(alert(id="a-weak", first_seen=T0, last_seen=T0))
    return store


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Iterator[str]:
    with Server(ApiSettings(state_dir=tmp_path), store) as server:
        yield server.url


def case_id(api: str, headers: dict[str, str]) -> int:
    (case,) = httpx.get(f"{api}/cases", headers=headers).json()["items"]
    return int(case["id"])


def test_roles_idempotency_and_one_in_flight(api: str, store: Store) -> None:
    viewer, agent = headers_for(store, "viewer", "vic"), headers_for(store, "agent", "ann")
    admin = headers_for(store, "admin", "ada")
    cid = case_id(api, viewer)
    resp = httpx.post(f"{api}/cases/{cid}/commands", json={"kind": "battery_test"},
                      headers=viewer)
    assert resp.status_code == 403
    resp = httpx.post(f"{api}/cases/{cid}/commands", json={"kind": "battery_test", "id": "b-1"},
                      headers=agent)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["state"], body["alert_id"], body["case_id"], body["requested_by"]) == (
        "requested", "a-weak", cid, "ann")
    again = httpx.post(f"{api}/vehicles/{VIN}/commands", json={"kind": "battery_test",
                                                              "id": "b-1"}, headers=agent)
    assert again.status_code == 200
    assert again.json()["id"] == "b-1"
    busy = httpx.post(f"{api}/vehicles/{VIN}/commands", json={"kind": "battery_test"},
                      headers=agent)
    assert busy.status_code == 409
    assert busy.json()["command_id"] == "b-1"
    assert httpx.post(f"{api}/vehicles/{VIN}/commands", json={"kind": "clear_dtc"},
                      headers=agent).status_code == 403
    cleared = httpx.post(f"{api}/vehicles/{VIN}/commands", json={"kind": "clear_dtc"},
                         headers=admin)
    assert cleared.status_code == 201
    assert cleared.json()["requested_by"] == "ada"
    assert httpx.post(f"{api}/vehicles/{VIN}/commands", json={"kind": "unlock"},
                      headers=admin).status_code == 422
    assert httpx.post(f"{api}/vehicles/WCRAAAAAAAAAAAAA9/commands", json={"kind": "wake"},
                      headers=agent).status_code == 404
    detail = httpx.get(f"{api}/commands/b-1", headers=viewer).json()
    assert [e["state"] for e in detail["events"]] == ["requested"]
    listed = httpx.get(f"{api}/cases/{cid}/commands", headers=viewer).json()["items"]
    assert {c["kind"] for c in listed} == {"battery_test", "clear_dtc"}
    trail = httpx.get(f"{api}/cases/{cid}", headers=viewer).json()["events"]
    assert [(e["action"], e["actor"], e["detail"]["kind"]) for e in trail
            if e["action"] == "command"] == [("command", "ann", "battery_test"),
                                             ("command", "ada", "clear_dtc")]


def test_too_many_commands_for_a_car_get_429(api: str, store: Store) -> None:
    agent = headers_for(store, "agent", "ann")
    for n in range(10):
        command_store.request_command(store, vin=VIN, kind="wake", actor="x", key_id=None,
                                      command_id=f"w{n}")
        command_store.mark_sent(store, [f"w{n}"])
        command_store.apply_reports(store, [{"kind": "vehicle_command_result", "id": VIN,
                                             "ts": T0, "seq": n, "data": {
                                                 "command_id": f"w{n}",
                                                 "status": "succeeded"}}])
    resp = httpx.post(f"{api}/vehicles/{VIN}/commands", json={"kind": "wake"}, headers=agent)
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1


def answer_page(api: str, path: str, **form: str) -> httpx.Response:
    return httpx.post(f"{api}{path}", data=form)


def test_the_survey_flow_from_resolution_to_quality(api: str, store: Store) -> None:
    agent, admin = headers_for(store, "agent", "ann"), headers_for(store, "admin", "ada")
    cid = case_id(api, agent)
    for to in ("acknowledged", "owner_contacted", "resolved"):
        resp = httpx.post(f"{api}/cases/{cid}/transition", json={"to": to}, headers=agent)
        assert resp.status_code == 200, resp.text
    survey = resp.json()["events"][-1]["detail"]["survey"]
    path = survey["path"]
    page = httpx.get(f"{api}{path}")  # no key: the token is the credential
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="score"' in page.text
    assert "<script" not in page.text
    assert not re.search(r'(src|href)="https?://', page.text)  # no external assets
    bad = answer_page(api, path, score="7")
    assert bad.status_code == 422
    assert "whole number" in bad.text
    done = answer_page(api, path, score="1", comment="Nobody <b>called</b>")
    assert done.status_code == 200
    assert "Thank you" in done.text
    used = answer_page(api, path, score="5")
    assert used.status_code == 409
    assert "already answered" in used.text
    assert httpx.get(f"{api}{path}").status_code == 409
    forged = httpx.get(f"{api}{path[:-3]}xyz")
    assert forged.status_code == 404
    assert "not valid" in forged.text
    assert httpx.get(f"{api}/survey/nonsense").status_code == 404
    answered = httpx.get(f"{api}/cases/{cid}/survey", headers=agent).json()
    assert (answered["score"], answered["comment"]) == (1, "Nobody <b>called</b>")
    (task,) = httpx.get(f"{api}/tasks?state=open", headers=agent).json()["items"]
    assert (task["case_id"], task["for_role"], task["kind"]) == (cid, "supervisor",
                                                                 "low_satisfaction")
    assert httpx.post(f"{api}/tasks/{task['id']}/close", json={}, headers=agent) \
        .status_code == 403
    closed = httpx.post(f"{api}/tasks/{task['id']}/close", json={"note": "called back"},
                        headers=admin).json()
    assert closed["state"] == "done"
    quality: dict[str, Any] = httpx.get(f"{api}/quality/contact", headers=agent).json()
    assert quality["answers"] == 1
    assert quality["satisfaction"]["detector"] == [
        {"key": "battery12v", "answers": 1, "mean_score": 1.0, "csat": 0.0}]
    assert quality["timings"][0]["channel"] == "owner"
    assert httpx.get(f"{api}/quality", headers=agent).json()["contact"] == quality


def test_survey_answers_are_rate_limited_per_address(api: str, store: Store) -> None:
    codes = [answer_page(api, "/survey/forged.token", score="5").status_code
             for _ in range(8)]
    assert codes[:5] == [404] * 5
    assert 429 in codes[5:]
