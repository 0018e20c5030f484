"""The store on a real SQLite file: idempotent alert upserts, latest values, pagination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql

from api.store import Store

VIN = "WCRAAAAAAAAAAAAA1"


def alert(**over: Any) -> dict[str, Any]:
    base = {
        "id": "a-1", "asset_kind": "vehicle", "asset_id": VIN, "type": "weak_12v_battery",
        "severity": "info", "status": "open", "first_seen": 1000, "last_seen": 1000,
        "title": "12 V battery weakening", "evidence": {"slope_v_per_day": -0.05},
        "predicted_failure_ts": 9000, "recommended_action": "Call the owner.",
        "detector": "battery12v", "detector_version": "1.0.0",
    }
    return {**base, **over}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests on both databases ownercare supports (PostgreSQL: a real server)."""
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


def test_alert_lifecycle_is_recorded_once_per_change(store: Store) -> None:
    assert store.upsert_alert(alert()) == "created"
    assert store.upsert_alert(alert()) is None  # redelivery
    assert store.upsert_alert(alert(last_seen=2000, severity="warning")) == "updated"
    assert store.upsert_alert(alert(last_seen=1500, severity="critical")) is None  # older
    assert store.upsert_alert(alert(last_seen=3000, status="resolved")) == "resolved"
    events = store.alert_events_after(0)
    assert [e["change"] for e in events] == ["created", "updated", "resolved"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert store.get_alert("a-1")["status"] == "resolved"
    assert store.last_event_id() == events[-1]["id"]


def test_only_one_open_alert_per_asset_and_type(store: Store) -> None:
    store.upsert_alert(alert())
    assert store.upsert_alert(alert(id="a-2", first_seen=5000, last_seen=5000)) == "created"
    rows, _ = store.list_alerts(asset_id=VIN, status="open")
    assert [r["id"] for r in rows] == ["a-2"]
    assert store.get_alert("a-1")["status"] == "resolved"
    assert "superseded" in [e["change"] for e in store.alert_events_after(0)]


@pytest.mark.parametrize(("bad", "message"), [
    ({"severity": "apocalyptic"}, "severity"),
    ({"first_seen": "yesterday"}, "first_seen"),
    ({"evidence": [1, 2]}, "evidence"),
    ({"last_seen": 10}, "before first_seen"),
])
def test_invalid_alerts_are_refused_with_the_reason(store: Store, bad: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.upsert_alert(alert(**bad))
    incomplete = alert()
    del incomplete["title"]
    with pytest.raises(ValueError, match="missing field"):
        store.upsert_alert(incomplete)


def test_latest_signals_keep_the_newest_value(store: Store) -> None:
    path = "Vehicle.LowVoltageBattery.CurrentVoltage"
    store.upsert_signals([("vehicle", VIN, path, 12.6, 2000), ("vehicle", VIN, "Vehicle.Speed",
                                                                  0.0, 2000)])
    store.upsert_signals([("vehicle", VIN, path, 11.0, 1000)])  # late, older value
    store.upsert_signals([("vehicle", VIN, path, 12.4, 3000)])
    view = store.asset("vehicle", VIN)
    assert view is not None
    values = {s["path"]: (s["value"], s["ts"]) for s in view["signals"]}
    assert values[path] == (12.4, 3000)
    assert (view["first_seen"], view["last_seen"]) == (1000, 3000)
    assert store.fleet_now_ms() == 3000
    assert store.asset("vehicle", "WCRAAAAAAAAAAAAA2") is None


def test_pagination_is_complete_and_stable_while_alerts_arrive(store: Store) -> None:
    for i in range(25):
        store.upsert_alert(alert(id=f"a-{i:02d}", asset_id=f"V{i}", first_seen=i, last_seen=i))
    seen: list[str] = []
    cursor = None
    page_no = 0
    while True:
        rows, cursor = store.list_alerts(limit=7, cursor=cursor)
        seen += [r["id"] for r in rows]
        page_no += 1
        # A newer alert arriving mid-pagination lands before the cursor, not in later pages.
        store.upsert_alert(alert(id=f"new-{page_no}", asset_id=f"N{page_no}",
                                 first_seen=100 + page_no, last_seen=100 + page_no))
        if cursor is None:
            break
    assert seen == [f"a-{i:02d}" for i in reversed(range(25))]


def test_bad_cursor_is_a_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.list_alerts(cursor="definitely-not-ours")


def test_upserts_compile_for_postgresql() -> None:
    """The dialect-specific upserts are valid PostgreSQL (a live server test comes later)."""
    from sqlalchemy.dialects.postgresql import insert

    from api.models import latest_signals

    stmt = insert(latest_signals).values(asset_kind="vehicle", asset_id=VIN, path="p",
                                         value=1, ts=1)
    stmt = stmt.on_conflict_do_update(index_elements=["asset_kind", "asset_id", "path"],
                                      set_={"ts": stmt.excluded.ts},
                                      where=stmt.excluded.ts >= latest_signals.c.ts)
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT (asset_kind, asset_id, path) DO UPDATE" in sql


def test_services_opening_a_fresh_database_together_do_not_collide(tmp_path: Path) -> None:
    """The worker and the API create the schema at the same moment on first start."""
    import threading

    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        barrier.wait()
        try:
            Store(url).ping()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
