"""Alembic migrations: they build exactly the schema the code declares, upgrade a database
made before migrations existed without losing data, and step down and up again; the
renaming of every time by its clock (0011) and the Standard Webhooks secrets (0012) keep
the data, both ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, select
from standardwebhooks import Webhook

from care.webhooks import secret_key
from storage import migrate as store_module
from storage.migrate import BASELINE_REVISION
from storage.models import alerts, metadata
from storage.store import Store
from tests.storage.test_store import alert

BASELINE_TABLES = ("alerts", "alert_events", "assets", "latest_signals")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.sqlite'}"
    return str(request.getfixturevalue("postgres").new_database())


def schema_diff(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_build_exactly_the_declared_schema(url: str) -> None:
    store = Store(url)
    assert schema_diff(store) == []
    assert revision(store) == store_module._alembic()[1]
    with store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == set(metadata.tables) | {
            "alembic_version"}
    store.close()


def test_a_database_from_before_migrations_is_stamped_and_upgraded(url: str) -> None:
    # What the pre-migration code left: the baseline tables with data, and no revision.
    config, _head = store_module._alembic()
    raw = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, BASELINE_REVISION)
        finally:
            config.attributes.pop("connection", None)
        conn.exec_driver_sql("DROP TABLE alembic_version")
        assert set(inspect(conn).get_table_names()) == set(BASELINE_TABLES)
        old = MetaData()
        old.reflect(conn)  # the baseline's own column names
        conn.execute(old.tables["alerts"].insert().values(**alert(id="kept")))
    raw.dispose()

    store = Store(url)
    assert revision(store) == store_module._alembic()[1]
    assert schema_diff(store) == []
    assert store.get_alert("kept") is not None  # the data survived
    store.close()


def test_every_migration_steps_down_and_up_again(url: str) -> None:
    store = Store(url)
    store.upsert_alert(alert(id="a"))
    config, head = store_module._alembic()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        try:
            command.downgrade(config, BASELINE_REVISION)
            assert MigrationContext.configure(conn).get_current_revision() == BASELINE_REVISION
            assert not inspect(conn).has_table("api_keys")
            command.downgrade(config, "base")
            assert not inspect(conn).has_table("alerts")
            command.upgrade(config, "head")
            assert MigrationContext.configure(conn).get_current_revision() == head
        finally:
            config.attributes.pop("connection", None)
    assert schema_diff(store) == []
    with store.engine.connect() as conn:
        assert conn.execute(select(alerts)).first() is None  # base dropped everything
    store.close()


# ---------------------------------------------------------------------------- 0011, 0012

STAFF = 1_700_000_000_000  # a staff action's wall clock
OLD_SECRET = "whsec_" + "Ab-_" * 10 + "xyz"  # the old format: URL-safe, the whole string a key
OLD_ALERT = {**alert(first_seen=1000, last_seen=2000, predicted_failure_ts=9000),
             "root_cause_id": None}


def alembic(url: str, action: str, target: str) -> None:
    """Run ``command.upgrade`` or ``command.downgrade`` to ``target`` on its own engine."""
    config, _head = store_module._alembic()
    raw = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        try:
            getattr(command, action)(config, target)
        finally:
            config.attributes.pop("connection", None)
    raw.dispose()


def tables(url: str) -> tuple[Any, MetaData]:
    raw = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    schema = MetaData()
    schema.reflect(raw)
    return raw, schema


def rows(url: str, table: str, order: str) -> list[dict[str, Any]]:
    raw, schema = tables(url)
    t = schema.tables[table]
    with raw.connect() as conn:
        found = [dict(r) for r in conn.execute(select(t).order_by(t.c[order])).mappings()]
    raw.dispose()
    return found


def seed_0010(url: str) -> None:
    """One of everything whose times 0011 renames, as the code before it wrote them."""
    alembic(url, "upgrade", "0010")
    raw, schema = tables(url)
    t = schema.tables
    case_row = {"asset_kind": "vehicle", "asset_id": OLD_ALERT["asset_id"], "severity": "info",
                "assignee": None, "opened_at": 1000, "due_at": 5000, "closed_at": None,
                "version": 2}
    with raw.begin() as conn:
        conn.execute(t["alerts"].insert().values(**OLD_ALERT))
        conn.execute(t["alert_events"].insert().values(
            alert_id="a-1", change="created", at=2000, snapshot=OLD_ALERT))
        conn.execute(t["assets"].insert().values(asset_kind="vehicle", asset_id="V",
                                                 first_seen=1000, last_seen=2000))
        conn.execute(t["latest_signals"].insert().values(
            asset_kind="vehicle", asset_id="V", path="Vehicle.Speed", value=1.5, ts=2000))
        conn.execute(t["api_keys"].insert().values(id="k1", name="n", role="admin",
                                                   secret_sha256="0" * 64, created_at=111,
                                                   revoked_at=222))
        # Case 1 was last changed by an alert (event time), case 2 by staff (wall clock).
        conn.execute(t["cases"].insert().values(id=1, state="new", updated_at=1000,
                                                **case_row))
        conn.execute(t["cases"].insert().values(id=2, state="acknowledged", updated_at=STAFF,
                                                **case_row | {"asset_id": "OTHER"}))
        conn.execute(t["case_events"].insert(), [
            {"id": 1, "case_id": 1, "at": 1000, "actor": "system", "action": "opened",
             "from_state": None, "to_state": "new", "detail": {"due_at": 5000}},
            {"id": 2, "case_id": 2, "at": 1000, "actor": "system", "action": "severity_changed",
             "from_state": None, "to_state": None,
             "detail": {"due_at_from": 9000, "due_at_to": 5000}},
            {"id": 3, "case_id": 2, "at": STAFF, "actor": "ann", "action": "transitioned",
             "from_state": "new", "to_state": "acknowledged", "detail": {}}])
        conn.execute(t["webhooks"].insert().values(
            id="w1", url="https://crm.example.com/h", secret=OLD_SECRET, events=["*"],
            state="active", description="", created_at=333, created_by="root"))
        delivery = {"webhook_id": "w1", "event_id": "e", "attempts": 0, "next_attempt_at": 0,
                    "lease_until": None, "last_status_code": None, "last_error": None}
        conn.execute(t["webhook_deliveries"].insert(), [
            {**delivery, "id": "d1", "event_type": "alert.created", "state": "pending",
             "payload": {"change": "created", "alert": OLD_ALERT}, "created_at": 2000,
             "delivered_at": None},
            {**delivery, "id": "d2", "event_type": "case.transitioned", "state": "delivered",
             "payload": {"change": "transitioned",
                         "case": {"id": 2, "opened_at": 1000, "due_at": 5000,
                                  "closed_at": None, "updated_at": STAFF},
                         "event": {"id": 3, "at": STAFF, "actor": "ann", "detail": {}}},
             "created_at": STAFF, "delivered_at": STAFF + 5}])
        conn.execute(t["ota_releases"].insert().values(
            id="r1", version="1.0.0", component="bms", artifact_url="https://x/a", size=1,
            sha256="0" * 64, notes="", rollback=False, created_at=444, created_by="root"))
        campaign = {"release_id": "r1", "config": {"start_at": 0}, "current_wave": 0,
                    "pause_reason": None, "pause_evidence": {}, "events": [],
                    "created_by": "root"}
        conn.execute(t["ota_campaigns"].insert(), [
            {**campaign, "id": "c-draft", "name": "d", "status": "draft",
             "wave_succeeded_at": None, "created_at": 555, "updated_at": 555},
            {**campaign, "id": "c-run", "name": "r", "status": "running",
             "wave_succeeded_at": 7000, "created_at": 556, "updated_at": 8000}])
        conn.execute(t["ota_actions"].insert().values(
            campaign_id="c-run", vin="V", wave=0, state="offered", attempt=1,
            next_attempt_at=8500, updated_at=8000, history=[], waiting=None))
    raw.dispose()


def test_0011_names_every_time_by_its_clock_and_keeps_the_data(url: str) -> None:
    seed_0010(url)
    before_ms = time.time_ns() // 1_000_000
    store = Store(url)  # upgrades to the head
    assert schema_diff(store) == []
    assert store.get_alert("a-1") == {
        **{k: v for k, v in OLD_ALERT.items()
           if k not in ("first_seen", "last_seen", "predicted_failure_ts")},
        "first_seen_event_ms": 1000, "last_seen_event_ms": 2000,
        "predicted_failure_event_ms": 9000}
    (event,) = store.alert_events_after(0)
    assert (event["at_event_ms"], event["snapshot"]) == (2000, store.get_alert("a-1"))
    asset = store.asset("vehicle", "V")
    assert asset is not None
    assert (asset["first_seen_event_ms"], asset["last_seen_event_ms"]) == (1000, 2000)
    assert asset["signals"] == [{"path": "Vehicle.Speed", "value": 1.5, "ts_event_ms": 2000}]
    store.close()
    (key,) = rows(url, "api_keys", "id")
    assert (key["created_wall_ms"], key["revoked_wall_ms"]) == (111, 222)
    by_alert, by_staff = rows(url, "cases", "id")
    assert (by_alert["opened_event_ms"], by_alert["due_event_ms"]) == (1000, 5000)
    assert by_alert["updated_wall_ms"] >= before_ms  # it held event time: now the upgrade's
    assert by_staff["updated_wall_ms"] == STAFF  # wall clock already
    assert [(e["at_event_ms"], e["at_wall_ms"], e["detail"])
            for e in rows(url, "case_events", "id")] == [
        (1000, None, {"due_event_ms": 5000}),
        (1000, None, {"due_from_event_ms": 9000, "due_to_event_ms": 5000}),
        (None, STAFF, {})]
    pending, delivered = rows(url, "webhook_deliveries", "id")
    assert pending["created_wall_ms"] >= before_ms
    assert pending["payload"]["alert"] == store_alert_of(OLD_ALERT)
    assert delivered["created_wall_ms"] == delivered["delivered_wall_ms"] == STAFF + 5
    assert delivered["payload"]["case"] == {"id": 2, "opened_event_ms": 1000,
                                            "due_event_ms": 5000, "closed_wall_ms": None,
                                            "updated_wall_ms": STAFF}
    assert delivered["payload"]["event"] == {"id": 3, "at_event_ms": None,
                                             "at_wall_ms": STAFF, "actor": "ann",
                                             "detail": {}}
    draft, running = rows(url, "ota_campaigns", "name")
    assert (draft["created_wall_ms"], draft["updated_event_ms"]) == (555, None)
    assert (running["status"], running["updated_event_ms"],
            running["wave_succeeded_event_ms"]) == ("running", 8000, 7000)
    (action,) = rows(url, "ota_actions", "vin")
    assert (action["next_attempt_event_ms"], action["updated_event_ms"]) == (8500, 8000)
    (release,) = rows(url, "ota_releases", "id")
    assert release["created_wall_ms"] == 444

    alembic(url, "downgrade", "0010")  # and back: the old names and values
    (old_alert,) = rows(url, "alerts", "id")
    assert {k: old_alert[k] for k in OLD_ALERT} == OLD_ALERT
    (old_event,) = rows(url, "alert_events", "id")
    assert old_event["snapshot"] == OLD_ALERT
    assert [(e["at"], e["detail"]) for e in rows(url, "case_events", "id")] == [
        (1000, {"due_at": 5000}), (1000, {"due_at_from": 9000, "due_at_to": 5000}), (STAFF, {})]
    assert rows(url, "ota_campaigns", "name")[0]["updated_at"] == 555
    assert rows(url, "webhook_deliveries", "id")[1]["payload"]["event"]["at"] == STAFF
    (webhook,) = rows(url, "webhooks", "id")
    assert webhook["secret"] == OLD_SECRET
    store = Store(url)
    assert schema_diff(store) == []
    store.close()


def store_alert_of(record: dict[str, Any]) -> dict[str, Any]:
    names = {"first_seen": "first_seen_event_ms", "last_seen": "last_seen_event_ms",
             "predicted_failure_ts": "predicted_failure_event_ms"}
    return {names.get(k, k): v for k, v in record.items()}


def test_0012_keeps_each_webhooks_key_in_the_standard_webhooks_form(url: str) -> None:
    """A receiver keeps verifying with the key it has: its new secret encodes the same bytes
    (``whsec_`` + base64 of the old secret), which any Standard Webhooks library accepts."""
    seed_0010(url)
    Store(url).close()
    (webhook,) = rows(url, "webhooks", "id")
    assert webhook["secret"] == "whsec_" + base64.b64encode(OLD_SECRET.encode()).decode()
    assert secret_key(webhook["secret"]) == OLD_SECRET.encode()
    body, stamp = b'{"x":1}', int(time.time())
    mac = hmac.new(OLD_SECRET.encode(), f"e.{stamp}.".encode() + body, hashlib.sha256)
    headers = {"webhook-id": "e", "webhook-timestamp": str(stamp),
               "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode()}
    assert Webhook(webhook["secret"]).verify(body, headers) == {"x": 1}
