"""Statements that differ between SQLite and PostgreSQL: the dialect's INSERT ... ON CONFLICT
upserts of latest values and asset spans."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from storage.models import assets, latest_signals


def insert_for(dialect: str) -> Callable[..., Any]:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"unsupported database dialect {dialect!r} (sqlite or postgresql)")


def signals_upsert_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT that overwrites a latest value only with a newer one."""
    ins = insert_for(dialect)(latest_signals)
    stmt: Insert = ins.on_conflict_do_update(
        index_elements=["asset_kind", "asset_id", "path"],
        set_={"value": ins.excluded.value, "ts_event_ms": ins.excluded.ts_event_ms},
        where=ins.excluded.ts_event_ms > latest_signals.c.ts_event_ms,
    )
    return stmt


def assets_upsert_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT that widens an asset's [first seen, last seen] span."""
    ins = insert_for(dialect)(assets)
    lo, hi = (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)
    first, last = assets.c.first_seen_event_ms, assets.c.last_seen_event_ms
    new_first, new_last = ins.excluded.first_seen_event_ms, ins.excluded.last_seen_event_ms
    stmt: Insert = ins.on_conflict_do_update(
        index_elements=["asset_kind", "asset_id"],
        set_={"first_seen_event_ms": lo(first, new_first),
              "last_seen_event_ms": hi(last, new_last)},
        where=or_(new_first < first, new_last > last),
    )
    return stmt
