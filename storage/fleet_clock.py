"""The fleet's event-time "now": what SLA countdowns and overdue flags are measured against.

No asset reports the time of a silent fleet, and the wall clock is not event time (a replay or
an accelerated simulation runs ahead of it), so "now" is the newest timestamp any asset
reported -- unless it is more than ``FLEET_NOW_LEAD_MS`` ahead of the runner-up's: one asset
(a wrong clock, a hostile sender) cannot move the fleet's now, the runner-up speaks for the
fleet then.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from storage.models import assets

# How far the newest asset may be ahead of the runner-up and still be the fleet's "now": far
# more than a reporting fleet's spread (seconds), far less than a wrong clock's years.
FLEET_NOW_LEAD_MS = 3_600_000


def fleet_now_ms(conn: Connection) -> int | None:
    """The fleet's now (``fleet_now_event_ms``), or None before any asset reported."""
    newest = [int(v) for v in conn.execute(
        select(assets.c.last_seen_event_ms)
        .order_by(assets.c.last_seen_event_ms.desc()).limit(2)).scalars()]
    if not newest:
        return None
    if len(newest) == 2 and newest[0] - newest[1] > FLEET_NOW_LEAD_MS:
        return newest[1]
    return newest[0]
