"""The store on a real SQLite file and a real PostgreSQL: idempotent alert upserts, latest
values, pagination, the change log behind the SSE stream.

``alert()`` builds the record the worker sends on Kafka (its short names); ``row()`` the
same alert as the store keeps and the API shows it (names that say their clock)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from storage.alert_contract import COLUMN_OF, record_of
from storage.cursor import decode_cursor, encode_cursor
from storage.dialect import assets_upsert_statement, signals_upsert_statement
from storage.models import alerts
from storage.store import Store

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


def row(**over: Any) -> dict[str, Any]:
    """``alert(**over)`` as stored: the row the store returns, the API and webhooks show."""
    return {COLUMN_OF.get(k, k): v for k, v in alert(**over).items()} | {
        "root_cause_id": over.get("root_cause_id")}


class Tick:
    """A wall clock for the store that moves 1 ms per reading, from ``start``."""

    def __init__(self, start: int = 1_780_000_000_000) -> None:
        self.ms = start - 1

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests on both databases ownercare supports (PostgreSQL: a real server)."""
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}", clock=Tick())
    return Store(request.getfixturevalue("postgres").new_database(), clock=Tick())


def changes(store: Store) -> list[tuple[str, str, str]]:
    return [(e["alert_id"], e["change"], e["snapshot"]["status"])
            for e in store.alert_events_after(0, 1000)]


# ---------------------------------------------------------------------------- alerts


def test_alert_lifecycle_is_recorded_once_per_change(store: Store) -> None:
    assert store.upsert_alert(alert()) == "created"
    assert store.upsert_alert(alert()) is None  # redelivery
    assert store.upsert_alert(alert(last_seen=2000, severity="warning")) == "updated"
    assert store.upsert_alert(alert(last_seen=1500, severity="critical")) is None  # older
    assert store.upsert_alert(alert(last_seen=2000, severity="warning")) is None
    assert store.upsert_alert(alert(last_seen=3000, status="resolved")) == "resolved"
    assert store.upsert_alert(alert(last_seen=3000, status="resolved")) is None
    events = store.alert_events_after(0)
    assert [e["change"] for e in events] == ["created", "updated", "resolved"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert [e["at_event_ms"] for e in events] == [1000, 2000, 3000]
    assert events[1]["snapshot"] == row(last_seen=2000, severity="warning")
    stored = store.get_alert("a-1")
    assert stored is not None
    assert stored == row(last_seen=3000, status="resolved")
    assert record_of(stored) == {**alert(last_seen=3000, status="resolved"),
                                 "root_cause_id": None}  # the Kafka record it came from
    assert stored["evidence"] == {"slope_v_per_day": -0.05}
    assert store.last_event_id() == events[-1]["id"]
    assert store.alert_events_after(events[0]["id"]) == events[1:]


def test_replaying_the_whole_history_changes_nothing(store: Store) -> None:
    """At-least-once delivery: a restarted worker replays the alerts topic from the start."""
    history = [alert(), alert(last_seen=2000, severity="critical"),
               alert(last_seen=2000, status="resolved", severity="critical")]
    assert [store.upsert_alert(a) for a in history] == ["created", "updated", "resolved"]
    assert [store.upsert_alert(a) for a in history] == [None, None, None]
    # "open" and "resolved" share last_seen=2000: the replayed open must not reopen it.
    assert store.get_alert("a-1")["status"] == "resolved"  # type: ignore[index]
    assert len(store.alert_events_after(0)) == 3


def test_only_one_open_alert_per_asset_and_type(store: Store) -> None:
    store.upsert_alert(alert())
    assert store.upsert_alert(alert(id="a-2", first_seen=5000, last_seen=5000)) == "created"
    rows, _ = store.list_alerts(asset_id=VIN, status="open")
    assert [r["id"] for r in rows] == ["a-2"]
    assert store.get_alert("a-1")["status"] == "resolved"  # type: ignore[index]
    assert changes(store) == [("a-1", "created", "open"), ("a-1", "superseded", "resolved"),
                              ("a-2", "created", "open")]
    # Another asset or another type is independent.
    assert store.upsert_alert(alert(id="b", asset_id="WCRAAAAAAAAAAAAA2")) == "created"
    assert store.upsert_alert(alert(id="c", type="tyre_slow_leak")) == "created"
    assert {r["id"] for r in store.list_alerts(status="open")[0]} == {"a-2", "b", "c"}


def test_a_late_update_of_an_older_alert_does_not_reopen_it(store: Store) -> None:
    """Alerts are keyed by id, so one asset's alerts can arrive out of order."""
    store.upsert_alert(alert())
    store.upsert_alert(alert(id="a-2", first_seen=5000, last_seen=5000))
    # a-1 was updated (at 3000) before it was resolved; that update arrives only now.
    assert store.upsert_alert(alert(last_seen=3000, severity="critical")) == "updated"
    assert store.get_alert("a-1")["status"] == "resolved"  # type: ignore[index]
    assert store.get_alert("a-2")["status"] == "open"  # type: ignore[index]
    assert changes(store)[-1] == ("a-1", "superseded", "resolved")
    # An older alert first seen only now is stored, but never as a second open one.
    assert store.upsert_alert(alert(id="a-0", first_seen=10, last_seen=20)) == "created"
    assert [r["id"] for r in store.list_alerts(status="open")[0]] == ["a-2"]
    assert store.upsert_alert(alert(id="a-0", first_seen=10, last_seen=20)) is None


@pytest.mark.parametrize(("bad", "message"), [
    ({"severity": "apocalyptic"}, "'severity'='apocalyptic' is not one of"),
    ({"status": "closed"}, "status"),
    ({"asset_kind": "boat"}, "asset_kind"),
    ({"first_seen": "yesterday"}, "'first_seen' must be an integer"),
    ({"last_seen": 1000.0}, "'last_seen' must be an integer"),
    ({"predicted_failure_ts": True}, "'predicted_failure_ts' must be an integer"),
    ({"first_seen": -1, "last_seen": 1}, "not an epoch-ms"),
    ({"evidence": [1, 2]}, "'evidence' must be a JSON object"),
    ({"evidence": {"v": math.nan}}, "'evidence.v' is nan"),
    ({"evidence": {"codes": [{"x": math.inf}]}}, r"'evidence.codes\[0\].x' is inf"),
    ({"evidence": {"when": object()}}, "not a JSON value"),
    ({"evidence": {1: 2}}, "non-string key"),
    ({"last_seen": 10}, "before first_seen"),
    ({"id": "x" * 37}, "'id' is longer than 36"),
    ({"id": " "}, "'id' is empty"),
    ({"title": "a\x00b"}, "NUL"),
    ({"detector": None}, "'detector' must be a string, got NoneType"),
])
def test_invalid_alerts_are_refused_with_the_reason(store: Store, bad: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.upsert_alert(alert(**bad))
    assert store.alert_events_after(0) == []


def test_incomplete_or_non_object_alerts_are_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    incomplete = alert()
    del incomplete["title"], incomplete["evidence"]
    with pytest.raises(ValueError, match="missing field.*title, evidence"):
        store.upsert_alert(incomplete)
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        store.upsert_alert([1, 2])  # type: ignore[arg-type]


def test_nested_json_evidence_and_extra_keys_are_accepted(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    evidence = {"active_codes": [{"code": "P0A80", "severity": "critical"}], "amb": None,
                "ok": True, "n": 3}
    assert store.upsert_alert({**alert(evidence=evidence), "future_field": 1}) == "created"
    assert store.get_alert("a-1")["evidence"] == evidence  # type: ignore[index]


# ---------------------------------------------------------------------------- signals


def test_latest_signals_keep_the_newest_value(store: Store) -> None:
    path = "Vehicle.LowVoltageBattery.CurrentVoltage"
    cells = "Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages"
    assert store.upsert_signals([("vehicle", VIN, path, 12.6, 2000),
                                 ("vehicle", VIN, "Vehicle.Speed", 0.0, 2000)]) == 2
    store.upsert_signals([("vehicle", VIN, path, 11.0, 1000)])  # late, older value
    store.upsert_signals([("vehicle", VIN, path, 12.4, 3000),
                          ("vehicle", VIN, path, 12.5, 2500),  # older within the batch
                          ("vehicle", VIN, cells, [3.71, 3.7], 2900)])
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 99.0, 2000)])  # same ts: kept
    store.upsert_signals([])
    view = store.vehicle(VIN)
    assert view is not None
    values = {s["path"]: (s["value"], s["ts_event_ms"]) for s in view["signals"]}
    assert values == {path: (12.4, 3000), "Vehicle.Speed": (0.0, 2000),
                      cells: ([3.71, 3.7], 2900)}
    assert (view["first_seen_event_ms"], view["last_seen_event_ms"]) == (1000, 3000)
    assert store.fleet_now_ms() == 3000
    assert store.asset("vehicle", "WCRAAAAAAAAAAAAA2") is None
    assert store.asset("charger", VIN) is None


def test_signal_batches_of_thousands_are_fast(store: Store) -> None:
    rows = [("vehicle", f"V{i // 10:05d}", f"Vehicle.S{i % 10}", float(i), 10_000 + i)
            for i in range(5000)]
    started = time.monotonic()
    assert store.upsert_signals(rows) == 5000
    assert store.upsert_signals([(k, a, p, v, t + 1) for k, a, p, v, t in rows]) == 5000
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"two 5000-row batches took {elapsed:.1f}s"
    assert store.fleet_now_ms() == 10_000 + 4999 + 1
    view = store.asset("vehicle", "V00499")
    assert view is not None
    assert len(view["signals"]) == 10
    assert view["signals"][9] == {"path": "Vehicle.S9", "value": 4999.0, "ts_event_ms": 15_000}


def test_empty_store_has_no_fleet_time(store: Store) -> None:
    assert store.fleet_now_ms() is None
    assert store.last_event_id() == 0
    assert store.list_alerts() == ([], None)
    store.ping()


# ---------------------------------------------------------------------------- pages


def test_pagination_is_complete_and_stable_while_alerts_arrive(store: Store) -> None:
    for i in range(25):
        # Pairs share last_seen, so the id tie-break is exercised too.
        store.upsert_alert(alert(id=f"a-{i:02d}", asset_id=f"V{i}", first_seen=i // 2,
                                 last_seen=i // 2))
    expected = [r["id"] for r in store.list_alerts(limit=100)[0]]
    assert len(expected) == 25
    seen: list[str] = []
    cursor = None
    page_no = 0
    while True:
        rows, cursor = store.list_alerts(limit=7, cursor=cursor)
        assert len(rows) <= 7
        seen += [r["id"] for r in rows]
        page_no += 1
        # A newer alert arriving mid-pagination lands before the cursor, not in later pages.
        store.upsert_alert(alert(id=f"new-{page_no}", asset_id=f"N{page_no}",
                                 first_seen=100 + page_no, last_seen=100 + page_no))
        if cursor is None:
            break
    assert page_no == 4
    assert seen == expected


def test_filters_combine_with_pagination(store: Store) -> None:
    for i in range(12):
        store.upsert_alert(alert(id=f"a-{i:02d}", asset_id=VIN if i % 2 else "OTHER",
                                 type=f"t{i}", severity="critical" if i % 3 == 0 else "info",
                                 first_seen=i, last_seen=i))
    seen, cursor = [], None
    while True:
        rows, cursor = store.list_alerts(asset_id=VIN, limit=2, cursor=cursor)
        seen += [r["id"] for r in rows]
        if cursor is None:
            break
    assert seen == ["a-11", "a-09", "a-07", "a-05", "a-03", "a-01"]
    crit = store.list_alerts(asset_id=VIN, severity="critical")[0]
    assert [r["id"] for r in crit] == ["a-09", "a-03"]
    assert store.list_alerts(alert_type="t4")[0][0]["id"] == "a-04"
    assert store.list_alerts(status="resolved") == ([], None)


def test_cursors_are_opaque_and_checked(store: Store) -> None:
    sort = "-last_seen_event_ms"
    assert decode_cursor(encode_cursor((123, "a-1"), sort), sort) == (123, "a-1")
    for bad in ("definitely-not-ours", encode_cursor((1, "x"), sort)[:-3], "WzEsMl0",  # [1,2]
                encode_cursor((1, "x"), "first_seen_event_ms"),  # another sort's
                encode_cursor(("1", "x"), sort), encode_cursor((1, "x\x00"), sort),
                encode_cursor((2**63, "x"), sort), encode_cursor((True, "x"), sort)):
        with pytest.raises(ValueError, match="cursor"):
            store.list_alerts(cursor=bad)


# ---------------------------------------------------------------------------- concurrency


def test_event_ids_follow_commit_order_under_concurrent_writers(
        store: Store, tmp_path: Path) -> None:
    """A poller reading "events after N" (the SSE stream) misses nothing while several
    writers (other connections, as the worker's sinks are) commit at the same time."""
    other = Store(store.url)  # a second engine: another process's connections
    stop = threading.Event()
    polled: list[int] = []
    errors: list[BaseException] = []

    def poll() -> None:
        position = 0
        while True:
            finished = stop.is_set()
            for e in other.alert_events_after(position, 1000):
                polled.append(e["id"])
                position = e["id"]
            if finished:
                return
            time.sleep(0.005)  # the stream polls every 0.5 s; a busy loop would hog the GIL

    def write(worker: int) -> None:
        try:
            for i in range(30):
                target = store if i % 2 else other
                target.upsert_alert(alert(id=f"w{worker}-{i}", asset_id=f"V{worker}-{i}"))
                target.upsert_signals([("vehicle", f"V{worker}", "Vehicle.Speed", i, i)])
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    poller.join()
    assert errors == []
    all_ids = [e["id"] for e in store.alert_events_after(0, 1000)]
    assert len(all_ids) == 90
    assert polled == all_ids  # nothing skipped, nothing twice, in order


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_readers_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    writer, reader = Store(url), Store(url)
    writer.upsert_alert(alert())
    with writer.engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the worker holds the write lock ...
        conn.exec_driver_sql("UPDATE alerts SET title = 'x'")
        started = time.monotonic()
        rows, _ = reader.list_alerts()  # ... and the API still reads, at once
        assert time.monotonic() - started < 1
        assert rows[0]["title"] == "12 V battery weakening"
        conn.rollback()


def test_services_opening_a_fresh_database_together_do_not_collide(tmp_path: Path) -> None:
    """The worker and the API create the schema at the same moment on first start."""
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


def test_services_opening_a_fresh_postgres_database_together_do_not_collide(
        postgres: Any) -> None:
    url = postgres.new_database().replace("postgresql+psycopg://", "postgresql://")
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def open_store() -> None:
        barrier.wait()
        try:
            Store(url).ping()  # plain postgresql:// means psycopg (3), the driver we ship
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---------------------------------------------------------------------------- dialects


def test_statements_compile_for_postgresql_and_sqlite() -> None:
    """The dialect-specific SQL the store runs, as each database will see it."""
    pg = postgresql.dialect()
    sql = str(signals_upsert_statement("postgresql").compile(dialect=pg))
    assert "ON CONFLICT (asset_kind, asset_id, path) DO UPDATE SET value = excluded.value" \
        in sql
    assert "WHERE excluded.ts_event_ms > latest_signals.ts_event_ms" in sql
    sql = str(assets_upsert_statement("postgresql").compile(dialect=pg))
    assert "least(assets.first_seen_event_ms, excluded.first_seen_event_ms)" in sql
    assert "greatest(assets.last_seen_event_ms, excluded.last_seen_event_ms)" in sql
    sql = str(assets_upsert_statement("sqlite").compile(dialect=sqlite.dialect()))
    assert "min(assets.first_seen_event_ms, excluded.first_seen_event_ms)" in sql
    index = next(i for i in alerts.indexes if i.name == "ux_alerts_one_open")
    for dialect in (pg, sqlite.dialect()):
        ddl = str(CreateIndex(index).compile(dialect=dialect))
        assert ddl.startswith("CREATE UNIQUE INDEX ux_alerts_one_open ON alerts")
        assert ddl.endswith("WHERE status = 'open'")
    with pytest.raises(ValueError, match="unsupported database"):
        signals_upsert_statement("mysql")
