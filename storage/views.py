"""Storage behind the vehicle, charger and fleet views: the worker's writes of daily health
indicators and charging sessions, and the API's read queries.

Functions over a ``Store`` (its engine and serialised write transactions) rather than more
``Store`` methods, so this part stays in one module. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import base64
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Text, and_, case, cast, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from diagnostics import charging
from diagnostics.daily import IndicatorRow, utc_day
from storage.dialect import insert_for
from storage.models import alerts, assets, charging_sessions, daily_indicators, latest_signals
from storage.store import Store
from vocab.eventtime import DAY_MS

log = logging.getLogger(__name__)

MODEL_SIGNAL = "Vehicle.VehicleIdentification.Model"
ROWS_PER_TRANSACTION = 5000  # as Store.upsert_signals: short write transactions
IN_CHUNK = 500  # ids per IN (...) list
ATTRIBUTION_WINDOW_MS = 7 * DAY_MS
_SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
_RANK_SEVERITY = {v: k for k, v in _SEVERITY_RANK.items()}
_CONNECTOR_PREFIX = "OCPP.Connector"
# diagnostics.charging.Session's times -> the charging_sessions columns (which say their
# clock: event time, from the chargers' messages).
SESSION_COLUMN_OF = {"start_ts": "start_event_ms", "end_ts": "end_event_ms",
                     "last_ts": "last_event_ms"}
_SESSION_FIELD_OF = {column: field for field, column in SESSION_COLUMN_OF.items()}

ATTRIBUTION_RULE = (
    "Of this charger's sessions that ended abnormally (Faulted/Unavailable, or an error code "
    "other than NoError during the session) and whose car is known (VIN), the share whose car "
    "completed a normal session at another charger within 7 days before or after the failed "
    "session's start: the car charges fine elsewhere, so the failure is attributed to this "
    "charger. Abnormal sessions without a VIN cannot be judged and are left out of the share.")


# ---------------------------------------------------------------------------- cursors


def encode_key_cursor(key: str) -> str:
    """The opaque keyset cursor of the id-ordered lists (vehicles, chargers)."""
    return base64.urlsafe_b64encode(orjson.dumps([key])).decode().rstrip("=")


def decode_key_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4))
        (key,) = orjson.loads(raw)
        # Asset ids are short and printable; PostgreSQL refuses NUL in a text parameter.
        if not isinstance(key, str) or len(key) > 64 or "\x00" in key:
            raise TypeError
        return key
    except (ValueError, TypeError):
        raise ValueError("cursor is not one this API returned") from None


# ---------------------------------------------------------------------------- worker writes


def daily_indicators_upsert_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT that merges a flush's aggregate into the stored one
    (the SQL form of ``DayAggregate.merge``)."""
    ins = insert_for(dialect)(daily_indicators)
    t, new = daily_indicators.c, ins.excluded
    lo, hi = (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)
    stmt: Insert = ins.on_conflict_do_update(
        index_elements=["asset_kind", "asset_id", "day", "indicator"],
        set_={"n": t.n + new.n, "sum": t.sum + new.sum, "min": lo(t.min, new.min),
              "max": hi(t.max, new.max),
              "last": case((new.last_event_ms >= t.last_event_ms, new.last), else_=t.last),
              "last_event_ms": hi(t.last_event_ms, new.last_event_ms)},
    )
    return stmt


_DAILY_SQL: weakref.WeakKeyDictionary[Store, tuple[str, tuple[str, ...] | None]] = (
    weakref.WeakKeyDictionary())


def _daily_sql(store: Store) -> tuple[str, tuple[str, ...] | None]:
    """The upsert as driver SQL, and the parameter names when the driver wants a dict."""
    cached = _DAILY_SQL.get(store)
    if cached is not None:
        return cached
    columns = ("asset_kind", "asset_id", "day", "indicator", "n", "min", "max", "sum", "last",
               "last_event_ms")
    compiled = daily_indicators_upsert_statement(store.dialect).compile(
        dialect=store.engine.dialect, column_keys=list(columns))
    if compiled.positional:
        assert tuple(compiled.positiontup or ()) == columns
        cached = (compiled.string, None)
    else:
        cached = (compiled.string, columns)
    _DAILY_SQL[store] = cached
    return cached


def upsert_daily_indicators(store: Store, rows: Sequence[IndicatorRow]) -> int:
    """Merge one flush's aggregates (``DailyIndicators.drain``) into ``daily_indicators``.

    One executemany per ``ROWS_PER_TRANSACTION`` rows, straight to the driver like the
    latest-values write (it runs in the worker's hot path). Rows are sorted so concurrent
    writers lock them in the same order. Returns the number of rows offered.
    """
    if not rows:
        return 0
    sql, keys = _daily_sql(store)
    ordered = sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3]))
    params: list[Any] = (ordered if keys is None
                         else [dict(zip(keys, row, strict=True)) for row in ordered])
    for start in range(0, len(params), ROWS_PER_TRANSACTION):
        with store.write() as conn:  # noqa: SLF001 - the store's own write discipline
            conn.exec_driver_sql(sql, params[start:start + ROWS_PER_TRANSACTION])
    return len(ordered)


def track_charging_sessions(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """Apply a flush's charger records to ``charging_sessions``; return sessions written.

    Each connector's newest session is read and the changed ones written in one serialised
    transaction, so the tracking state is the table itself (see ``diagnostics.charging``).
    """
    batch = [r for r in records if r["kind"] in ("charger_status", "charger_meter")]
    if not batch:
        return 0
    chargers = sorted({r["id"] for r in batch})
    with store.write() as conn:  # noqa: SLF001
        latest = _latest_sessions(conn, chargers)
        changed = charging.track(latest, batch)
        if changed:
            ins = insert_for(store.dialect)(charging_sessions)
            keep = {"session_id", "charger_id", "connector", "start_event_ms"}
            stmt = ins.on_conflict_do_update(
                index_elements=["session_id"],
                set_={c.name: ins.excluded[c.name] for c in charging_sessions.c
                      if c.name not in keep})
            conn.execute(stmt, [{SESSION_COLUMN_OF.get(k, k): v for k, v in s.row().items()}
                                for s in sorted(changed, key=lambda s: s.session_id)])
    return len(changed)


def _latest_sessions(conn: Connection, chargers: Sequence[str]
                     ) -> dict[charging.ConnectorKey, charging.Session]:
    s = charging_sessions.c
    out: dict[charging.ConnectorKey, charging.Session] = {}
    for start in range(0, len(chargers), IN_CHUNK):
        ids = chargers[start:start + IN_CHUNK]
        newest = (select(s.charger_id, s.connector,
                         func.max(s.start_event_ms).label("start_event_ms"))
                  .where(s.charger_id.in_(ids)).group_by(s.charger_id, s.connector).subquery())
        query = select(charging_sessions).join(newest, and_(
            s.charger_id == newest.c.charger_id, s.connector == newest.c.connector,
            s.start_event_ms == newest.c.start_event_ms))
        for row in conn.execute(query).mappings():
            session = charging.Session(**{_SESSION_FIELD_OF.get(k, k): v
                                          for k, v in row.items()})
            out[(session.charger_id, session.connector)] = session
    return out


# ---------------------------------------------------------------------------- shared reads


def _alert_summary(conn: Connection, kind: str, ids: Sequence[str]
                   ) -> dict[str, tuple[int, str | None]]:
    """asset id -> (open alert count, worst open severity)."""
    if not ids:
        return {}
    rank = case(*((alerts.c.severity == name, value) for name, value in _SEVERITY_RANK.items()),
                else_=0)
    query = (select(alerts.c.asset_id, func.count(), func.max(rank))
             .where(alerts.c.asset_kind == kind, alerts.c.status == "open",
                    alerts.c.asset_id.in_(ids))
             .group_by(alerts.c.asset_id))
    return {a: (int(n), _RANK_SEVERITY.get(int(w or 0))) for a, n, w in conn.execute(query)}


def _page(rows: list[dict[str, Any]], limit: int, key: str) -> tuple[list[dict[str, Any]],
                                                                     str | None]:
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_key_cursor(rows[-1][key])
    return rows, None


# ---------------------------------------------------------------------------- vehicles


def list_vehicles(store: Store, *, vin_prefix: str | None = None, model: str | None = None,
                  limit: int = 50, cursor: str | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """Vehicles by VIN (ascending), with model and health summary, one keyset page.

    ``model`` matches the latest ``Vehicle.VehicleIdentification.Model`` exactly. Raises
    ValueError for a cursor this API did not issue.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    model_row = latest_signals.alias("model")
    join_on = and_(model_row.c.asset_kind == "vehicle", model_row.c.asset_id == assets.c.asset_id,
                   model_row.c.path == MODEL_SIGNAL)
    query = (select(assets.c.asset_id, assets.c.first_seen_event_ms,
                    assets.c.last_seen_event_ms,
                    model_row.c.value.label("model"))
             .select_from(assets.outerjoin(model_row, join_on))
             .where(assets.c.asset_kind == "vehicle"))
    if vin_prefix:
        # The route allows only VIN characters, so the prefix holds no LIKE wildcards.
        query = query.where(assets.c.asset_id.like(f"{vin_prefix}%"))
    if model is not None:
        query = query.where(cast(model_row.c.value, Text) == orjson.dumps(model).decode())
    if cursor:
        query = query.where(assets.c.asset_id > decode_key_cursor(cursor))
    query = query.order_by(assets.c.asset_id).limit(limit + 1)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        rows, next_cursor = _page(rows, limit, "asset_id")
        summary = _alert_summary(conn, "vehicle", [r["asset_id"] for r in rows])
    items = []
    for r in rows:
        count, worst = summary.get(r["asset_id"], (0, None))
        items.append({"vin": r["asset_id"], "model": r["model"] if isinstance(r["model"], str)
                      else None, "first_seen_event_ms": r["first_seen_event_ms"],
                      "last_seen_event_ms": r["last_seen_event_ms"],
                      "open_alerts": count, "worst_severity": worst})
    return items, next_cursor


def vehicle_trends(store: Store, vin: str, until_event_ms: int, days: int
                   ) -> dict[str, list[dict[str, Any]]]:
    """Per indicator, the daily points {day, n, min, max, mean, last} of the ``days`` UTC days
    ending on the day of ``until_event_ms`` (the vehicle's last report), oldest first."""
    since = utc_day(until_event_ms - (days - 1) * DAY_MS)
    until = utc_day(until_event_ms)
    d = daily_indicators.c
    query = (select(d.indicator, d.day, d.n, d.min, d.max, d.sum, d.last)
             .where(d.asset_kind == "vehicle", d.asset_id == vin, d.day >= since, d.day <= until)
             .order_by(d.indicator, d.day))
    trends: dict[str, list[dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for indicator, day, n, lo, hi, total, last in conn.execute(query):
            trends.setdefault(indicator, []).append(
                {"day": day, "n": int(n), "min": lo, "max": hi, "mean": total / n, "last": last})
    return trends


# ---------------------------------------------------------------------------- chargers


def _connectors(signals: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Latest status and error code per connector from ``OCPP.Connector<n>.Status`` etc."""
    found: dict[int, dict[str, Any]] = {}
    for s in signals:
        path = s["path"]
        if not path.startswith(_CONNECTOR_PREFIX):
            continue
        number, _, name = path[len(_CONNECTOR_PREFIX):].partition(".")
        if not number.isdigit() or name not in ("Status", "ErrorCode"):
            continue
        entry = found.setdefault(int(number), {"connector": int(number), "status": None,
                                               "error_code": None, "ts_event_ms": None})
        entry["status" if name == "Status" else "error_code"] = s["value"]
        if name == "Status":
            entry["ts_event_ms"] = s["ts_event_ms"]
    return [found[k] for k in sorted(found)]


def list_chargers(store: Store, *, limit: int = 50, cursor: str | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """Chargers by id (ascending) with connector status, last report and open alerts."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = select(assets.c.asset_id, assets.c.first_seen_event_ms,
                   assets.c.last_seen_event_ms).where(assets.c.asset_kind == "charger")
    if cursor:
        query = query.where(assets.c.asset_id > decode_key_cursor(cursor))
    query = query.order_by(assets.c.asset_id).limit(limit + 1)
    with store.engine.connect() as conn:
        rows, next_cursor = _page([dict(r) for r in conn.execute(query).mappings()], limit,
                                  "asset_id")
        ids = [r["asset_id"] for r in rows]
        summary = _alert_summary(conn, "charger", ids)
        signals: dict[str, list[dict[str, Any]]] = {}
        if ids:
            ls = latest_signals.c
            for sig in conn.execute(select(ls.asset_id, ls.path, ls.value, ls.ts_event_ms).where(
                    ls.asset_kind == "charger", ls.asset_id.in_(ids),
                    ls.path.like(f"{_CONNECTOR_PREFIX}%"))).mappings():
                signals.setdefault(sig["asset_id"], []).append(dict(sig))
    items = []
    for r in rows:
        count, worst = summary.get(r["asset_id"], (0, None))
        items.append({"charger_id": r["asset_id"],
                      "first_seen_event_ms": r["first_seen_event_ms"],
                      "last_seen_event_ms": r["last_seen_event_ms"],
                      "connectors": _connectors(signals.get(r["asset_id"], [])),
                      "open_alerts": count, "worst_severity": worst})
    return items, next_cursor


def _session_public(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in ("session_id", "charger_id", "connector", "transaction_id", "vin",
                                "start_event_ms", "end_event_ms", "end_status", "error_code",
                                "abnormal",
                                "energy_wh", "max_power_w", "offered_w", "startup_ms")}


def charger_detail(store: Store, charger_id: str, *, sessions: int = 20, alert_limit: int = 50
                   ) -> dict[str, Any] | None:
    """Latest status, recent sessions, abnormal sessions, alerts and the attributed fault
    share of one charger, or None when it never reported."""
    asset = store.asset("charger", charger_id)
    if asset is None:
        return None
    s = charging_sessions.c
    with store.engine.connect() as conn:
        recent = [_session_public(r) for r in conn.execute(
            select(charging_sessions).where(s.charger_id == charger_id)
            .order_by(s.start_event_ms.desc(), s.session_id.desc()).limit(sessions)).mappings()]
        faults = [_session_public(r) for r in conn.execute(
            select(charging_sessions).where(s.charger_id == charger_id, s.abnormal.is_(True))
            .order_by(s.start_event_ms.desc(), s.session_id.desc()).limit(sessions)).mappings()]
        recent_alerts = [dict(r) for r in conn.execute(
            select(alerts).where(alerts.c.asset_kind == "charger",
                                 alerts.c.asset_id == charger_id)
            .order_by(alerts.c.last_seen_event_ms.desc(), alerts.c.id.desc()).limit(alert_limit))
            .mappings()]
        share = _attributed_fault_share(conn, charger_id)
    return {"charger_id": charger_id, "first_seen_event_ms": asset["first_seen_event_ms"],
            "last_seen_event_ms": asset["last_seen_event_ms"],
            "connectors": _connectors(asset["signals"]),
            "signals": asset["signals"], "open_alerts": asset["open_alerts"],
            "alerts": recent_alerts, "recent_sessions": recent, "faults": faults,
            "attributed_fault_share": share}


def _attributed_fault_share(conn: Connection, charger_id: str) -> dict[str, Any]:
    """See ``ATTRIBUTION_RULE``."""
    s = charging_sessions.alias("s")
    other = charging_sessions.alias("other")
    normal_elsewhere = exists().where(
        other.c.vin == s.c.vin, other.c.charger_id != s.c.charger_id,
        other.c.abnormal.is_(False), other.c.end_event_ms.is_not(None),
        other.c.start_event_ms >= s.c.start_event_ms - ATTRIBUTION_WINDOW_MS,
        other.c.start_event_ms <= s.c.start_event_ms + ATTRIBUTION_WINDOW_MS)
    query = select(
        func.count(),
        func.count(s.c.vin),
        func.coalesce(func.sum(case((and_(s.c.vin.is_not(None), normal_elsewhere), 1),
                                    else_=0)), 0),
    ).where(s.c.charger_id == charger_id, s.c.abnormal.is_(True))
    abnormal, judged, attributed = (int(v) for v in conn.execute(query).one())
    return {"abnormal_sessions": abnormal, "judged_sessions": judged,
            "attributed_sessions": attributed,
            "share": attributed / judged if judged else None, "rule": ATTRIBUTION_RULE}


# ---------------------------------------------------------------------------- fleet


def fleet_overview(store: Store, *, days: int = 30, top: int = 10) -> dict[str, Any]:
    """Counts for the fleet page; the faulty-charger ranking covers sessions that started in
    the ``days`` before the fleet's newest event time."""
    now = store.fleet_now_ms()
    with store.engine.connect() as conn:
        counts = {kind: int(n) for kind, n in conn.execute(
            select(assets.c.asset_kind, func.count()).group_by(assets.c.asset_kind))}
        by_type = [{"type": t, "severity": sev, "count": int(n)} for t, sev, n in conn.execute(
            select(alerts.c.type, alerts.c.severity, func.count())
            .where(alerts.c.status == "open").group_by(alerts.c.type, alerts.c.severity)
            .order_by(alerts.c.type, alerts.c.severity))]
        s = charging_sessions.c
        session_query = (select(s.charger_id, func.count(),
                                func.sum(case((s.abnormal.is_(True), 1), else_=0)))
                         .group_by(s.charger_id))
        if now is not None:
            session_query = session_query.where(s.start_event_ms >= now - days * DAY_MS)
        sessions = {c: (int(n), int(bad or 0)) for c, n, bad in conn.execute(session_query)}
        open_by_charger = {c: int(n) for c, n in conn.execute(
            select(alerts.c.asset_id, func.count())
            .where(alerts.c.asset_kind == "charger", alerts.c.status == "open")
            .group_by(alerts.c.asset_id))}
    faulty = []
    for charger_id in set(open_by_charger) | {c for c, (_, bad) in sessions.items() if bad}:
        total, bad = sessions.get(charger_id, (0, 0))
        faulty.append({"charger_id": charger_id, "sessions": total, "abnormal_sessions": bad,
                       "open_alerts": open_by_charger.get(charger_id, 0)})
    faulty.sort(key=lambda f: (-f["abnormal_sessions"], -f["open_alerts"], f["charger_id"]))
    return {
        "fleet_now_event_ms": now,
        "vehicles": counts.get("vehicle", 0),
        "chargers": counts.get("charger", 0),
        "open_alerts": sum(a["count"] for a in by_type),
        "open_alerts_by_type": by_type,
        "top_faulty_chargers": faulty[:top],
        "window_days": days,
    }
