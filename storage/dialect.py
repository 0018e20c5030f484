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
        set_={"value": ins.excluded.value, "ts": ins.excluded.ts},
        where=ins.excluded.ts > latest_signals.c.ts,
    )
    return stmt


def assets_upsert_statement(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT that widens an asset's [first_seen, last_seen] span."""
    ins = insert_for(dialect)(assets)
    lo, hi = (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)
    stmt: Insert = ins.on_conflict_do_update(
        index_elements=["asset_kind", "asset_id"],
        set_={"first_seen": lo(assets.c.first_seen, ins.excluded.first_seen),
              "last_seen": hi(assets.c.last_seen, ins.excluded.last_seen)},
        where=or_(ins.excluded.first_seen < assets.c.first_seen,
                  ins.excluded.last_seen > assets.c.last_seen),
    )
    return stmt
