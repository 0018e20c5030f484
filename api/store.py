"""Storage: alert upserts, latest signal values, and the queries behind the API.

Synchronous SQLAlchemy (the worker calls it from a thread, the API from its threadpool). Works
on SQLite (WAL, so the worker writes while the API reads) and PostgreSQL, chosen by URL.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import and_, create_engine, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from api.models import alert_events, alerts, assets, latest_signals, metadata

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
STATUSES = ("open", "resolved")
ASSET_KINDS = ("vehicle", "charger")
_ALERT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "asset_kind": str, "asset_id": str, "type": str, "severity": str, "status": str,
    "first_seen": int, "last_seen": int, "title": str, "evidence": dict,
    "predicted_failure_ts": (int, type(None)), "recommended_action": str, "detector": str,
    "detector_version": str,
}
# Fields whose change is worth an event; last_seen alone moving forward is also recorded.
_COMPARED = ("severity", "status", "last_seen", "title", "evidence", "predicted_failure_ts",
             "recommended_action")


def validate_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """Check an alert upsert from Kafka; raise ValueError naming the problem."""
    if not isinstance(alert, Mapping):
        raise ValueError(f"alert must be an object, got {type(alert).__name__}")
    missing = sorted(set(_ALERT_FIELDS) - set(alert))
    if missing:
        raise ValueError(f"alert is missing field(s): {', '.join(missing)}")
    for name, kind in _ALERT_FIELDS.items():
        value = alert[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ValueError(f"alert field {name!r} has the wrong type {type(value).__name__}")
    for name, allowed in (("severity", SEVERITIES), ("status", STATUSES),
                          ("asset_kind", ASSET_KINDS)):
        if alert[name] not in allowed:
            raise ValueError(f"alert field {name!r}={alert[name]!r} is not one of {allowed}")
    if alert["last_seen"] < alert["first_seen"]:
        raise ValueError("alert last_seen is before first_seen")
    return {name: alert[name] for name in _ALERT_FIELDS}


def encode_cursor(last_seen: int, alert_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([last_seen, alert_id])).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        last_seen, alert_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(last_seen, int) or not isinstance(alert_id, str):
            raise TypeError
        return last_seen, alert_id
    except (ValueError, TypeError):
        raise ValueError("cursor is not one this API returned") from None


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_schema()

    def _create_schema(self) -> None:
        # The worker and the API start together; on a fresh database both may try to create
        # the tables. The loser of that race sees "already exists" and checks again.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                return
            except (OperationalError, ProgrammingError, IntegrityError) as exc:
                if "already exists" not in str(exc) or attempt == 2:
                    raise
                log.info("schema_create_race retry=%s", attempt + 1)

    @property
    def _insert(self) -> Any:
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # ---------------------------------------------------------------- writes (worker)

    def upsert_alert(self, raw: Mapping[str, Any]) -> str | None:
        """Insert or update an alert; return "created" | "updated" | "resolved" or None."""
        alert = validate_alert(raw)
        with self.engine.begin() as conn:
            old = conn.execute(select(alerts).where(alerts.c.id == alert["id"])).mappings().first()
            if old is not None:
                if alert["last_seen"] < old["last_seen"]:
                    return None  # an older delivery of an alert we already moved past
                if all(old[k] == alert[k] for k in _COMPARED):
                    return None  # a redelivered duplicate
            if alert["status"] == "open":
                self._supersede(conn, alert)
            if old is None:
                conn.execute(alerts.insert().values(**alert))
                change = "created"
            else:
                conn.execute(update(alerts).where(alerts.c.id == alert["id"]).values(**alert))
                change = ("resolved" if alert["status"] == "resolved" and old["status"] == "open"
                          else "updated")
            conn.execute(alert_events.insert().values(
                alert_id=alert["id"], change=change, at=alert["last_seen"], snapshot=alert))
        return change

    def _supersede(self, conn: Connection, alert: dict[str, Any]) -> None:
        """Resolve another open alert of the same (asset, type): only one may be open."""
        stale = conn.execute(select(alerts).where(
            alerts.c.asset_kind == alert["asset_kind"], alerts.c.asset_id == alert["asset_id"],
            alerts.c.type == alert["type"], alerts.c.status == "open",
            alerts.c.id != alert["id"])).mappings().all()
        for row in stale:
            snapshot = {**dict(row), "status": "resolved"}
            conn.execute(update(alerts).where(alerts.c.id == row["id"]).values(status="resolved"))
            conn.execute(alert_events.insert().values(
                alert_id=row["id"], change="superseded", at=alert["first_seen"],
                snapshot=snapshot))
            log.warning("alert_superseded old=%s new=%s", row["id"], alert["id"])

    def upsert_signals(self, rows: Iterable[tuple[str, str, str, object, int]]) -> int:
        """Keep the newest value per (asset, signal); rows are (kind, id, path, value, ts)."""
        values: list[dict[str, Any]] = [
            {"asset_kind": k, "asset_id": a, "path": p, "value": v, "ts": t}
            for k, a, p, v, t in rows]
        if not values:
            return 0
        spans: dict[tuple[str, str], list[int]] = {}
        for v in values:
            span = spans.setdefault((v["asset_kind"], v["asset_id"]), [v["ts"], v["ts"]])
            span[0], span[1] = min(span[0], v["ts"]), max(span[1], v["ts"])
        insert = self._insert
        sig = insert(latest_signals)
        sig = sig.on_conflict_do_update(
            index_elements=["asset_kind", "asset_id", "path"],
            set_={"value": sig.excluded.value, "ts": sig.excluded.ts},
            where=sig.excluded.ts >= latest_signals.c.ts,
        )
        ast = insert(assets)
        ast = ast.on_conflict_do_update(
            index_elements=["asset_kind", "asset_id"],
            set_={"first_seen": func.min(assets.c.first_seen, ast.excluded.first_seen)
                  if self.engine.dialect.name == "sqlite"
                  else func.least(assets.c.first_seen, ast.excluded.first_seen),
                  "last_seen": func.max(assets.c.last_seen, ast.excluded.last_seen)
                  if self.engine.dialect.name == "sqlite"
                  else func.greatest(assets.c.last_seen, ast.excluded.last_seen)},
        )
        with self.engine.begin() as conn:
            conn.execute(sig, values)
            conn.execute(ast, [{"asset_kind": k, "asset_id": a, "first_seen": s[0],
                                "last_seen": s[1]} for (k, a), s in spans.items()])
        return len(values)

    # ---------------------------------------------------------------- reads (API)

    def list_alerts(
        self, *, asset_id: str | None = None, alert_type: str | None = None,
        severity: str | None = None, status: str | None = None, limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first by (last_seen, id); the cursor is the last row of the previous page."""
        query = select(alerts)
        for column, value in ((alerts.c.asset_id, asset_id), (alerts.c.type, alert_type),
                              (alerts.c.severity, severity), (alerts.c.status, status)):
            if value is not None:
                query = query.where(column == value)
        if cursor:
            last_seen, last_id = decode_cursor(cursor)
            query = query.where(or_(alerts.c.last_seen < last_seen,
                                    and_(alerts.c.last_seen == last_seen, alerts.c.id < last_id)))
        query = query.order_by(alerts.c.last_seen.desc(), alerts.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1]["last_seen"], rows[-1]["id"])
        return rows, next_cursor

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
        return dict(row) if row else None

    def last_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0)))
                       .scalar_one())

    def alert_events_after(self, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
        query = (select(alert_events).where(alert_events.c.id > after_id)
                 .order_by(alert_events.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def fleet_now_ms(self) -> int | None:
        """The fleet's event-time "now": the newest timestamp any asset reported."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(assets.c.last_seen))).scalar_one_or_none()

    def asset(self, kind: str, asset_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(assets).where(
                assets.c.asset_kind == kind, assets.c.asset_id == asset_id)).mappings().first()
            if row is None:
                return None
            signals = [dict(r) for r in conn.execute(
                select(latest_signals.c.path, latest_signals.c.value, latest_signals.c.ts)
                .where(latest_signals.c.asset_kind == kind,
                       latest_signals.c.asset_id == asset_id)
                .order_by(latest_signals.c.path)).mappings()]
            open_alerts = [dict(r) for r in conn.execute(
                select(alerts).where(alerts.c.asset_kind == kind, alerts.c.asset_id == asset_id,
                                     alerts.c.status == "open")
                .order_by(alerts.c.last_seen.desc())).mappings()]
        return {**dict(row), "signals": signals, "open_alerts": open_alerts}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
