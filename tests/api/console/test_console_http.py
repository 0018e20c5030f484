"""The console's session and CSRF rules over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from api.console.session import COOKIE, set_cookie_header
from config.settings import ApiSettings
from storage import outbox
from storage.keys import KeyStore
from storage.store import Store
from tests.api.console import fleetkit
from tests.apikit import Server

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'console.sqlite'}")
    else:
        store = Store(request.getfixturevalue("postgres").new_database())
    fleetkit.seed(store)
    return store


@pytest.fixture
def api(store: Store, kafka_url: str, tmp_path: Path) -> Iterator[str]:
    settings = ApiSettings(state_dir=tmp_path, kafka_url=kafka_url,
                           api_auth_failure_burst=3, api_auth_failures_per_s=0.01)
    with Server(settings, store) as server:
        yield server.url


def signed_in(api: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=api)
    answer = client.post("/console/login", data={"key": key})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console/queue"
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def test_the_session_cookie_is_httponly_strict_and_scoped(api: str, store: Store) -> None:
    _row, key = KeyStore(store).create("alice", "agent")
    answer = httpx.post(f"{api}/console/login", data={"key": key})
    cookie = answer.headers["set-cookie"]
    sid = cookie.split(";")[0].removeprefix(f"{COOKIE}=")
    assert key not in cookie
    assert len(sid) >= 40
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert attributes == {"path=/console", "httponly", "samesite=strict"}  # no TLS: no Secure
    tls = Request({"type": "http", "scheme": "https", "server": ("ops.example", 443),
                   "path": "/console/login", "headers": []})
    assert set_cookie_header(tls, sid).endswith("; Secure")


def test_pages_need_a_session_and_every_answer_is_locked_down(api: str, store: Store) -> None:
    for path in ("/console/queue", "/console/cases/1", "/console/fleet", "/console/stream"):
        answer = httpx.get(f"{api}{path}")
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/console/login"
    write = httpx.post(f"{api}/console/cases/1/transition", data={"to": "acknowledged"})
    assert write.status_code == 401
    page = httpx.get(f"{api}/console/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    spec = httpx.get(f"{api}/openapi.json").json()
    assert not [p for p in spec["paths"] if p.startswith("/console")]
    htmx = httpx.get(f"{api}/console/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200
    assert "htmx" in htmx.text[:2000]
    assert "Zero-Clause BSD" in httpx.get(
        f"{api}/console/static/vendor/htmx-2.0.11.LICENSE.txt").text


def test_a_bad_key_is_refused_and_guessing_is_limited(api: str, store: Store) -> None:
    _row, key = KeyStore(store).create("alice", "viewer")
    for _ in range(3):
        refused = httpx.post(f"{api}/console/login", data={"key": "oc_nope"})
        assert refused.status_code == 401
        assert "unknown, malformed or revoked" in refused.text
        assert COOKIE not in refused.headers.get("set-cookie", "")
    limited = httpx.post(f"{api}/console/login", data={"key": key})
    assert limited.status_code == 429  # even the right key, from this address, for a while
    foreign = httpx.post(f"{api}/console/login", data={"key": key},
                         headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


def test_revoking_the_key_ends_its_sessions(api: str, store: Store) -> None:
    keys = KeyStore(store)
    row, key = keys.create("alice", "agent")
    client = signed_in(api, key)
    assert client.get("/console/queue").status_code == 200
    keys.revoke(row["id"])
    answer = client.get("/console/queue")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


def test_an_agent_transitions_notes_and_assigns_through_the_api_rules(api: str,
                                                                      store: Store) -> None:
    _row, key = KeyStore(store).create("alice", "agent")
    client = signed_in(api, key)
    queue = client.get("/console/queue", params={"severity": "warning"})
    assert queue.status_code == 200
    assert fleetkit.VINS[1] in queue.text
    assert fleetkit.VINS[0] not in queue.text  # critical: filtered out
    page = client.get("/console/cases/2").text
    csrf = csrf_of(page)
    version = re.search(r'name="version" value="(\d+)"', page)
    assert version
    done = client.post("/console/cases/2/transition",
                       data={"csrf": csrf, "to": "acknowledged", "version": version.group(1)})
    assert done.status_code == 303
    assert done.headers["location"] == "/console/cases/2"
    stale = client.post("/console/cases/2/transition",
                        data={"csrf": csrf, "to": "owner_contacted",
                              "version": version.group(1)})
    assert stale.headers["location"] == "/console/cases/2"  # nothing in the URL to forge
    shown = client.get("/console/cases/2").text
    assert "someone changed it since you read it" in shown  # the API's 409, shown once
    assert 'id="flash"' not in client.get("/console/cases/2").text
    illegal = client.post("/console/cases/2/transition", data={"csrf": csrf, "to": "new"})
    assert illegal.headers["location"] == "/console/cases/2"
    assert 'id="flash"' in client.get("/console/cases/2").text
    client.post("/console/cases/2/notes", data={"csrf": csrf, "text": "<b>left a message</b>"})
    client.post("/console/cases/2/assign", data={"csrf": csrf, "assignee": "alice"})
    detail = client.get("/console/cases/2").text
    assert "&lt;b&gt;left a message&lt;/b&gt;" in detail  # text, never markup
    assert "<b>left" not in detail
    mine = client.get("/console/queue/rows", params={"assignee": "alice"}).text
    assert "#2" in mine
    assert "#1<" not in mine
    api_view = httpx.get(f"{api}/cases/2", headers={"X-API-Key": key}).json()
    assert (api_view["state"], api_view["assignee"]) == ("acknowledged", "alice")
    assert [e["action"] for e in api_view["events"]][-3:] == ["transitioned", "note",
                                                               "assigned"]
    client.post("/console/logout", data={"csrf": csrf})
    assert client.get("/console/queue").status_code == 303
    again = client.post("/console/cases/2/notes", data={"csrf": csrf, "text": "after"})
    assert again.status_code == 401  # the old session id is gone server-side


def test_the_queue_lists_every_open_case_and_survives_a_stale_cursor(api: str,
                                                                     store: Store) -> None:
    for i, vin in enumerate(fleetkit.VINS[3:]):
        store.upsert_alert(fleetkit.battery_alert(vin, 10 + i))
    _row, key = KeyStore(store).create("alice", "viewer")
    client = signed_in(api, key)
    queue = client.get("/console/queue").text
    assert queue.count('href="/console/cases/') == 6
    assert "Next" not in queue
    _row, agent = KeyStore(store).create("bob", "agent")
    closed = httpx.post(f"{client.base_url}/cases/3/transition", headers={"X-API-Key": agent},
                        json={"to": "no_action_needed"})
    assert closed.status_code == 200, closed.text
    queue = client.get("/console/queue").text
    assert queue.count('href="/console/cases/') == 5  # closed cases leave the queue
    assert 'href="/console/cases/3"' not in queue
    stale = client.get("/console/queue", params={"cursor": "bm9wZQ"})
    assert stale.status_code == 200
    assert "stale" in stale.text


def test_a_case_shows_the_webhooks_sent_about_it(api: str, store: Store) -> None:
    hook = outbox.create_webhook(store, url="https://receiver.example/hook",
                                 events=["alert.*", "case.*"], description="CRM",
                                 created_by="admin", now_ms=1)
    store.upsert_alert(fleetkit.battery_alert(fleetkit.VINS[4], 20))
    _row, key = KeyStore(store).create("alice", "admin")
    client = signed_in(api, key)
    (case,) = httpx.get(f"{api}/cases", headers={"X-API-Key": key},
                        params={"asset_id": fleetkit.VINS[4]}).json()["items"]
    page = client.get(f"/console/cases/{case['id']}").text
    timeline = page[page.index('id="tl-h"'):]
    assert "webhook <code>alert.created</code>" in timeline
    assert "webhook <code>case.opened</code>" in timeline
    other = client.get("/console/cases/1").text
    assert "webhook <code>" not in other[other.index('id="tl-h"'):]  # not about case 1
    hooks = client.get("/console/webhooks").text
    assert "https://receiver.example/hook" in hooks
    deliveries = client.get(f"/console/webhooks/{hook['id']}").text
    assert deliveries.count("<code>alert.created</code>") == 1


def test_remote_commands_show_on_the_case_and_the_vehicle_card(api: str, store: Store) -> None:
    _row, key = KeyStore(store).create("alice", "agent")
    sent = httpx.post(f"{api}/cases/1/commands", headers={"X-API-Key": key},
                      json={"kind": "battery_test"})
    assert sent.status_code == 201, sent.text
    client = signed_in(api, key)
    card = client.get(f"/console/vehicles/{fleetkit.VINS[0]}").text
    commands = card[card.index('id="rc-h"'):card.index('id="cs-h"')]
    assert "<strong>battery test</strong>: requested" in commands
    assert 'href="/console/cases/1"' in commands
    case = client.get("/console/cases/1").text
    assert "remote command battery_test: requested" in case[case.index('id="tl-h"'):]
