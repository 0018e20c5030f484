"""The alerts and the latest signal values: the worker's upserts and the API's queries.

Every alert change appends to ``alert_events`` in the same transaction, files the alert in a
care case (``storage.case_intake``) and queues its webhooks (``storage.outbox``), so the event
log, the cases and the deliveries can never disagree.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from care.casework import DEFAULT_SLA_HOURS
from storage import case_intake, fleet_clock
from storage.alert_contract import ALERT_KEYS, COMPARED, change_of, validate_alert
from storage.cursor import ALERT_SORTS, after, check_limit, decode_cursor, page
from storage.database import PG_LOCK_ALERTS, Database, wall_ms
from storage.dialect import assets_upsert_statement, signals_upsert_statement
from storage.models import alert_events, alerts, assets, latest_signals
from storage.outbox import enqueue_alert_change

log = logging.getLogger(__name__)

SIGNALS_PER_TRANSACTION = 5000


class Store(Database):
    """The relational database of alerts, alert events, assets and latest signal values.

    ``clock`` (wall-clock epoch ms; injectable for tests) stamps when a change was written:
    ``updated_wall_ms`` of cases, audit entries and webhook deliveries. Detection never
    reads it.
    """

    def __init__(self, url: str, *, case_sla_hours: Mapping[str, float] | None = None,
                 clock: Callable[[], int] = wall_ms) -> None:
        # Hours until a care case is due, per severity (cases open as alerts are written).
        self.case_sla_hours = dict(case_sla_hours or DEFAULT_SLA_HOURS)
        self.clock = clock
        super().__init__(url)

    # ------------------------------------------------------------------ writes (worker)

    def upsert_alert(self, alert: Mapping[str, Any]) -> str | None:
        """Insert or update an alert by id; return "created" | "updated" | "resolved" |
        "reopened" (a resolved alert open again: alarm hygiene's hold-off) or None.

        ``alert`` is the Kafka record (``storage.alert_contract``); the row names its times'
        clock. None means nothing changed: a redelivered duplicate, a delivery older than the
        stored one, or a replayed "open" of an alert already resolved at that instant.
        Raises ValueError (the caller dead-letters) when the dict breaks the contract.
        Every change appends to ``alert_events`` in the same transaction; so does resolving
        another open alert of the same (asset, type), of which only one may be open.
        A created alert with a ``root_cause_id`` is a consequence of a problem staff already
        have: its event is ``linked``, not ``created`` (no "new problem" webhook).
        """
        new = validate_alert(alert)
        with self.write(PG_LOCK_ALERTS) as conn:
            now_wall = self.clock()
            old = conn.execute(select(alerts).where(alerts.c.id == new["id"])).mappings().first()
            if old is not None:
                if new["last_seen_event_ms"] < old["last_seen_event_ms"]:
                    return None  # an older delivery of an alert we already moved past
                if (old["status"] == "resolved" and new["status"] == "open"
                        and new["last_seen_event_ms"] == old["last_seen_event_ms"]):
                    return None  # resolved at this instant: a replayed "open" changes nothing
            event_change: str | None = None
            rival = None
            if new["status"] == "open":
                rival = conn.execute(select(alerts).where(
                    alerts.c.asset_kind == new["asset_kind"],
                    alerts.c.asset_id == new["asset_id"], alerts.c.type == new["type"],
                    alerts.c.status == "open", alerts.c.id != new["id"])).mappings().first()
                if rival is not None and ((rival["first_seen_event_ms"], rival["id"])
                                          > (new["first_seen_event_ms"], new["id"])):
                    # A newer alert of this (asset, type) is already open (alerts of one
                    # asset can arrive out of order across partitions): this one is over.
                    new["status"], event_change, rival = "resolved", "superseded", None
            if old is not None and all(old[k] == new[k] for k in COMPARED):
                return None  # a redelivered duplicate
            if rival is not None:
                self._supersede(conn, dict(rival), new, now_wall)
            if old is None:
                conn.execute(alerts.insert().values(**new))
                change = "created"
                if new["root_cause_id"] is not None and event_change is None:
                    event_change = "linked"
            else:
                conn.execute(update(alerts).where(alerts.c.id == new["id"]).values(**new))
                change = change_of(old["status"], new["status"])
            conn.execute(alert_events.insert().values(
                alert_id=new["id"], change=event_change or change,
                at_event_ms=new["last_seen_event_ms"], snapshot=new))
            enqueue_alert_change(conn, event_change or change, new, now_wall)  # webhooks
            case_intake.on_alert_change(conn, change, new, self.case_sla_hours, now_wall)
        if event_change == "superseded":
            log.info("alert_superseded_on_arrival id=%s asset=%s type=%s", new["id"],
                     new["asset_id"], new["type"])
        return change

    def _supersede(self, conn: Connection, old: dict[str, Any], new: dict[str, Any],
                   now_wall: int) -> None:
        """Resolve ``old``, the open alert of the same (asset, type) that ``new`` replaces."""
        snapshot = {str(k): old[k] for k in ALERT_KEYS} | {"status": "resolved"}
        conn.execute(update(alerts).where(alerts.c.id == old["id"]).values(status="resolved"))
        conn.execute(alert_events.insert().values(
            alert_id=old["id"], change="superseded",
            at_event_ms=max(old["last_seen_event_ms"], new["first_seen_event_ms"]),
            snapshot=snapshot))
        enqueue_alert_change(conn, "superseded", snapshot, now_wall)  # webhooks
        log.info("alert_superseded old=%s new=%s asset=%s type=%s", old["id"], new["id"],
                 new["asset_id"], new["type"])

    def upsert_signals(self, rows: Iterable[tuple[str, str, str, object, int]]) -> int:
        """Keep the newest value per (asset_kind, asset_id, path); widen the assets' spans.

        ``rows`` are (asset_kind, asset_id, signal_path, value, ts_ms); a stored value is
        overwritten only by a strictly newer ts. Within one call the newest row per key wins
        (the later one on a tie). Returns the number of distinct (asset, path) rows offered.
        """
        newest: dict[tuple[str, str, str], tuple[object, int]] = {}
        spans: dict[tuple[str, str], list[int]] = {}
        for kind, asset_id, path, value, ts in rows:
            key = (kind, asset_id, path)
            seen = newest.get(key)
            if seen is None or ts >= seen[1]:
                newest[key] = (value, ts)
            span = spans.get((kind, asset_id))
            if span is None:
                spans[(kind, asset_id)] = [ts, ts]
            elif ts < span[0]:
                span[0] = ts
            elif ts > span[1]:
                span[1] = ts
        if not newest:
            return 0
        # Sorted, so concurrent batches lock rows in the same order (no deadlocks on PG).
        # Straight to the driver's executemany: a fleet writes tens of thousands of rows a
        # second here, and SQLAlchemy's per-row parameter processing cost more than SQLite.
        sql, keys = self._signals_sql
        dumps = orjson.dumps
        signal_rows = [(k, a, p, dumps(v).decode(), t)
                       for (k, a, p), (v, t) in sorted(newest.items(), key=lambda i: i[0])]
        params: list[Any] = (signal_rows if keys is None
                             else [dict(zip(keys, row, strict=True)) for row in signal_rows])
        asset_rows = [{"asset_kind": k, "asset_id": a, "first_seen_event_ms": s[0],
                       "last_seen_event_ms": s[1]} for (k, a), s in sorted(spans.items())]
        # Short transactions: an alert upsert waiting behind one big latest-values write is
        # what put the worst publish->alert latencies of `ownercare bench` above a second.
        for start in range(0, len(params), SIGNALS_PER_TRANSACTION):
            with self.write() as conn:
                conn.exec_driver_sql(sql, params[start:start + SIGNALS_PER_TRANSACTION])
        with self.write() as conn:
            conn.execute(assets_upsert_statement(self.dialect), asset_rows)
        return len(signal_rows)

    @functools.cached_property
    def _signals_sql(self) -> tuple[str, tuple[str, ...] | None]:
        """The upsert as driver SQL, and the parameter names when the driver wants a dict."""
        columns = ("asset_kind", "asset_id", "path", "value", "ts_event_ms")
        compiled = signals_upsert_statement(self.dialect).compile(
            dialect=self.engine.dialect, column_keys=list(columns))
        if compiled.positional:
            assert tuple(compiled.positiontup or ()) == columns
            return compiled.string, None
        return compiled.string, columns

    # ------------------------------------------------------------------ reads (API)

    def list_alerts(
        self, *, asset_id: str | None = None, asset_kind: str | None = None,
        alert_type: str | None = None, severity: str | None = None, status: str | None = None,
        since_event_ms: int | None = None, until_event_ms: int | None = None,
        sort: str = "-last_seen_event_ms", limit: int = 50, cursor: str | None = None,
        root_cause_id: str | None = None, linked: bool | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ``sort`` order (ties broken by id), and the next page's cursor.

        ``root_cause_id`` keeps the consequences of that alert; ``linked`` False keeps only
        alerts that are no consequence (the problems), True only the consequences.

        ``since_event_ms``/``until_event_ms`` keep alerts active at some point of the range:
        ``last_seen_event_ms >= since_event_ms`` and ``first_seen_event_ms <= until_event_ms``.
        Keyset pagination: the cursor is the last row's (sort value, id), so alerts that
        arrive between page fetches never shift or repeat the rows of later pages.
        Raises ValueError for a bad sort or a cursor this store did not issue for that sort.
        """
        check_limit(limit)
        if sort not in ALERT_SORTS:
            raise ValueError(f"sort must be one of {', '.join(ALERT_SORTS)}")
        query = select(alerts)
        for column, value in ((alerts.c.asset_id, asset_id), (alerts.c.asset_kind, asset_kind),
                              (alerts.c.type, alert_type), (alerts.c.severity, severity),
                              (alerts.c.status, status),
                              (alerts.c.root_cause_id, root_cause_id)):
            if value is not None:
                query = query.where(column == value)
        if linked is not None:
            query = query.where(alerts.c.root_cause_id.is_not(None) if linked
                                else alerts.c.root_cause_id.is_(None))
        if since_event_ms is not None:
            query = query.where(alerts.c.last_seen_event_ms >= since_event_ms)
        if until_event_ms is not None:
            query = query.where(alerts.c.first_seen_event_ms <= until_event_ms)
        key = alerts.c[sort.lstrip("-")]
        descending = sort.startswith("-")
        if cursor:
            query = query.where(after((key, alerts.c.id), decode_cursor(cursor, sort),
                                      descending=descending))
        order = (key.desc(), alerts.c.id.desc()) if descending else (key.asc(), alerts.c.id.asc())
        query = query.order_by(*order).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_plain(r) for r in conn.execute(query).mappings()]
        return page(rows, limit, lambda r: (r[key.name], r["id"]), sort)

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
        return _plain(row) if row else None

    def last_event_id(self) -> int:
        """The newest alert event id (0 when there is none): where a fresh stream starts."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0)))
                       .scalar_one())

    def alert_events_after(self, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Alert events with id > ``after_id``, oldest first: {id, alert_id, change,
        at_event_ms, snapshot}."""
        query = (select(alert_events).where(alert_events.c.id > after_id)
                 .order_by(alert_events.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def fleet_now_ms(self) -> int | None:
        """The fleet's event-time "now" (``fleet_now_event_ms``, ``storage.fleet_clock``)."""
        with self.engine.connect() as conn:
            return fleet_clock.fleet_now_ms(conn)

    def asset(self, kind: str, asset_id: str) -> dict[str, Any] | None:
        """An asset's span, latest signals ({path, value, ts_event_ms}) and open alerts, or
        None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(assets).where(
                assets.c.asset_kind == kind, assets.c.asset_id == asset_id)).mappings().first()
            if row is None:
                return None
            signals = [dict(r) for r in conn.execute(
                select(latest_signals.c.path, latest_signals.c.value,
                       latest_signals.c.ts_event_ms)
                .where(latest_signals.c.asset_kind == kind,
                       latest_signals.c.asset_id == asset_id)
                .order_by(latest_signals.c.path)).mappings()]
            open_alerts = [_plain(r) for r in conn.execute(
                select(alerts).where(alerts.c.asset_kind == kind, alerts.c.asset_id == asset_id,
                                     alerts.c.status == "open")
                .order_by(alerts.c.last_seen_event_ms.desc(), alerts.c.id.desc())).mappings()]
        return {**dict(row), "signals": signals, "open_alerts": open_alerts}

    def vehicle(self, vin: str) -> dict[str, Any] | None:
        return self.asset("vehicle", vin)


def _plain(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row with plain str keys: SQLAlchemy's are ``quoted_name``s, which orjson (the JSON
    columns' serializer, e.g. of a webhook payload) refuses."""
    return {str(k): v for k, v in row.items()}
