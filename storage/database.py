"""The database handle every repository writes through: one engine, SQLite or PostgreSQL by
URL, the schema migrated on open, and write transactions serialised where that matters.

Synchronous SQLAlchemy 2 Core (the worker calls it from a thread, the API from its threadpool).

Concurrency, which the SSE stream's exactly-once resume relies on:

* Alert writes are serialised: SQLite runs them in ``BEGIN IMMEDIATE`` transactions (one
  writer at a time, others wait up to the busy timeout), PostgreSQL takes a transaction-level
  advisory lock. So ``alert_events.id`` order is commit order: a reader polling "events after
  id N" can never miss an event that commits later with a smaller id.
* SQLite runs in WAL mode, so the API process reads while the worker process writes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url

from storage.dialect import insert_for
from storage.migrate import migrate

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Keys of PostgreSQL advisory locks (any constant bigint; "oc" + a small number).
PG_LOCK_SCHEMA = 0x6F63_0001
PG_LOCK_ALERTS = 0x6F63_0002


def wall_ms() -> int:
    """The server's wall clock, epoch ms: for ``*_wall_ms`` times, never for detection."""
    return time.time_ns() // 1_000_000


class Database:
    """An engine on ``url`` with the schema at the newest revision."""

    def __init__(self, url: str) -> None:
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
        insert_for(self.dialect)  # refuse other databases now, not at the first write
        if self.dialect == "sqlite":
            _private_file(parsed.database)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_schema()

    def close(self) -> None:
        self.engine.dispose()

    def _create_schema(self) -> None:
        # The worker and the API may open a fresh database at the same moment: the check for
        # the schema's revision and the migrations run under one lock, so one migrates and
        # the other finds it done.
        with self.write(PG_LOCK_SCHEMA) as conn:
            migrate(conn)

    @contextmanager
    def write(self, pg_lock: int | None = None) -> Iterator[Connection]:
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


def _private_file(path: str | None) -> None:
    """Create the SQLite file readable by its owner only (it holds webhook secrets and all
    telemetry), or take group and other access away from an existing one; never loosen a
    stricter mode. SQLite gives its -wal and -shm files the database file's mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
    except OSError as exc:  # e.g. a missing directory: SQLite's own error says it better
        log.debug("sqlite_file_mode_unchanged path=%s error=%r", path, exc)


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
