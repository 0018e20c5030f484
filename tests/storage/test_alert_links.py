"""Root-cause links and reopenings in the store, on SQLite and PostgreSQL: what "not repeated"
means for the change log, the webhooks and the cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.alert_contract import validate_alert
from storage.models import case_alerts, case_events, cases, webhook_deliveries
from storage.outbox import create_webhook
from storage.store import Store
from tests.storage.test_store import Tick, alert


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}", clock=Tick())
    return Store(request.getfixturevalue("postgres").new_database(), clock=Tick())


LOST_COMM = {"active_codes": [{"code": "U0100", "severity": "warning", "first_seen": 2000}]}


def hook(store: Store, events: list[str]) -> str:
    return str(create_webhook(store, url="https://crm.example.com/h", events=events,
                              description="", created_by="root", now_ms=0)["id"])


def outbox(store: Store, webhook_id: str) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r.event_type, r.payload["alert"]["id"]) for r in conn.execute(
            select(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(webhook_deliveries.c.created_wall_ms, webhook_deliveries.c.event_type))]


def changes(store: Store) -> list[tuple[str, str]]:
    return [(e["alert_id"], e["change"]) for e in store.alert_events_after(0, 1000)]


def test_a_consequence_is_linked_not_announced_as_a_new_problem(store: Store) -> None:
    new_problems, everything = hook(store, ["alert.created"]), hook(store, ["alert.*"])
    case_hook = hook(store, ["case.*"])
    assert store.upsert_alert(alert(id="battery")) == "created"
    assert store.upsert_alert(alert(id="comm", type="dtc", first_seen=2000, last_seen=2000,
                                    evidence=LOST_COMM, severity="critical",
                                    root_cause_id="battery")) == "created"
    assert store.get_alert("comm")["root_cause_id"] == "battery"  # type: ignore[index]
    assert store.get_alert("battery")["root_cause_id"] is None  # type: ignore[index]
    assert changes(store) == [("battery", "created"), ("comm", "linked")]
    assert outbox(store, new_problems) == [("alert.created", "battery")]
    assert outbox(store, everything) == [("alert.created", "battery"),
                                         ("alert.linked", "comm")]
    with store.engine.connect() as conn:
        (case_id,) = conn.execute(select(cases.c.id)).scalars().all()  # one case, not two
        assert sorted(conn.execute(select(case_alerts.c.alert_id)
                                   .where(case_alerts.c.case_id == case_id)).scalars()) == [
            "battery", "comm"]
        linked = [e.detail for e in conn.execute(
            select(case_events).where(case_events.c.action == "alert_linked")
            .order_by(case_events.c.id))]
        severity = conn.execute(select(cases.c.severity)).scalar_one()
    assert [d["root_cause_id"] for d in linked] == [None, "battery"]
    assert severity == "critical"  # the consequence still makes the case more urgent
    with store.engine.connect() as conn:
        case_events_sent = [r.event_type for r in conn.execute(
            select(webhook_deliveries.c.event_type)
            .where(webhook_deliveries.c.webhook_id == case_hook))]
    assert case_events_sent.count("case.opened") == 1
    # Redelivery changes nothing; a later update is an ordinary update.
    assert store.upsert_alert(alert(id="comm", type="dtc", first_seen=2000, last_seen=2000,
                                    evidence=LOST_COMM, severity="critical",
                                    root_cause_id="battery")) is None
    assert store.upsert_alert(alert(id="comm", type="dtc", first_seen=2000, last_seen=3000,
                                    evidence=LOST_COMM, severity="critical",
                                    root_cause_id="battery", status="resolved")) == "resolved"
    assert changes(store)[-1] == ("comm", "resolved")


def test_a_consequence_whose_cause_case_was_closed_opens_a_case(store: Store) -> None:
    store.upsert_alert(alert(id="battery"))
    with store.write() as conn:
        conn.execute(cases.update().values(state="resolved", closed_wall_ms=1500))
    store.upsert_alert(alert(id="comm", type="dtc", first_seen=2000, last_seen=2000,
                             root_cause_id="battery"))
    with store.engine.connect() as conn:
        rows = conn.execute(select(case_alerts.c.alert_id, case_alerts.c.case_id)
                            .order_by(case_alerts.c.alert_id)).all()
    assert rows[0][1] != rows[1][1]  # the closed case stays closed


def test_a_reopened_alert_is_one_alert_in_one_case(store: Store) -> None:
    assert store.upsert_alert(alert()) == "created"
    assert store.upsert_alert(alert(status="resolved", last_seen=2000)) == "resolved"
    # Replayed "open" at the resolution's instant: nothing (alarm hygiene never sends one).
    assert store.upsert_alert(alert(last_seen=2000)) is None
    assert store.upsert_alert(alert(last_seen=3000, evidence={"flapping": {"opens": 2}})
                              ) == "reopened"
    assert store.get_alert("a-1")["status"] == "open"  # type: ignore[index]
    assert [c for _, c in changes(store)] == ["created", "resolved", "reopened"]
    with store.engine.connect() as conn:
        assert len(conn.execute(select(cases.c.id)).all()) == 1
        assert conn.execute(select(case_alerts.c.alert_id)).scalars().all() == ["a-1"]


@pytest.mark.parametrize(("bad", "message"), [
    ({"root_cause_id": 7}, "'root_cause_id' must be a string"),
    ({"root_cause_id": ""}, "'root_cause_id' is empty"),
    ({"root_cause_id": "x" * 37}, "'root_cause_id' is longer than 36"),
    ({"root_cause_id": "a-1"}, "names the alert itself"),
])
def test_bad_root_cause_ids_are_refused_with_the_reason(bad: dict[str, Any], message: str
                                                        ) -> None:
    with pytest.raises(ValueError, match=message):
        validate_alert(alert(**bad))


def test_producers_that_do_not_send_a_root_cause_are_accepted() -> None:
    assert validate_alert(alert())["root_cause_id"] is None
    assert validate_alert(alert(root_cause_id=None))["root_cause_id"] is None
