"""Keyset pagination: opaque cursors carrying the list's sort and the key of a page's last
row, so rows that arrive between page fetches never shift later pages.

Every list of the API pages this way: ``rows, next_cursor = page(query_rows, limit, key,
sort)`` after fetching ``limit + 1`` rows that come after ``decode_cursor(...)`` in the
list's order (:func:`after` builds that condition).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, or_

ALERT_SORTS = ("-last_seen_event_ms", "last_seen_event_ms", "-first_seen_event_ms",
               "first_seen_event_ms")
Key = tuple[int | str, ...]
_MAX_TEXT = 256  # ids and names are short; PostgreSQL refuses NUL in a text parameter


def encode_cursor(key: Sequence[int | str], sort: str) -> str:
    """The opaque cursor after a row whose sort key is ``key`` in the list ordered ``sort``."""
    return base64.urlsafe_b64encode(orjson.dumps([*key, sort])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, types: Sequence[type] = (int, str)) -> Key:
    """The key a cursor carries; ValueError unless this API issued it for ``sort``."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4))
        decoded = orjson.loads(raw)
        if not isinstance(decoded, list) or len(decoded) != len(types) + 1:
            raise TypeError
        *key, cursor_sort = decoded
        if not isinstance(cursor_sort, str):
            raise TypeError
    except (ValueError, TypeError):
        raise ValueError("cursor is not one this API returned") from None
    if cursor_sort != sort:
        raise ValueError(f"cursor belongs to sort={cursor_sort}, not sort={sort}")
    for value, kind in zip(key, types, strict=True):
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                            or not -(2**63) <= value < 2**63):
            raise ValueError("cursor is not one this API returned")
        if kind is str and (not isinstance(value, str) or len(value) > _MAX_TEXT
                            or "\x00" in value):
            raise ValueError("cursor is not one this API returned")
    return tuple(key)


def after(columns: Sequence[Any], key: Key, *, descending: bool = False
          ) -> ColumnElement[bool]:
    """Rows strictly after ``key`` in the order of ``columns`` (all ascending or all
    descending): (a, b) > (x, y) as ``a > x OR (a = x AND b > y)``, which both databases
    answer from an index on the columns."""
    column, *rest = columns
    value, *more = key
    beyond = column < value if descending else column > value
    if not rest:
        return beyond  # type: ignore[no-any-return]
    return or_(beyond, and_(column == value, after(rest, tuple(more), descending=descending)))


def page(rows: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], Key],
         sort: str) -> tuple[list[dict[str, Any]], str | None]:
    """The first ``limit`` of ``limit + 1`` fetched rows, and the cursor after them (None
    when these were the last)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1]), sort)


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")
