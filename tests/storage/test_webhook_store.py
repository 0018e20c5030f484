"""The webhook outbox on a real SQLite file and a real PostgreSQL: deliveries commit with the
change that caused them, filters and pauses decide who gets one, leases give each due
delivery to exactly one dispatcher."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from storage import outbox as ws
from storage.models import alerts
from storage.store import Store
from tests.storage.test_store import Tick, alert, row

T0 = 1_780_000_000_000  # the stores' wall clock starts here, 1 ms per reading

URL = "https://crm.example.com/hook"
LEASE_MS = 60_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}", clock=Tick(T0))
    return Store(request.getfixturevalue("postgres").new_database(), clock=Tick(T0))


def hook(store: Store, events: list[str] | None = None, **over: Any) -> dict[str, Any]:
    return ws.create_webhook(store, url=URL, events=events or ["alert.*"], description="crm",
                             created_by="test-admin", now_ms=5, **over)


def deliveries(store: Store, webhook: dict[str, Any], state: str | None = None) -> list[
        dict[str, Any]]:
    return ws.list_deliveries(store, webhook["id"], state)[0]


# ---------------------------------------------------------------------------- the outbox


def test_alert_changes_become_deliveries_with_the_alert_snapshot(store: Store) -> None:
    webhook = hook(store)
    store.upsert_alert(alert())
    store.upsert_alert(alert())  # a redelivered duplicate: no change, no event
    store.upsert_alert(alert(last_seen=2000, severity="warning"))
    store.upsert_alert(alert(last_seen=3000, status="resolved"))
    rows = deliveries(store, webhook)
    assert [r["event_type"] for r in rows] == ["alert.resolved", "alert.updated",
                                               "alert.created"]
    # Queued at the wall time of each write (one clock reading per alert upsert); the
    # payload carries the alert's event times.
    assert [r["created_wall_ms"] for r in rows] == [T0 + 3, T0 + 2, T0]
    assert rows[-1]["payload"] == {"change": "created", "alert": row()}
    assert rows[0]["payload"]["alert"]["last_seen_event_ms"] == 3000
    assert all(r["state"] == "pending" and r["attempts"] == 0 for r in rows)
    assert len({r["event_id"] for r in rows}) == 3


def test_a_superseded_alert_is_announced(store: Store) -> None:
    webhook = hook(store, ["alert.superseded"])
    store.upsert_alert(alert(id="old", first_seen=1000, last_seen=1000))
    store.upsert_alert(alert(id="new", first_seen=2000, last_seen=2000))
    (row,) = deliveries(store, webhook)
    assert row["event_type"] == "alert.superseded"
    assert row["payload"]["alert"]["id"] == "old"
    assert row["payload"]["alert"]["status"] == "resolved"
    assert row["created_wall_ms"] == T0 + 1


def test_a_rolled_back_change_leaves_no_delivery(store: Store) -> None:
    """The outbox is written in the caller's transaction: both or neither."""
    webhook = hook(store)

    class Boom(Exception):
        pass

    def enqueue_then_fail() -> None:
        with store.write() as conn:
            assert ws.enqueue(conn, "alert.created", {"n": 1}, now_wall_ms=1) == 1
            raise Boom

    with pytest.raises(Boom):
        enqueue_then_fail()
    assert deliveries(store, webhook) == []
    with store.write() as conn:
        assert ws.enqueue(conn, "alert.created", {"n": 2}, now_wall_ms=2) == 1
    assert [r["payload"] for r in deliveries(store, webhook)] == [{"n": 2}]


def test_a_change_the_database_refuses_leaves_no_delivery(store: Store) -> None:
    """A real failure after the outbox insert: the unique index on open alerts refuses a
    second open alert of the same (asset, type), and its delivery rolls back with it."""
    webhook = hook(store)
    store.upsert_alert(alert(id="a"))
    def enqueue_then_insert_a_second_open_alert() -> None:
        with store.write() as conn:
            ws.enqueue(conn, "alert.created", {"alert": {"id": "b"}}, now_wall_ms=3)
            conn.execute(alerts.insert().values(**row(id="b")))

    with pytest.raises(IntegrityError):
        enqueue_then_insert_a_second_open_alert()
    assert [r["payload"]["alert"]["id"] for r in deliveries(store, webhook)] == ["a"]


def test_filters_and_pauses_decide_who_gets_a_delivery(store: Store) -> None:
    alerts_only = hook(store, ["alert.*"])
    resolved_only = hook(store, ["alert.resolved"])
    cases = hook(store, ["case.*"])
    everything = hook(store, ["*"])
    paused = hook(store, ["*"])
    ws.set_webhook_state(store, paused["id"], "paused")
    with store.write() as conn:
        assert ws.enqueue(conn, "alert.created", {}, now_wall_ms=1) == 2
        assert ws.enqueue(conn, "case.opened", {"case": {"id": "c"}}, now_wall_ms=2) == 2
        assert ws.enqueue(conn, "alert.resolved", {}, now_wall_ms=3) == 3
    got = {name: [r["event_type"] for r in deliveries(store, w)] for name, w in [
        ("alerts_only", alerts_only), ("resolved_only", resolved_only), ("cases", cases),
        ("everything", everything), ("paused", paused)]}
    assert got == {"alerts_only": ["alert.resolved", "alert.created"],
                   "resolved_only": ["alert.resolved"],
                   "cases": ["case.opened"],
                   "everything": ["alert.resolved", "case.opened", "alert.created"],
                   "paused": []}
    # One event, one event id, whichever webhooks it goes to.
    resolved = [r for w in (alerts_only, resolved_only, everything)
                for r in deliveries(store, w) if r["event_type"] == "alert.resolved"]
    assert len({r["event_id"] for r in resolved}) == 1


# ---------------------------------------------------------------------------- registrations


def test_webhook_registration_pause_resume_delete(store: Store) -> None:
    created = hook(store, ["case.*", "alert.*"])
    assert created["secret"].startswith("whsec_")
    assert created["state"] == "active"
    public = ws.get_webhook(store, created["id"])
    assert public is not None
    assert "secret" not in public
    assert public == {k: v for k, v in created.items() if k != "secret"}
    assert ws.list_webhooks(store) == ([public], None)
    paused = ws.set_webhook_state(store, created["id"], "paused")
    assert paused is not None
    assert paused["state"] == "paused"
    resumed = ws.set_webhook_state(store, created["id"], "active")
    assert resumed is not None
    assert resumed["state"] == "active"
    assert ws.set_webhook_state(store, "nope", "paused") is None
    with pytest.raises(ValueError, match="state must be one of"):
        ws.set_webhook_state(store, created["id"], "deleted")
    store.upsert_alert(alert())
    # alert.created, and the case it opened: case.opened and case.alert_linked.
    assert ws.delivery_counts(store) == {(created["id"], "pending"): 3}
    assert ws.delete_webhook(store, created["id"]) is True
    assert ws.delete_webhook(store, created["id"]) is False
    assert ws.get_webhook(store, created["id"]) is None
    assert ws.delivery_counts(store) == {}  # its deliveries went with it


def test_webhook_pages_are_complete_oldest_first(store: Store) -> None:
    made = [ws.create_webhook(store, url=URL, events=["*"], description=str(i),
                              created_by="t", now_ms=10 + i // 2)["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = ws.list_webhooks(store, limit=2, cursor=cursor)
        assert len(page) <= 2
        seen += [w["id"] for w in page]
        if cursor is None:
            break
    # Oldest first; webhooks registered in the same millisecond in id order.
    assert seen == [i for _, i in sorted((10 + n // 2, i) for n, i in enumerate(made))]
    with pytest.raises(ValueError, match="cursor"):
        ws.list_webhooks(store, cursor="not-a-cursor")


# ---------------------------------------------------------------------------- dispatching


def test_a_claimed_delivery_is_leased_to_one_dispatcher(store: Store) -> None:
    webhook = hook(store)
    store.upsert_alert(alert())
    (claimed,) = ws.claim_due(store, 1000, LEASE_MS, 10)
    assert claimed["url"] == URL
    assert claimed["secret"] == webhook["secret"]
    assert ws.claim_due(store, 1000, LEASE_MS, 10) == []  # leased
    assert ws.claim_due(store, 1000 + LEASE_MS - 1, LEASE_MS, 10) == []
    # The lease expired (its dispatcher died): another one takes it over...
    (again,) = ws.claim_due(store, 1000 + LEASE_MS, LEASE_MS, 10)
    # ...and the first one's late outcome no longer counts.
    assert not ws.record_attempt(store, claimed["id"], claimed["lease"], delivered=True,
                                 status_code=200, error=None, now_ms=70_000, retry_at=None)
    assert ws.record_attempt(store, again["id"], again["lease"], delivered=False,
                             status_code=500, error="HTTP 500", now_ms=70_000, retry_at=90_000)
    (row,) = deliveries(store, webhook)
    assert (row["state"], row["attempts"], row["next_attempt_wall_ms"],
            row["lease_until_wall_ms"], row["last_status_code"], row["last_error"]) == (
        "pending", 1, 90_000, None, 500, "HTTP 500")
    assert ws.claim_due(store, 89_999, LEASE_MS, 10) == []  # not due yet
    (third,) = ws.claim_due(store, 90_000, LEASE_MS, 10)
    assert ws.record_attempt(store, third["id"], third["lease"], delivered=True,
                             status_code=204, error=None, now_ms=90_050, retry_at=None)
    (row,) = deliveries(store, webhook, "delivered")
    assert (row["attempts"], row["delivered_wall_ms"], row["last_error"]) == (2, 90_050, None)
    assert ws.claim_due(store, 10**12, LEASE_MS, 10) == []


def test_racing_dispatchers_never_claim_the_same_delivery(store: Store) -> None:
    webhook = hook(store)
    with store.write() as conn:
        for i in range(60):
            ws.enqueue(conn, "alert.created", {"i": i}, now_wall_ms=i)
    results: list[list[dict[str, Any]]] = [[], [], []]
    start = threading.Barrier(3)

    def dispatcher(slot: int) -> None:
        start.wait()
        for _ in range(10):
            results[slot] += ws.claim_due(store, 1000, LEASE_MS, 7)

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [r["id"] for slot in results for r in slot]
    assert len(ids) == len(set(ids)) == 60
    assert {r["id"] for r in deliveries(store, webhook)} == set(ids)


def test_paused_webhooks_deliveries_wait(store: Store) -> None:
    webhook = hook(store)
    store.upsert_alert(alert())
    ws.set_webhook_state(store, webhook["id"], "paused")
    assert ws.claim_due(store, 1000, LEASE_MS, 10) == []
    store.upsert_alert(alert(last_seen=2000, severity="critical"))  # not recorded: paused
    ws.set_webhook_state(store, webhook["id"], "active")
    (claimed,) = ws.claim_due(store, 1000, LEASE_MS, 10)
    assert claimed["event_type"] == "alert.created"


def test_only_dead_deliveries_can_be_retried(store: Store) -> None:
    webhook = hook(store)
    store.upsert_alert(alert())
    (claimed,) = ws.claim_due(store, 1000, LEASE_MS, 10)
    with pytest.raises(ws.DeliveryStateError, match="is pending"):
        ws.retry_delivery(store, webhook["id"], claimed["id"], 2000)
    ws.record_attempt(store, claimed["id"], claimed["lease"], delivered=False, status_code=None,
                      error="ConnectError", now_ms=1500, retry_at=None)
    (dead,) = deliveries(store, webhook, "dead")
    assert dead["attempts"] == 1
    assert ws.delivery_counts(store) == {(webhook["id"], "dead"): 1}
    assert ws.retry_delivery(store, webhook["id"], "nope", 2000) is None
    assert ws.retry_delivery(store, "other-webhook", dead["id"], 2000) is None
    retried = ws.retry_delivery(store, webhook["id"], dead["id"], 2000)
    assert retried is not None
    assert (retried["state"], retried["attempts"], retried["next_attempt_wall_ms"]) == (
        "pending", 0, 2000)
    assert retried["last_error"] == "ConnectError"  # kept until the next try says otherwise
    assert ws.claim_due(store, 1999, LEASE_MS, 10) == []
    assert [r["id"] for r in ws.claim_due(store, 2000, LEASE_MS, 10)] == [dead["id"]]


def test_delivery_pages_are_complete_and_stable(store: Store) -> None:
    webhook = hook(store)
    with store.write() as conn:
        for at in (5, 3, 3, 9, 1, 3, 7):
            ws.enqueue(conn, "alert.updated", {"at": at}, now_wall_ms=at)
    everything, cursor = ws.list_deliveries(store, webhook["id"], limit=100)
    assert cursor is None
    assert [r["created_wall_ms"] for r in everything] == [9, 7, 5, 3, 3, 3, 1]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = ws.list_deliveries(store, webhook["id"], limit=3, cursor=cursor)
        seen += [r["id"] for r in page]
        if len(seen) == 3:  # a newer event arrives between pages: later pages are unmoved
            with store.write() as conn:
                ws.enqueue(conn, "alert.updated", {"at": 10}, now_wall_ms=10)
        if cursor is None:
            break
    assert seen == [r["id"] for r in everything]
    with pytest.raises(ValueError, match="cursor"):
        ws.list_deliveries(store, webhook["id"], cursor="not-a-cursor")


def test_old_delivered_deliveries_are_pruned_dead_ones_stay(store: Store) -> None:
    webhook = hook(store)
    with store.write() as conn:
        for i in range(3):
            ws.enqueue(conn, "alert.created", {"i": i}, now_wall_ms=i)
    a, b, c = ws.claim_due(store, 1000, LEASE_MS, 10)
    ws.record_attempt(store, a["id"], a["lease"], delivered=True, status_code=200, error=None,
                      now_ms=1000, retry_at=None)
    ws.record_attempt(store, b["id"], b["lease"], delivered=True, status_code=200, error=None,
                      now_ms=5000, retry_at=None)
    ws.record_attempt(store, c["id"], c["lease"], delivered=False, status_code=500,
                      error="HTTP 500", now_ms=1000, retry_at=None)
    assert ws.prune_delivered(store, 5000) == 1
    assert {(r["id"], r["state"]) for r in deliveries(store, webhook)} == {
        (b["id"], "delivered"), (c["id"], "dead")}


@pytest.mark.parametrize("bad_id", ["nope", "a\x00b", "A" * 36, "", "é"])
def test_ids_that_cannot_exist_are_not_found(store: Store, bad_id: str) -> None:
    """Not even asked of the database (PostgreSQL refuses NUL in text)."""
    webhook = hook(store)
    store.upsert_alert(alert())
    (delivery,) = deliveries(store, webhook)
    assert ws.get_webhook(store, bad_id) is None
    assert ws.set_webhook_state(store, bad_id, "paused") is None
    assert ws.delete_webhook(store, bad_id) is False
    assert ws.list_deliveries(store, bad_id) == ([], None)
    assert ws.retry_delivery(store, webhook["id"], bad_id, 1) is None
    assert ws.retry_delivery(store, bad_id, delivery["id"], 1) is None
    assert ws.get_delivery(store, webhook["id"], delivery["id"]) is not None
