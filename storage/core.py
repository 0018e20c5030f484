"""Storage: alert upserts, latest signal values, and the queries behind the API.

Synchronous SQLAlchemy 2 Core (the worker calls it from a thread, the API from its threadpool).
Works on SQLite and PostgreSQL, chosen by URL; the tables are in ``storage.models``.

Concurrency, which the SSE stream's exactly-once resume relies on:

* Alert writes are serialised: SQLite runs them in ``BEGIN IMMEDIATE`` transactions (one
  writer at a time, others wait up to the busy timeout), PostgreSQL takes a transaction-level
  advisory lock. So ``alert_events.id`` order is commit order: a reader polling "events after
  id N" can never miss an event that commits later with a smaller id.
* SQLite runs in WAL mode, so the API process reads while the worker process writes.
"""

from __future__ import annotations

import base64
import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import and_, create_engine, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.dml import Insert

from care.casework import DEFAULT_SLA_HOURS
from storage import case_intake
from storage.models import alert_events, alerts, assets, latest_signals
from storage.outbox import enqueue_alert_change

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
STATUSES = ("open", "resolved")
ASSET_KINDS = ("vehicle", "charger")
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Keys of PostgreSQL advisory locks (any constant bigint; "oc" + a small number).
_PG_LOCK_SCHEMA = 0x6F63_0001
_PG_LOCK_ALERTS = 0x6F63_0002
_MAX_MS = 2**63 - 1
_MAX_EVIDENCE_DEPTH = 8

# name -> (accepted types, human description, max length for strings or None)
_ALERT_FIELDS: dict[str, tuple[tuple[type, ...], str, int | None]] = {
    "id": ((str,), "a string", 36),
    "asset_kind": ((str,), "a string", 16),
    "asset_id": ((str,), "a string", 64),
    "type": ((str,), "a string", 64),
    "severity": ((str,), "a string", 16),
    "status": ((str,), "a string", 16),
    "first_seen": ((int,), "an integer (epoch ms)", None),
    "last_seen": ((int,), "an integer (epoch ms)", None),
    "title": ((str,), "a string", None),
    "evidence": ((dict,), "a JSON object", None),
    "predicted_failure_ts": ((int, type(None)), "an integer (epoch ms) or null", None),
    "recommended_action": ((str,), "a string", None),
    "detector": ((str,), "a string", 64),
    "detector_version": ((str,), "a string", 32),
}
# Fields a producer may leave out (older workers did not send them): absent means null.
_OPTIONAL_FIELDS: dict[str, tuple[tuple[type, ...], str, int | None]] = {
    "root_cause_id": ((str, type(None)), "a string (an alert id) or null", 36),
}
ALERT_KEYS = tuple(_ALERT_FIELDS) + tuple(_OPTIONAL_FIELDS)
_NON_EMPTY = ("id", "asset_id", "type", "detector", "root_cause_id")
# A delivery that differs from the stored alert only outside these fields is a duplicate.
_COMPARED = ("severity", "status", "last_seen", "title", "evidence", "predicted_failure_ts",
             "recommended_action", "root_cause_id")


def _change(old_status: str, new_status: str) -> str:
    if old_status == "open" and new_status == "resolved":
        return "resolved"
    if old_status == "resolved" and new_status == "open":
        return "reopened"
    return "updated"


# ---------------------------------------------------------------------------- validation


def validate_alert(alert: Any) -> dict[str, Any]:
    """Check an alert upsert from Kafka; return its stored fields or raise ValueError.

    The message names the field and the problem, so a dead-lettered alert explains itself.
    Keys beyond the contract are ignored (a newer producer must not be dead-lettered).
    """
    if not isinstance(alert, Mapping):
        raise ValueError(f"alert must be a JSON object, got {type(alert).__name__}")
    missing = [name for name in _ALERT_FIELDS if name not in alert]
    if missing:
        raise ValueError(f"alert is missing field(s): {', '.join(missing)}")
    for name, (kinds, description, max_len) in (_ALERT_FIELDS | _OPTIONAL_FIELDS).items():
        value = alert.get(name)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"alert field {name!r} must be {description}, "
                             f"got {type(value).__name__} {_short(value)}")
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError(f"alert field {name!r} contains a NUL character")
            if max_len is not None and len(value) > max_len:
                raise ValueError(f"alert field {name!r} is longer than {max_len} characters")
            if name in _NON_EMPTY and not value.strip():
                raise ValueError(f"alert field {name!r} is empty")
        if isinstance(value, int) and not 0 <= value <= _MAX_MS:
            raise ValueError(f"alert field {name!r}={value} is not an epoch-ms timestamp")
    for name, allowed in (("asset_kind", ASSET_KINDS), ("severity", SEVERITIES),
                          ("status", STATUSES)):
        if alert[name] not in allowed:
            raise ValueError(f"alert field {name!r}={alert[name]!r} is not one of "
                             f"{', '.join(allowed)}")
    if alert["last_seen"] < alert["first_seen"]:
        raise ValueError(f"alert last_seen={alert['last_seen']} is before "
                         f"first_seen={alert['first_seen']}")
    if alert.get("root_cause_id") == alert["id"]:
        raise ValueError("alert field 'root_cause_id' names the alert itself")
    _check_json(alert["evidence"], "evidence", 0)
    return {name: alert.get(name) for name in ALERT_KEYS}


def _check_json(value: Any, where: str, depth: int) -> None:
    """JSON values only: str keys, finite numbers (PostgreSQL's json refuses NaN)."""
    if depth > _MAX_EVIDENCE_DEPTH:
        raise ValueError(f"alert field {where!r} nests deeper than {_MAX_EVIDENCE_DEPTH}")
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"alert field {where!r} contains a NUL character")
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"alert field {where!r}={value} is out of the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"alert field {where!r} is {value}; JSON has no such number")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"alert field {where!r} has a non-string key {key!r}")
            _check_json(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    raise ValueError(f"alert field {where!r} holds a {type(value).__name__}, not a JSON value")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------- cursors


ALERT_SORTS = ("-last_seen", "last_seen", "-first_seen", "first_seen")


def encode_cursor(last_seen: int, alert_id: str, sort: str = "-last_seen") -> str:
    """The opaque keyset cursor: the sort, and the (sort value, id) of a page's last row."""
    return base64.urlsafe_b64encode(orjson.dumps([last_seen, alert_id, sort])).decode() \
        .rstrip("=")


def decode_cursor(cursor: str, sort: str = "-last_seen") -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4))
        decoded = orjson.loads(raw)
        if len(decoded) == 2:  # issued before sorting existed: always -last_seen
            decoded.append("-last_seen")
        value, alert_id, cursor_sort = decoded
        if isinstance(value, bool) or not isinstance(value, int) \
                or not isinstance(alert_id, str):
            raise TypeError
    except (ValueError, TypeError):
        raise ValueError("cursor is not one this API returned") from None
    if cursor_sort != sort:
        raise ValueError(f"cursor belongs to sort={cursor_sort}, not sort={sort}")
    return value, alert_id


# ---------------------------------------------------------------------------- statements


def _insert_for(dialect: str) -> Callable[..., Any]:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"unsupported database dialect {dialect!r} (sqlite or postgresql)")


def signals_upsert_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT that overwrites a latest value only with a newer one."""
    ins = _insert_for(dialect)(latest_signals)
    stmt: Insert = ins.on_conflict_do_update(
        index_elements=["asset_kind", "asset_id", "path"],
        set_={"value": ins.excluded.value, "ts": ins.excluded.ts},
        where=ins.excluded.ts > latest_signals.c.ts,
    )
    return stmt


def assets_upsert_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT that widens an asset's [first_seen, last_seen] span."""
    ins = _insert_for(dialect)(assets)
    lo, hi = (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)
    stmt: Insert = ins.on_conflict_do_update(
        index_elements=["asset_kind", "asset_id"],
        set_={"first_seen": lo(assets.c.first_seen, ins.excluded.first_seen),
              "last_seen": hi(assets.c.last_seen, ins.excluded.last_seen)},
        where=or_(ins.excluded.first_seen < assets.c.first_seen,
                  ins.excluded.last_seen > assets.c.last_seen),
    )
    return stmt


# ---------------------------------------------------------------------------- migrations


@functools.cache
def _alembic() -> tuple[Any, str]:
    """Alembic's config for ``storage/migrations`` and the head revision (read once)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "storage:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return config, head


def migrate(conn: Connection) -> str | None:
    """Bring the schema to the newest revision; return the revision it had before.

    A database made before migrations existed has the baseline tables and no revision: it
    is stamped at the baseline, then upgraded like any other.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    config, head = _alembic()
    before = MigrationContext.configure(conn).get_current_revision()
    if before == head:
        return before
    config.attributes["connection"] = conn
    try:
        if before is None and inspect(conn).has_table("alerts"):
            command.stamp(config, BASELINE_REVISION)
            log.info("schema_stamped revision=%s reason=created before migrations existed",
                     BASELINE_REVISION)
        command.upgrade(config, "head")
    finally:
        config.attributes.pop("connection", None)
    log.info("schema_migrated from=%s to=%s", before, head)
    return before


BASELINE_REVISION = "0001"

# ---------------------------------------------------------------------------- the store


SIGNALS_PER_TRANSACTION = 5000


class Store:
    """The relational database of alerts, alert events, assets and latest signal values."""

    def __init__(self, url: str, *, case_sla_hours: Mapping[str, float] | None = None) -> None:
        # Hours until a care case is due, per severity (cases open as alerts are written).
        self.case_sla_hours = dict(case_sla_hours or DEFAULT_SLA_HOURS)
        parsed = make_url(url)
        if parsed.drivername == "postgresql":  # SQLAlchemy would pick psycopg2 (not installed)
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = url
        self.engine: Engine = create_engine(
            parsed,
            pool_pre_ping=True,
            json_serializer=lambda obj: orjson.dumps(obj).decode(),
            json_deserializer=_json_loads,
        )
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time. Threads of this process queue here, and get the
        # lock as soon as it is free, instead of polling SQLite's busy handler with backoff.
        self._sqlite_write_lock = threading.Lock()
        _insert_for(self.dialect)  # refuse other databases now, not at the first write
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_schema()

    def close(self) -> None:
        self.engine.dispose()

    def _create_schema(self) -> None:
        # The worker and the API may open a fresh database at the same moment: the check for
        # the schema's revision and the migrations run under one lock, so one migrates and
        # the other finds it done.
        with self._write(_PG_LOCK_SCHEMA) as conn:
            migrate(conn)

    @contextmanager
    def _write(self, pg_lock: int | None = None) -> Iterator[Connection]:
        """A write transaction; serialised against other writers where that matters."""
        if self.dialect != "sqlite":
            with self.engine.connect() as conn:
                if pg_lock is not None:
                    conn.execute(select(func.pg_advisory_xact_lock(pg_lock)))
                yield conn
                conn.commit()
            return
        with self._sqlite_write_lock, self.engine.connect() as conn:
            # Take the write lock up front: a deferred transaction that reads first and then
            # writes fails at once (SQLITE_BUSY) if another process wrote in between.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # ------------------------------------------------------------------ writes (worker)

    def upsert_alert(self, alert: Mapping[str, Any]) -> str | None:
        """Insert or update an alert by id; return "created" | "updated" | "resolved" |
        "reopened" (a resolved alert open again: alarm hygiene's hold-off) or None.

        None means nothing changed: a redelivered duplicate, a delivery older than the stored
        ``last_seen``, or a replayed "open" of an alert already resolved at that instant.
        Raises ValueError (the caller dead-letters) when the dict breaks the contract.
        Every change appends to ``alert_events`` in the same transaction; so does resolving
        another open alert of the same (asset, type), of which only one may be open.
        A created alert with a ``root_cause_id`` is a consequence of a problem staff already
        have: its event is ``linked``, not ``created`` (no "new problem" webhook).
        """
        new = validate_alert(alert)
        with self._write(_PG_LOCK_ALERTS) as conn:
            old = conn.execute(select(alerts).where(alerts.c.id == new["id"])).mappings().first()
            if old is not None:
                if new["last_seen"] < old["last_seen"]:
                    return None  # an older delivery of an alert we already moved past
                if (old["status"] == "resolved" and new["status"] == "open"
                        and new["last_seen"] == old["last_seen"]):
                    return None  # resolved at this instant: a replayed "open" changes nothing
            event_change: str | None = None
            rival = None
            if new["status"] == "open":
                rival = conn.execute(select(alerts).where(
                    alerts.c.asset_kind == new["asset_kind"],
                    alerts.c.asset_id == new["asset_id"], alerts.c.type == new["type"],
                    alerts.c.status == "open", alerts.c.id != new["id"])).mappings().first()
                if rival is not None and ((rival["first_seen"], rival["id"])
                                          > (new["first_seen"], new["id"])):
                    # A newer alert of this (asset, type) is already open (alerts of one
                    # asset can arrive out of order across partitions): this one is over.
                    new["status"], event_change, rival = "resolved", "superseded", None
            if old is not None and all(old[k] == new[k] for k in _COMPARED):
                return None  # a redelivered duplicate
            if rival is not None:
                self._supersede(conn, dict(rival), new)
            if old is None:
                conn.execute(alerts.insert().values(**new))
                change = "created"
                if new["root_cause_id"] is not None and event_change is None:
                    event_change = "linked"
            else:
                conn.execute(update(alerts).where(alerts.c.id == new["id"]).values(**new))
                change = _change(old["status"], new["status"])
            conn.execute(alert_events.insert().values(
                alert_id=new["id"], change=event_change or change, at=new["last_seen"],
                snapshot=new))
            enqueue_alert_change(conn, event_change or change, new, new["last_seen"])  # webhooks
            case_intake.on_alert_change(conn, change, new, self.case_sla_hours)
        if event_change == "superseded":
            log.info("alert_superseded_on_arrival id=%s asset=%s type=%s", new["id"],
                     new["asset_id"], new["type"])
        return change

    def _supersede(self, conn: Connection, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Resolve ``old``, the open alert of the same (asset, type) that ``new`` replaces."""
        snapshot = {k: old[k] for k in ALERT_KEYS} | {"status": "resolved"}
        conn.execute(update(alerts).where(alerts.c.id == old["id"]).values(status="resolved"))
        conn.execute(alert_events.insert().values(
            alert_id=old["id"], change="superseded",
            at=max(old["last_seen"], new["first_seen"]), snapshot=snapshot))
        enqueue_alert_change(conn, "superseded", snapshot,  # webhooks
                             max(old["last_seen"], new["first_seen"]))
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
        asset_rows = [{"asset_kind": k, "asset_id": a, "first_seen": s[0], "last_seen": s[1]}
                      for (k, a), s in sorted(spans.items())]
        # Short transactions: an alert upsert waiting behind one big latest-values write is
        # what put the worst publish->alert latencies of `ownercare bench` above a second.
        for start in range(0, len(params), SIGNALS_PER_TRANSACTION):
            with self._write() as conn:
                conn.exec_driver_sql(sql, params[start:start + SIGNALS_PER_TRANSACTION])
        with self._write() as conn:
            conn.execute(assets_upsert_statement(self.dialect), asset_rows)
        return len(signal_rows)

    @functools.cached_property
    def _signals_sql(self) -> tuple[str, tuple[str, ...] | None]:
        """The upsert as driver SQL, and the parameter names when the driver wants a dict."""
        columns = ("asset_kind", "asset_id", "path", "value", "ts")
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
        since: int | None = None, until: int | None = None, sort: str = "-last_seen",
        limit: int = 50, cursor: str | None = None, root_cause_id: str | None = None,
        linked: bool | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ``sort`` order (ties broken by id), and the next page's cursor.

        ``root_cause_id`` keeps the consequences of that alert; ``linked`` False keeps only
        alerts that are no consequence (the problems), True only the consequences.

        ``since``/``until`` (event time, ms) keep alerts active at some point of the range:
        ``last_seen >= since`` and ``first_seen <= until``.
        Keyset pagination: the cursor is the last row's (sort value, id), so alerts that
        arrive between page fetches never shift or repeat the rows of later pages.
        Raises ValueError for a bad sort or a cursor this store did not issue for that sort.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
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
        if since is not None:
            query = query.where(alerts.c.last_seen >= since)
        if until is not None:
            query = query.where(alerts.c.first_seen <= until)
        key = alerts.c[sort.lstrip("-")]
        descending = sort.startswith("-")
        if cursor:
            at, last_id = decode_cursor(cursor, sort)
            if descending:
                query = query.where(or_(key < at, and_(key == at, alerts.c.id < last_id)))
            else:
                query = query.where(or_(key > at, and_(key == at, alerts.c.id > last_id)))
        order = (key.desc(), alerts.c.id.desc()) if descending else (key.asc(), alerts.c.id.asc())
        query = query.order_by(*order).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1][key.name], rows[-1]["id"], sort)
        return rows, next_cursor

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
        return dict(row) if row else None

    def last_event_id(self) -> int:
        """The newest alert event id (0 when there is none): where a fresh stream starts."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0)))
                       .scalar_one())

    def alert_events_after(self, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Alert events with id > ``after_id``, oldest first: {id, alert_id, change, at,
        snapshot}."""
        query = (select(alert_events).where(alert_events.c.id > after_id)
                 .order_by(alert_events.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def fleet_now_ms(self) -> int | None:
        """The fleet's event-time "now": the newest timestamp any asset reported (or None)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(assets.c.last_seen))).scalar_one_or_none()
        return None if value is None else int(value)

    def asset(self, kind: str, asset_id: str) -> dict[str, Any] | None:
        """An asset's span, latest signals ({path, value, ts}) and open alerts, or None."""
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
                .order_by(alerts.c.last_seen.desc(), alerts.c.id.desc())).mappings()]
        return {**dict(row), "signals": signals, "open_alerts": open_alerts}

    def vehicle(self, vin: str) -> dict[str, Any] | None:
        return self.asset("vehicle", vin)


def _json_loads(value: Any) -> Any:
    # SQLite's JSON column has NUMERIC affinity: a stored scalar number comes back as one.
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; fine with WAL
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() not in ("wal", "memory"):
            mode = _switch_to_wal(cursor)
            if mode.lower() != "wal":
                log.warning("sqlite_not_wal journal_mode=%s", mode)
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> str:
    """WAL (readers and the writer do not block each other) is a property of the file, so
    only its first opener switches. The switch may answer "locked" at once, without waiting
    for the busy timeout, while another connection opens the file: retry until the timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
