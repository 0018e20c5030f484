"""Keyset pagination cursors: opaque to clients, carrying the sort and the (sort value, id)
of a page's last row, so rows that arrive between page fetches never shift later pages."""

from __future__ import annotations

import base64

import orjson

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
