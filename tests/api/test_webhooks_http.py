"""Webhook delivery over real HTTP: the dispatcher against a real local receiver that
verifies every signature (retries, dead letters, pause), and the /webhooks API on a real
uvicorn server with real keys. On the real clock the receiver verifies with the Standard
Webhooks reference library (``standardwebhooks.Webhook.verify``), as a customer would."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from api.webhook_dispatch import Dispatcher
from care.webhooks import InvalidSignature, verify
from config.settings import ApiSettings, WebhookSettings
from ownercare import embedded
from storage import outbox as ws
from storage.store import Store
from tests.apikit import Server, headers_for
from tests.storage.test_store import alert, row

pytestmark = pytest.mark.integration
NOW_MS = 1_780_000_000_000
# The receiver listens on loopback, which webhooks may reach only when allow-listed.
LOCAL = {"webhook_allow_networks": "127.0.0.1/32"}


# ---------------------------------------------------------------------------- the receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: str  # "ok" or why verification failed


class Receiver:
    """A real HTTP server (http.server, in a thread), the kind a customer would run: it
    verifies the signature of every request, fails the first ``fail_first`` requests (or all
    while ``always_fail``) with 500, and answers 204 otherwise.

    With ``now`` None (the real clock) it verifies with the reference library, exactly as a
    customer's receiver would; with a test's clock, with ``care.webhooks.verify`` (the same
    check, with the clock as a parameter)."""

    def __init__(self) -> None:
        self.secret = ""
        self.fail_first = 0
        self.always_fail = False
        self.delay_s = 0.0
        self.now: Callable[[], float] | None = None
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                try:
                    if receiver.now is None:
                        Webhook(receiver.secret).verify(body, headers)
                    else:
                        verify(receiver.secret, headers, body, now=receiver.now())
                    verified = "ok"
                except (InvalidSignature, WebhookVerificationError) as exc:
                    verified = str(exc)
                with receiver._lock:
                    receiver.requests.append(Received(headers, body, verified))
                    failing = receiver.always_fail or len(receiver.requests) <= \
                        receiver.fail_first
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if verified != "ok":
                    self._answer(401, b"bad signature")
                elif failing:
                    self._answer(500, b"boom")
                else:
                    self._answer(204, b"")

            def _answer(self, status: int, text: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ownercare"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.body) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


class FakeClock:
    """Wall clock for the dispatcher, moved by the test (whole milliseconds)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


def register(store: Store, receiver: Receiver, events: list[str] | None = None) -> dict[
        str, Any]:
    webhook = ws.create_webhook(store, url=receiver.url, events=events or ["alert.*"],
                                description="", created_by="test", now_ms=NOW_MS)
    receiver.secret = webhook["secret"]
    return webhook


def dispatcher_for(store: Store, receiver: Receiver, **settings: Any) -> tuple[
        Dispatcher, FakeClock]:
    clock = FakeClock(NOW_MS)
    receiver.now = clock
    config = WebhookSettings(**{"webhook_max_attempts": 5, "webhook_backoff_base_s": 10,
                                "webhook_backoff_cap_s": 15, "webhook_timeout_s": 5,
                                "webhook_lease_s": 30, **{**LOCAL, **settings}})
    return Dispatcher(store, config, clock=clock), clock


def run(dispatcher: Dispatcher, clock: FakeClock, steps: list[float]) -> list[int]:
    """Advance the clock by each step and poll once; how many deliveries each poll sent."""

    async def scenario() -> list[int]:
        sent = []
        async with dispatcher.running(poll=False):
            for step in steps:
                clock.advance(step)
                sent.append(await dispatcher.run_once())
        return sent

    return asyncio.run(scenario())


# ---------------------------------------------------------------------------- dispatcher


def test_a_failing_receiver_gets_the_delivery_after_retries(
        store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    webhook = register(store, receiver)
    receiver.fail_first = 2
    store.upsert_alert(alert())
    dispatcher, clock = dispatcher_for(store, receiver)
    caplog.set_level(logging.INFO, logger="api.webhook_dispatch")
    # try 1 fails; 10 s backoff; try 2 fails; 15 s (the cap, not 20); try 3 succeeds.
    assert run(dispatcher, clock, [0, 0, 9.999, 0.001, 14.999, 0.001, 3600]) == [
        1, 0, 0, 1, 0, 1, 0]
    (sent,) = ws.list_deliveries(store, webhook["id"])[0]
    assert (sent["state"], sent["attempts"], sent["last_status_code"], sent["last_error"],
            sent["delivered_wall_ms"]) == ("delivered", 3, 204, None, NOW_MS + 25_000)
    assert [r.verified for r in receiver.requests] == ["ok"] * 3
    assert {r.body for r in receiver.requests} == {receiver.requests[0].body}  # same body
    assert [r.headers["webhook-timestamp"] for r in receiver.requests] == [
        str(NOW_MS // 1000), str(NOW_MS // 1000 + 10), str(NOW_MS // 1000 + 25)]
    first = receiver.requests[0]
    # Standard Webhooks headers (the id is the event's: receivers de-duplicate on it), and
    # ours beside them.
    assert first.headers["webhook-id"] == sent["event_id"]
    assert first.headers["webhook-signature"].startswith("v1,")
    assert first.headers["ownercare-delivery-id"] == sent["id"]
    assert first.headers["ownercare-event-type"] == "alert.created"
    assert first.headers["content-type"] == "application/json"
    assert orjson.loads(first.body) == {"id": sent["event_id"], "type": "alert.created",
                                        "created_wall_ms": sent["created_wall_ms"],
                                        "data": {"change": "created", "alert": row()}}
    assert (dispatcher.failed_attempts_total, dispatcher.delivered_total,
            dispatcher.dead_total) == (2, 1, 0)
    failures = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("webhook_delivery_failed")]
    assert [f"id={sent['id']}" in m and "status=500" in m and f"attempt={n}" in m
            for n, m in enumerate(failures, 1)] == [True, True]
    assert webhook["secret"] not in caplog.text
    assert "boom" not in caplog.text  # the receiver's body is never logged


def test_an_always_failing_receiver_ends_in_the_dead_letter_list(
        store: Store, receiver: Receiver) -> None:
    webhook = register(store, receiver)
    receiver.always_fail = True
    store.upsert_alert(alert())
    dispatcher, clock = dispatcher_for(store, receiver, webhook_max_attempts=3)
    assert run(dispatcher, clock, [0, 10, 15, 15, 3600]) == [1, 1, 1, 0, 0]
    (dead,) = ws.list_deliveries(store, webhook["id"], "dead")[0]
    assert (dead["attempts"], dead["last_status_code"], dead["last_error"]) == (
        3, 500, "HTTP 500")
    assert len(receiver.requests) == 3
    assert dispatcher.dead_total == 1
    assert ws.delivery_counts(store) == {(webhook["id"], "dead"): 1}
    # Staff fixed the receiver and retry: a fresh set of tries, delivered at once.
    receiver.always_fail = False
    ws.retry_delivery(store, webhook["id"], dead["id"], clock.ms)
    assert run(dispatcher, clock, [0, 0]) == [1, 0]
    (redone,) = ws.list_deliveries(store, webhook["id"])[0]
    assert (redone["state"], redone["attempts"]) == ("delivered", 1)
    assert len(receiver.requests) == 4
    assert receiver.requests[-1].verified == "ok"


def test_pause_stops_deliveries_and_resume_sends_them(store: Store, receiver: Receiver) -> None:
    webhook = register(store, receiver)
    store.upsert_alert(alert())
    ws.set_webhook_state(store, webhook["id"], "paused")
    dispatcher, clock = dispatcher_for(store, receiver)
    assert run(dispatcher, clock, [0, 3600]) == [0, 0]
    assert receiver.requests == []
    ws.set_webhook_state(store, webhook["id"], "active")
    assert run(dispatcher, clock, [0]) == [1]
    assert [b["type"] for b in receiver.bodies()] == ["alert.created"]


def test_unreachable_and_slow_receivers_are_failures(tmp_path: Path, receiver: Receiver) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    refused = ws.create_webhook(store, url=f"http://127.0.0.1:{embedded.free_port()}/",
                                events=["alert.*"], description="", created_by="t", now_ms=0)
    slow = register(store, receiver)
    receiver.delay_s = 1.0
    store.upsert_alert(alert())
    dispatcher, clock = dispatcher_for(store, receiver, webhook_timeout_s=0.2,
                                       webhook_lease_s=1)
    assert run(dispatcher, clock, [0]) == [2]
    (a,) = ws.list_deliveries(store, refused["id"])[0]
    (b,) = ws.list_deliveries(store, slow["id"])[0]
    assert a["state"] == b["state"] == "pending"
    assert a["attempts"] == b["attempts"] == 1
    assert a["last_status_code"] is None
    assert a["last_error"].startswith("ConnectError")
    assert b["last_status_code"] is None
    assert b["last_error"] == "timed out after 0.2 s"
    assert dispatcher.failed_attempts_total == 2


# ---------------------------------------------------------------------------- the API


@pytest.fixture
def api_store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'api.sqlite'}")


def api_settings(tmp_path: Path, **over: Any) -> ApiSettings:
    return ApiSettings(**{"state_dir": tmp_path, "webhook_allow_http": True,
                          "webhook_poll_s": 0.05, "webhook_backoff_base_s": 0.05,
                          "webhook_backoff_cap_s": 0.05, "webhook_max_attempts": 2,
                          "webhook_timeout_s": 5, "webhook_lease_s": 10, **LOCAL, **over})


@pytest.fixture
def api(api_store: Store, tmp_path: Path) -> Iterator[str]:
    with Server(api_settings(tmp_path), api_store) as server:
        yield server.url


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def items(url: str, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    resp = httpx.get(url, headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    page: list[dict[str, Any]] = resp.json()["items"]
    return page


def is_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def test_webhook_lifecycle_over_http(api: str, api_store: Store, receiver: Receiver,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    admin = headers_for(api_store, "admin", name="ops-admin")
    resp = httpx.post(f"{api}/webhooks", headers=admin, json={
        "url": receiver.url, "events": ["alert.created", "alert.*", "alert.*"],
        "description": "CRM"})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["secret"].startswith("whsec_")
    assert (created["state"], created["events"], created["created_by"], created["url"]) == (
        "active", ["alert.*", "alert.created"], "ops-admin", receiver.url)
    assert resp.headers["location"] == f"/webhooks/{created['id']}"
    public = {k: v for k, v in created.items() if k != "secret"}
    assert httpx.get(f"{api}/webhooks", headers=admin).json() == {"items": [public],
                                                                 "next_cursor": None}
    assert httpx.get(f"{api}{resp.headers['location']}", headers=admin).json() == public
    receiver.secret = created["secret"]
    receiver.fail_first = 1

    api_store.upsert_alert(alert())  # the worker's write; the API's dispatcher sends it
    deliveries = f"{api}/webhooks/{created['id']}/deliveries"
    (sent,) = wait_for(lambda: items(deliveries, admin, state="delivered"), "delivery")
    assert (sent["attempts"], sent["last_status_code"], sent["event_type"]) == (
        2, 204, "alert.created")
    # Real HTTP, real clock, real secret: the Standard Webhooks library's own verifier
    # accepted both tries.
    assert [r.verified for r in receiver.requests] == ["ok", "ok"]
    assert Webhook(created["secret"]).verify(receiver.requests[1].body,
                                             receiver.requests[1].headers)["data"] == {
        "change": "created", "alert": row()}
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(receiver.requests[1].body + b" ",
                                          receiver.requests[1].headers)
    assert receiver.bodies()[1]["created_wall_ms"] == sent["created_wall_ms"]

    paused = httpx.post(f"{api}/webhooks/{created['id']}/pause", headers=admin).json()
    assert paused["state"] == "paused"
    api_store.upsert_alert(alert(last_seen=2000, status="resolved"))
    assert len(items(deliveries, admin)) == 1  # nothing queued while paused
    resumed = httpx.post(f"{api}/webhooks/{created['id']}/resume", headers=admin).json()
    assert resumed["state"] == "active"

    assert httpx.delete(f"{api}/webhooks/{created['id']}", headers=admin).status_code == 204
    is_problem(httpx.get(f"{api}/webhooks/{created['id']}", headers=admin), 404)
    is_problem(httpx.delete(f"{api}/webhooks/{created['id']}", headers=admin), 404)
    is_problem(httpx.get(deliveries, headers=admin), 404)
    is_problem(httpx.post(f"{api}/webhooks/nope/pause", headers=admin), 404)
    # A NUL in any path parameter is refused before any query (api.limits).
    is_problem(httpx.get(f"{api}/webhooks/a%00b", headers=admin), 422)
    assert httpx.get(f"{api}/webhooks", headers=admin).json() == {"items": [],
                                                                 "next_cursor": None}
    assert created["secret"] not in caplog.text  # shown once, never logged


def test_dead_letters_are_listed_and_retried_over_http(api: str, api_store: Store,
                                                       receiver: Receiver) -> None:
    admin = headers_for(api_store, "admin")
    created = httpx.post(f"{api}/webhooks", headers=admin, json={
        "url": receiver.url, "events": ["alert.created"]}).json()
    receiver.secret = created["secret"]
    receiver.always_fail = True
    api_store.upsert_alert(alert())
    deliveries = f"{api}/webhooks/{created['id']}/deliveries"
    (dead,) = wait_for(lambda: items(deliveries, admin, state="dead"), "dead letter")
    assert (dead["attempts"], dead["last_status_code"], dead["last_error"]) == (
        2, 500, "HTTP 500")
    assert len(receiver.requests) == 2

    receiver.always_fail = False
    retry = f"{deliveries}/{dead['id']}/retry"
    resp = httpx.post(retry, headers=admin)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["state"], resp.json()["attempts"]) == ("pending", 0)
    (redone,) = wait_for(lambda: items(deliveries, admin, state="delivered"), "re-delivery")
    assert redone["id"] == dead["id"]
    assert redone["attempts"] == 1
    assert [r.verified for r in receiver.requests] == ["ok"] * 3
    assert httpx.get(deliveries, headers=admin, params={"state": "dead"}).json() == {
        "items": [], "next_cursor": None}
    bad_cursor = is_problem(httpx.get(deliveries, headers=admin, params={"cursor": "x"}), 422)
    assert bad_cursor["errors"][0]["loc"] == ["query", "cursor"]

    metrics = httpx.get(f"{api}/metrics", headers=headers_for(api_store, "viewer"), timeout=30)
    assert metrics.status_code == 200, metrics.text
    assert (f'ownercare_webhook_deliveries{{state="delivered",webhook_id="{created["id"]}"}} '
            "1.0") in metrics.text
    assert "ownercare_webhook_failed_attempts_total 2.0" in metrics.text
    assert "ownercare_webhook_dead_total 1.0" in metrics.text
    assert "ownercare_webhook_delivered_total 1.0" in metrics.text

    conflict = is_problem(httpx.post(retry, headers=admin), 409)
    assert "is delivered; only dead deliveries can be retried" in conflict["detail"]
    is_problem(httpx.post(f"{deliveries}/nope/retry", headers=admin), 404)
    bad_state = is_problem(httpx.get(deliveries, headers=admin, params={"state": "lost"}), 422)
    assert bad_state["errors"][0]["loc"] == ["query", "state"]


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"url": "http://crm.example.com/h", "events": ["alert.*"]}, "url",
     "OWNERCARE_WEBHOOK_ALLOW_HTTP"),
    ({"url": "https://u:p@crm.example.com/h", "events": ["alert.*"]}, "url", "credentials"),
    ({"url": "https://crm.example.com/h", "events": ["alert.opened"]}, "events",
     "'alert.opened' is not an alert event"),
    ({"url": "https://crm.example.com/h", "events": ["vehicle.*"]}, "events",
     "unknown event family"),
    ({"url": "https://crm.example.com/h", "events": []}, "events", "at least 1"),
    ({"events": ["alert.*"]}, "url", "Field required"),
    ({"url": "https://crm.example.com/h", "events": ["*"], "description": "a\x00b"},
     "description", "NUL"),
])
def test_bad_registrations_are_precise_422s(api_store: Store, tmp_path: Path,
                                            body: dict[str, Any], field: str,
                                            message: str) -> None:
    with Server(api_settings(tmp_path, webhook_allow_http=False), api_store) as server:
        resp = httpx.post(f"{server.url}/webhooks", json=body,
                          headers=headers_for(api_store, "admin"))
    problem = is_problem(resp, 422)
    assert problem["errors"][0]["loc"] == ["body", field]
    assert message in problem["detail"]
    assert ws.list_webhooks(api_store) == ([], None)


ENDPOINTS = [
    ("POST", "/webhooks", {"url": "https://crm.example.com/h", "events": ["alert.*"]}),
    ("GET", "/webhooks", None),
    ("GET", "/webhooks/{id}", None),
    ("POST", "/webhooks/{id}/pause", None),
    ("POST", "/webhooks/{id}/resume", None),
    ("GET", "/webhooks/{id}/deliveries", None),
    ("POST", "/webhooks/{id}/deliveries/{delivery}/retry", None),
    ("DELETE", "/webhooks/{id}", None),
]


def test_every_webhook_endpoint_is_admin_only(api: str, api_store: Store) -> None:
    # A closed local port: the server's dispatcher may try it, and nothing leaves the host.
    webhook = ws.create_webhook(api_store, url=f"https://127.0.0.1:{embedded.free_port()}/h",
                                events=["alert.*"], description="", created_by="t", now_ms=0)
    ws.set_webhook_state(api_store, webhook["id"], "paused")
    api_store.upsert_alert(alert())
    assert ws.list_deliveries(api_store, webhook["id"])[0] == []  # paused: none queued
    ws.set_webhook_state(api_store, webhook["id"], "active")
    api_store.upsert_alert(alert(last_seen=2000, severity="critical"))
    (delivery,) = ws.list_deliveries(api_store, webhook["id"])[0]
    weak = {role: headers_for(api_store, role) for role in ("viewer", "agent", "ota_manager")}
    for method, template, body in ENDPOINTS:
        path = template.format(id=webhook["id"], delivery=delivery["id"])
        anonymous = httpx.request(method, api + path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        bad_key = httpx.request(method, api + path, json=body,
                                headers={"Authorization": "Bearer oc_nope_nope"})
        assert bad_key.status_code == 401, (method, path)
        for role, headers in weak.items():
            denied = httpx.request(method, api + path, json=body, headers=headers)
            problem = is_problem(denied, 403)
            assert role in problem["detail"], (method, path)
            assert "admin" in problem["detail"], (method, path)
    assert ws.get_webhook(api_store, webhook["id"]) is not None  # nothing was changed
    assert len(ws.list_webhooks(api_store)[0]) == 1


def test_the_webhook_api_is_documented(api: str) -> None:
    spec = httpx.get(f"{api}/openapi.json").json()
    assert {"/webhooks", "/webhooks/{webhook_id}", "/webhooks/{webhook_id}/pause",
            "/webhooks/{webhook_id}/resume", "/webhooks/{webhook_id}/deliveries",
            "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"} <= set(spec["paths"])
    assert "webhooks" in {t["name"] for t in spec["tags"]}
    created = spec["paths"]["/webhooks"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("WebhookCreated")


def test_delivered_deliveries_are_forgotten_after_the_retention(store: Store,
                                                                receiver: Receiver) -> None:
    webhook = register(store, receiver)
    store.upsert_alert(alert())
    dispatcher, clock = dispatcher_for(store, receiver, webhook_retention_days=7)
    assert run(dispatcher, clock, [0]) == [1]
    clock.advance(7 * 86_400)
    assert asyncio.run(dispatcher.prune()) == 0  # exactly 7 days: kept
    clock.advance(0.001)
    assert asyncio.run(dispatcher.prune()) == 1
    assert ws.list_deliveries(store, webhook["id"]) == ([], None)


def test_the_polling_loop_follows_the_retry_schedule(store: Store, receiver: Receiver) -> None:
    """The loop as the API runs it, with the sleep injected: it polls every webhook_poll_s
    of (fake) time and sends each try when it falls due, not before."""
    register(store, receiver)
    receiver.fail_first = 2
    store.upsert_alert(alert())
    clock = FakeClock(NOW_MS)
    receiver.now = clock
    done = asyncio.Event()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        if clock.ms >= NOW_MS + 60_000:
            done.set()
        await asyncio.sleep(0)

    config = WebhookSettings(webhook_poll_s=1, webhook_backoff_base_s=10,
                             webhook_backoff_cap_s=15, webhook_timeout_s=5, webhook_lease_s=30,
                             **LOCAL)
    dispatcher = Dispatcher(store, config, clock=clock, sleep=sleep)

    async def scenario() -> None:
        async with dispatcher.running():
            await asyncio.wait_for(done.wait(), 60)

    asyncio.run(scenario())
    assert set(slept) == {1}
    assert [r.headers["webhook-timestamp"] for r in receiver.requests] == [
        str(NOW_MS // 1000), str(NOW_MS // 1000 + 10), str(NOW_MS // 1000 + 25)]
    assert [r.verified for r in receiver.requests] == ["ok"] * 3
    assert dispatcher.delivered_total == 1
    assert dispatcher.failed_attempts_total == 2


# ---------------------------------------------------------------------------- internal targets

INTERNAL_TARGETS = ["127.0.0.1", "localhost", "[::1]", "0x7f000001", "2130706433",
                    "169.254.169.254", "10.0.0.1", "metadata.google.internal", "localtest.me",
                    "0.0.0.0"]


@pytest.mark.parametrize("host", INTERNAL_TARGETS)
def test_internal_targets_are_refused_at_registration(api_store: Store, tmp_path: Path,
                                                      host: str) -> None:
    # No allow-list; plain http allowed, so the address is the only reason to refuse.
    settings = api_settings(tmp_path, webhook_allow_networks="")
    with Server(settings, api_store) as server:
        resp = httpx.post(f"{server.url}/webhooks",
                          json={"url": f"http://{host}:8080/h", "events": ["alert.*"]},
                          headers=headers_for(api_store, "admin"))
    problem = is_problem(resp, 422)
    assert problem["errors"][0]["loc"] == ["body", "url"]
    # A name that does not resolve here (no cloud metadata, no public DNS) cannot be
    # checked, so it is refused as such; everything else names its address category.
    assert any(reason in problem["detail"] for reason in (
        "a loopback address", "a private address", "a link-local address",
        "an unspecified address", "does not resolve")), \
        problem["detail"]
    if host not in ("metadata.google.internal", "localtest.me"):
        assert "does not resolve" not in problem["detail"]
    assert ws.list_webhooks(api_store) == ([], None)


def test_a_name_that_resolves_to_loopback_is_refused_at_connect_time(
        api_store: Store, tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered while the allow-list covered it; then the list is gone (or the name now
    resolves elsewhere, as in DNS rebinding): the dispatcher checks again and never
    connects."""
    url = receiver.url.replace("127.0.0.1", "localhost")
    with Server(api_settings(tmp_path, webhook_allow_networks="127.0.0.0/8,::1/128"),
                api_store) as server:
        resp = httpx.post(f"{server.url}/webhooks", json={"url": url, "events": ["alert.*"]},
                          headers=headers_for(api_store, "admin"))
        assert resp.status_code == 201, resp.text
        ws.set_webhook_state(api_store, resp.json()["id"], "paused")
    api_store.upsert_alert(alert())
    ws.set_webhook_state(api_store, resp.json()["id"], "active")
    api_store.upsert_alert(alert(last_seen=2000, severity="critical"))
    caplog.set_level(logging.INFO, logger="api.webhook_dispatch")
    dispatcher, clock = dispatcher_for(api_store, receiver, webhook_allow_networks="")
    assert run(dispatcher, clock, [0]) == [1]
    (failed,) = ws.list_deliveries(api_store, resp.json()["id"])[0]
    assert failed["last_status_code"] is None
    assert failed["last_error"].startswith("RefusedAddress: the host 'localhost' resolves "
                                           "to "), failed["last_error"]
    assert "loopback" in failed["last_error"]
    assert receiver.requests == []


def test_a_public_address_passes_the_check() -> None:
    from api.webhook_dispatch import resolve_checked  # a literal: no DNS, no connection

    assert [str(a) for a in asyncio.run(resolve_checked("https://93.184.215.14/h", ()))] == [
        "93.184.215.14"]
    assert [str(a) for a in asyncio.run(
        resolve_checked("https://[2606:4700::6810:84e5]:8443/h", ()))] == [
        "2606:4700::6810:84e5"]


def test_a_failing_receivers_body_never_reaches_last_error(
        store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    webhook = register(store, receiver)
    receiver.always_fail = True
    store.upsert_alert(alert())
    caplog.set_level(logging.DEBUG)
    dispatcher, clock = dispatcher_for(store, receiver)
    run(dispatcher, clock, [0])
    (failed,) = ws.list_deliveries(store, webhook["id"])[0]
    assert failed["last_error"] == "HTTP 500"
    assert "boom" not in caplog.text
