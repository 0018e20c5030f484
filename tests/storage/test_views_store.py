"""The view queries and the worker's view writes on a real SQLite file and a real PostgreSQL:
daily indicator merges, charging sessions, vehicle/charger lists, fleet overview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.daily import DailyIndicators, DayAggregate
from ingest.contract import TIRE_PRESSURE_SIGNALS
from storage import views
from storage.store import Store
from tests.diagnostics.test_charging import Charger, normal_session
from tests.storage.test_store import alert
from vocab.eventtime import DAY_MS

VIN = "WCRAAAAAAAAAAAAA1"
VIN2 = "WCRBBBBBBBBBBBBB2"
VIN3 = "XYZAAAAAAAAAAAAA3"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MODEL = "Vehicle.VehicleIdentification.Model"
FL = TIRE_PRESSURE_SIGNALS[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """As in test_store: the same tests on SQLite and a real PostgreSQL."""
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Store(request.getfixturevalue("postgres").new_database())


def tele(ts: int, vin: str = VIN, **signals: Any) -> dict[str, Any]:
    return {"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": ts,
            "data": {"signals": signals}}


def stored_daily(store: Store) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    from sqlalchemy import select

    from storage.models import daily_indicators as d
    with store.engine.connect() as conn:
        return {(r.asset_id, r.day, r.indicator): (r.n, r.min, r.max, r.sum, r.last,
                                                   r.last_event_ms)
                for r in conn.execute(select(d))}


# ---------------------------------------------------------------------------- daily indicators


def test_daily_upsert_merges_flushes_like_day_aggregate(store: Store) -> None:
    daily = DailyIndicators()
    daily.add([tele(T0 + 1, **{FL: 250.0}), tele(T0 + 2, **{FL: 240.0})])
    # One row for the named indicator, one for the signal's own trend under its path.
    assert views.upsert_daily_indicators(store, daily.drain()) == 2
    daily.add([tele(T0 + 4, **{FL: 260.0}), tele(T0 + 3, **{FL: 230.0})])
    views.upsert_daily_indicators(store, daily.drain())
    daily.add([tele(T0 + 0, **{FL: 245.0})])  # late: older than the stored last
    views.upsert_daily_indicators(store, daily.drain())
    for indicator in ("tire_pressure_row1_left_kpa", FL):
        n, lo, hi, total, last, last_ts = stored_daily(store)[(VIN, "2026-01-01", indicator)]
        assert (n, lo, hi, last, last_ts) == (5, 230.0, 260.0, 260.0, T0 + 4)
        assert total == pytest.approx(1225.0)
    assert views.upsert_daily_indicators(store, []) == 0


@given(st.lists(st.tuples(st.integers(0, 2 * DAY_MS), st.floats(100, 400)), min_size=1,
                max_size=25),
       st.sets(st.integers(1, 25), max_size=4))
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_flush_split_stores_the_same_min_max_last(store: Store, values: list[tuple[int,
                                                      float]], cuts: set[int]) -> None:
    """The database merge is the same as merging in memory: whatever the flush boundaries,
    the stored min/max/last equal the aggregate of all readings at once."""
    vin = f"WCR{abs(hash((tuple(values), tuple(sorted(cuts))))) % 10**14:014d}"
    records = [tele(T0 + ts, vin, **{FL: v}) for ts, v in values]
    whole = DailyIndicators()
    whole.add(records)
    expected = {(r[1], r[2], r[3]): DayAggregate(*r[4:]) for r in whole.drain()}
    split = DailyIndicators()
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(records)), len(records)]:
        split.add(records[start:cut])
        views.upsert_daily_indicators(store, split.drain())
        start = cut
    got = {k: v for k, v in stored_daily(store).items() if k[0] == vin}
    assert got.keys() == expected.keys()
    for key, agg in expected.items():
        n, lo, hi, total, last, last_ts = got[key]
        assert (n, lo, hi, last_ts) == (agg.n, agg.min, agg.max, agg.last_ts)
        assert total == pytest.approx(agg.sum)
        if sum(1 for ts, _ in values if T0 + ts == last_ts) == 1:
            assert last == agg.last


def test_trends_cover_the_requested_days_up_to_the_last_report(store: Store) -> None:
    daily = DailyIndicators()
    daily.add([tele(T0 + i * DAY_MS, **{FL: 200.0 + i, FL.replace("Left", "Right"): 1.0})
               for i in range(5)])
    daily.add([tele(T0 + 4 * DAY_MS + 10, **{FL: 210.0})])
    views.upsert_daily_indicators(store, daily.drain())
    trends = views.vehicle_trends(store, VIN, T0 + 4 * DAY_MS + 10, days=2)
    # The named indicators, and every numeric signal under its own VSS path.
    assert set(trends) == {"tire_pressure_row1_left_kpa", "tire_pressure_row1_right_kpa",
                           FL, FL.replace("Left", "Right")}
    assert trends[FL] == trends["tire_pressure_row1_left_kpa"]
    points = trends["tire_pressure_row1_left_kpa"]
    assert [p["day"] for p in points] == ["2026-01-04", "2026-01-05"]
    assert points[1] == {"day": "2026-01-05", "n": 2, "min": 204.0, "max": 210.0,
                         "mean": pytest.approx(207.0), "last": 210.0}
    assert views.vehicle_trends(store, VIN2, T0, days=30) == {}


# ---------------------------------------------------------------------------- sessions


def sessions(store: Store) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from storage.models import charging_sessions
    with store.engine.connect() as conn:
        return {r["session_id"]: dict(r) for r in conn.execute(
            select(charging_sessions)).mappings()}


def test_sessions_persist_across_flushes_and_redelivery_changes_nothing(store: Store) -> None:
    c = Charger()
    records = normal_session(c, 1000) + [c.status(2000, "Preparing"),
                                        c.meter(2010, 50.0, 9000.0, tx=8),
                                        c.status(2020, "Faulted", "GroundFailure")]
    assert views.track_charging_sessions(store, records[:3]) == 1  # open, mid-session
    assert sessions(store)["CP-0001:1:1000"]["end_event_ms"] is None
    assert views.track_charging_sessions(store, records[3:]) == 2
    first = sessions(store)
    assert views.track_charging_sessions(store, records[2:]) == 0  # a replayed flush
    assert sessions(store) == first
    done, failed = first["CP-0001:1:1000"], first["CP-0001:1:2000"]
    assert (done["end_status"], done["abnormal"], done["energy_wh"]) == ("Finishing", False,
                                                                         3000.0)
    assert (failed["end_status"], failed["error_code"], failed["abnormal"],
            failed["transaction_id"]) == ("Faulted", "GroundFailure", True, 8)
    assert views.track_charging_sessions(store, [tele(T0, **{FL: 1.0})]) == 0


def seed_fleet(store: Store) -> None:
    store.upsert_signals([
        ("vehicle", VIN, MODEL, "Model Y", T0), ("vehicle", VIN2, MODEL, "Model 3", T0 + 5),
        ("vehicle", VIN3, FL, 250.0, T0 + 7),
        ("charger", "CP-0001", "OCPP.Connector1.Status", "Faulted", T0 + 3),
        ("charger", "CP-0001", "OCPP.Connector1.ErrorCode", "GroundFailure", T0 + 3),
        ("charger", "CP-0002", "OCPP.Connector1.Status", "Available", T0 + 4),
        ("charger", "CP-0002", "OCPP.Connector2.Status", "Charging", T0 + 4),
    ])
    store.upsert_alert(alert(id="a1", asset_id=VIN, severity="warning"))
    store.upsert_alert(alert(id="a2", asset_id=VIN, type="tyre", severity="critical"))
    store.upsert_alert(alert(id="a3", asset_id=VIN2, severity="info", status="resolved"))
    store.upsert_alert(alert(id="c1", asset_kind="charger", asset_id="CP-0002",
                             type="charger_faulted", severity="warning"))


def test_vehicle_list_searches_pages_and_summarises_health(store: Store) -> None:
    seed_fleet(store)
    items, cursor = views.list_vehicles(store, limit=2)
    assert [i["vin"] for i in items] == [VIN, VIN2]
    assert cursor is not None
    assert items[0] == {"vin": VIN, "model": "Model Y", "first_seen_event_ms": T0,
                        "last_seen_event_ms": T0, "open_alerts": 2,
                        "worst_severity": "critical"}
    assert items[1]["open_alerts"] == 0
    assert items[1]["worst_severity"] is None
    rest, end = views.list_vehicles(store, limit=2, cursor=cursor)
    assert [i["vin"] for i in rest] == [VIN3]
    assert end is None
    assert rest[0]["model"] is None
    assert [i["vin"] for i in views.list_vehicles(store, vin_prefix="WCR")[0]] == [VIN, VIN2]
    assert [i["vin"] for i in views.list_vehicles(store, model="Model 3")[0]] == [VIN2]
    assert views.list_vehicles(store, model="model 3")[0] == []
    with pytest.raises(ValueError, match="cursor"):
        views.list_vehicles(store, cursor="not-a-cursor")


def test_charger_list_and_detail(store: Store) -> None:
    seed_fleet(store)
    items, cursor = views.list_chargers(store)
    assert cursor is None
    assert items[0]["connectors"] == [{"connector": 1, "status": "Faulted",
                                       "error_code": "GroundFailure", "ts_event_ms": T0 + 3}]
    assert [c["status"] for c in items[1]["connectors"]] == ["Available", "Charging"]
    assert (items[1]["open_alerts"], items[1]["worst_severity"]) == (1, "warning")
    page, cursor = views.list_chargers(store, limit=1)
    assert [c["charger_id"] for c in page] == ["CP-0001"]
    assert [c["charger_id"] for c in views.list_chargers(store, cursor=cursor)[0]] == [
        "CP-0002"]
    detail = views.charger_detail(store, "CP-0002")
    assert detail is not None
    assert [a["id"] for a in detail["alerts"]] == ["c1"]
    assert views.charger_detail(store, "CP-9999") is None


def test_attributed_fault_share(store: Store) -> None:
    """Failures of cars that charged normally elsewhere within 7 days count against the
    charger; a car that fails everywhere, or an unknown car, does not."""
    bad, good, other = Charger("CP-0001"), Charger("CP-0002"), Charger("CP-0003")
    day = DAY_MS
    fail = [bad.status(0, "Preparing"), bad.meter(1, 0.0, 1.0, tx=1, vin=VIN),
            bad.status(2, "Faulted", "GroundFailure"),  # VIN: fine elsewhere 3 days later
            bad.status(10, "Preparing"), bad.meter(11, 0.0, 1.0, tx=2, vin=VIN2),
            bad.status(12, "Faulted", "GroundFailure"),  # VIN2: fails elsewhere too
            bad.status(20, "Preparing"), bad.meter(21, 0.0, 1.0, tx=3, vin=None),
            bad.status(22, "Faulted", "GroundFailure"),  # unknown car: not judged
            bad.status(30 * day, "Preparing"), bad.meter(30 * day + 1, 0.0, 1.0, tx=4,
                                                          vin=VIN3),
            bad.status(30 * day + 2, "Faulted", "GroundFailure")]  # VIN3: fine, 8 days later
    views.track_charging_sessions(store, fail)
    views.track_charging_sessions(store, normal_session(good, 3 * day, tx=5, vin=VIN)
                                  + normal_session(good, 38 * day + 100, tx=6, vin=VIN3))
    views.track_charging_sessions(store, [
        other.status(day, "Preparing"), other.meter(day + 1, 0.0, 1.0, tx=7, vin=VIN2),
        other.status(day + 2, "Faulted", "OverVoltage")])
    detail = views.charger_detail(store, "CP-0001")
    assert detail is None  # never reported a latest value: not an asset yet
    store.upsert_signals([("charger", "CP-0001", "OCPP.Connector1.Status", "Faulted", 1)])
    detail = views.charger_detail(store, "CP-0001")
    assert detail is not None
    share = detail["attributed_fault_share"]
    assert {k: share[k] for k in ("abnormal_sessions", "judged_sessions",
                                  "attributed_sessions", "share")} == {
        "abnormal_sessions": 4, "judged_sessions": 3, "attributed_sessions": 1,
        "share": pytest.approx(1 / 3)}
    assert len(detail["faults"]) == 4
    assert all(f["abnormal"] for f in detail["faults"])
    assert detail["recent_sessions"][0]["start_event_ms"] == 30 * day


def test_the_start_up_time_is_stored_and_listed(store: Store) -> None:
    c = Charger("CP-0001")
    views.track_charging_sessions(store, normal_session(c, 5 * DAY_MS, tx=1)[:3])
    views.track_charging_sessions(store, normal_session(c, 5 * DAY_MS, tx=1)[3:])
    store.upsert_signals([("charger", "CP-0001", "OCPP.Connector1.Status", "Available", 1)])
    detail = views.charger_detail(store, "CP-0001")
    assert detail is not None
    (session,) = detail["recent_sessions"]
    assert (session["startup_ms"], session["end_status"]) == (10, "Finishing")


def test_fleet_overview(store: Store) -> None:
    seed_fleet(store)
    c = Charger("CP-0001")
    views.track_charging_sessions(store, [c.status(T0, "Charging"),
                                          c.status(T0 + 1, "Faulted", "GroundFailure")])
    views.track_charging_sessions(store, normal_session(Charger("CP-0003"), T0))
    overview = views.fleet_overview(store)
    assert (overview["vehicles"], overview["chargers"], overview["open_alerts"]) == (3, 2, 3)
    assert overview["open_alerts_by_type"] == [
        {"type": "charger_faulted", "severity": "warning", "count": 1},
        {"type": "tyre", "severity": "critical", "count": 1},
        {"type": "weak_12v_battery", "severity": "warning", "count": 1}]
    assert overview["top_faulty_chargers"] == [
        {"charger_id": "CP-0001", "sessions": 1, "abnormal_sessions": 1, "open_alerts": 0},
        {"charger_id": "CP-0002", "sessions": 0, "abnormal_sessions": 0, "open_alerts": 1}]
    assert overview["fleet_now_event_ms"] == T0 + 7


# ---------------------------------------------------------------------------- the worker's flush


def test_the_view_writers_batch_writes_indicators_and_sessions(store: Store) -> None:
    """The view writer's merge and write (no brokers): vehicle batches give latest values,
    daily indicators and OTA reports; charger batches latest values and charging sessions."""
    from ingest import topics
    from ingest.contract import encode_batch
    from worker.view_writer import ViewBatch

    daily = DailyIndicators()
    batch = ViewBatch(daily)
    batch.add(topics.VEHICLES, encode_batch([tele(T0 + 1, **{FL: 250.0})]))
    batch.add(topics.VEHICLES, encode_batch([tele(T0 + 2, **{FL: 240.0})]))
    batch.add(topics.VEHICLES, b"not a batch")  # logged and skipped, the rest is written
    batch.write(store)
    assert stored_daily(store)[(VIN, "2026-01-01", "tire_pressure_row1_left_kpa")][:3] == (
        2, 240.0, 250.0)
    signals = {s["path"]: s for s in store.vehicle(VIN)["signals"]}  # type: ignore[index]
    assert (signals[FL]["value"], signals[FL]["ts_event_ms"]) == (240.0, T0 + 2)
    batch = ViewBatch(daily)
    batch.add(topics.CHARGERS, encode_batch(normal_session(Charger(), T0)))
    batch.write(store)
    (session,) = sessions(store).values()
    assert (session["end_status"], session["energy_wh"]) == ("Finishing", 3000.0)
    assert views.charger_detail(store, "CP-0001") is not None
