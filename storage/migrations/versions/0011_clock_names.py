"""Every time column's name says its clock: ``*_event_ms`` (event time, from the devices'
messages) or ``*_wall_ms`` (the server's wall clock).

Columns that held both clocks are split or fixed:

* ``case_events.at`` becomes ``at_event_ms`` (system entries: the alert change's event time)
  and ``at_wall_ms`` (when the entry was written; staff entries had it, system ones did not).
* ``cases.updated_wall_ms`` of a case last changed by an alert held that alert's event time:
  it becomes the upgrade's wall time (the old value is still the newest system audit entry's
  ``at_event_ms``).
* ``webhook_deliveries.created_wall_ms`` held the event's time: it becomes the delivery's
  wall time if it was delivered, else the upgrade's.
* ``ota_campaigns.updated_event_ms`` of a draft nobody changed held its wall-clock creation
  time: it becomes null (nullable now).

JSON that repeats these names (alert snapshots in ``alert_events`` and in queued webhook
payloads, case audit details) is rewritten too, so a client sees one spelling.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RENAMES: dict[str, list[tuple[str, str]]] = {
    "alerts": [("first_seen", "first_seen_event_ms"), ("last_seen", "last_seen_event_ms"),
               ("predicted_failure_ts", "predicted_failure_event_ms")],
    "alert_events": [("at", "at_event_ms")],
    "assets": [("first_seen", "first_seen_event_ms"), ("last_seen", "last_seen_event_ms")],
    "latest_signals": [("ts", "ts_event_ms")],
    "api_keys": [("created_at", "created_wall_ms"), ("revoked_at", "revoked_wall_ms")],
    "daily_indicators": [("last_ts", "last_event_ms")],
    "charging_sessions": [("start_ts", "start_event_ms"), ("end_ts", "end_event_ms"),
                          ("last_ts", "last_event_ms")],
    "cases": [("opened_at", "opened_event_ms"), ("due_at", "due_event_ms"),
              ("closed_at", "closed_wall_ms"), ("updated_at", "updated_wall_ms")],
    "alert_outcomes": [("labelled_at", "labelled_wall_ms")],
    "webhooks": [("created_at", "created_wall_ms")],
    "webhook_deliveries": [("next_attempt_at", "next_attempt_wall_ms"),
                           ("lease_until", "lease_until_wall_ms"),
                           ("created_at", "created_wall_ms"),
                           ("delivered_at", "delivered_wall_ms")],
    "ota_releases": [("created_at", "created_wall_ms")],
    "ota_campaigns": [("wave_succeeded_at", "wave_succeeded_event_ms"),
                      ("created_at", "created_wall_ms"), ("updated_at", "updated_event_ms")],
    "ota_actions": [("next_attempt_at", "next_attempt_event_ms"),
                    ("updated_at", "updated_event_ms")],
    "ota_regions": [("created_at", "created_wall_ms")],
}
ALERT_KEYS = {"first_seen": "first_seen_event_ms", "last_seen": "last_seen_event_ms",
              "predicted_failure_ts": "predicted_failure_event_ms"}
CASE_KEYS = {"opened_at": "opened_event_ms", "due_at": "due_event_ms",
             "closed_at": "closed_wall_ms", "updated_at": "updated_wall_ms"}
DETAIL_KEYS = {"due_at": "due_event_ms", "due_at_from": "due_from_event_ms",
               "due_at_to": "due_to_event_ms"}
BATCH = 500

JSONDoc = dict[str, Any]


def upgrade() -> None:
    now_ms = time.time_ns() // 1_000_000
    for table, pairs in RENAMES.items():
        for old, new in pairs:
            # A plain RENAME on both databases: SQLite (>= 3.25) and PostgreSQL keep the
            # indexes, partial ones included, pointing at the renamed column.
            op.alter_column(table, old, new_column_name=new)
    op.execute(sa.text(
        "UPDATE cases SET updated_wall_ms = :now WHERE (SELECT e.actor FROM case_events e "
        "WHERE e.case_id = cases.id ORDER BY e.id DESC LIMIT 1) = 'system'"
    ).bindparams(now=now_ms))
    op.add_column("case_events", sa.Column("at_event_ms", sa.BigInteger, nullable=True))
    op.add_column("case_events", sa.Column("at_wall_ms", sa.BigInteger, nullable=True))
    op.execute("UPDATE case_events SET at_event_ms = at WHERE actor = 'system'")
    op.execute("UPDATE case_events SET at_wall_ms = at WHERE actor <> 'system'")
    op.drop_column("case_events", "at")
    op.execute(sa.text(
        "UPDATE webhook_deliveries SET created_wall_ms = COALESCE(delivered_wall_ms, :now)"
    ).bindparams(now=now_ms))
    with op.batch_alter_table("ota_campaigns") as batch:
        batch.alter_column("updated_event_ms", existing_type=sa.BigInteger, nullable=True)
    op.execute("UPDATE ota_campaigns SET updated_event_ms = NULL "
               "WHERE updated_event_ms = created_wall_ms")
    _rewrite("alert_events", "snapshot", lambda doc: _renamed(doc, ALERT_KEYS))
    _rewrite("case_events", "detail", lambda doc: _renamed(doc, DETAIL_KEYS))
    _rewrite("webhook_deliveries", "payload", _payload_up)


def downgrade() -> None:
    _rewrite("webhook_deliveries", "payload", _payload_down)
    _rewrite("case_events", "detail", lambda doc: _renamed(doc, _inverse(DETAIL_KEYS)))
    _rewrite("alert_events", "snapshot", lambda doc: _renamed(doc, _inverse(ALERT_KEYS)))
    op.execute("UPDATE ota_campaigns SET updated_event_ms = created_wall_ms "
               "WHERE updated_event_ms IS NULL")
    with op.batch_alter_table("ota_campaigns") as batch:
        batch.alter_column("updated_event_ms", existing_type=sa.BigInteger, nullable=False)
    op.add_column("case_events", sa.Column("at", sa.BigInteger, nullable=True))
    op.execute("UPDATE case_events SET at = COALESCE(at_event_ms, at_wall_ms, 0)")
    op.drop_column("case_events", "at_wall_ms")
    op.drop_column("case_events", "at_event_ms")
    with op.batch_alter_table("case_events") as batch:
        batch.alter_column("at", existing_type=sa.BigInteger, nullable=False)
    for table, pairs in reversed(RENAMES.items()):
        for old, new in reversed(pairs):
            op.alter_column(table, new, new_column_name=old)


# ---------------------------------------------------------------------------- JSON documents


def _inverse(keys: dict[str, str]) -> dict[str, str]:
    return {new: old for old, new in keys.items()}


def _renamed(doc: Any, keys: dict[str, str]) -> Any:
    if not isinstance(doc, dict):
        return doc
    return {keys.get(k, k): v for k, v in doc.items()}


def _payload_up(payload: JSONDoc) -> JSONDoc:
    """A queued webhook payload: ``{"change", "alert"}`` or ``{"change", "case", "event"}``."""
    out = dict(payload)
    if isinstance(out.get("alert"), dict):
        out["alert"] = _renamed(out["alert"], ALERT_KEYS)
    if isinstance(out.get("case"), dict):
        out["case"] = _renamed(out["case"], CASE_KEYS)
    event = out.get("event")
    if isinstance(event, dict) and "at" in event:
        event = dict(event)
        at = event.pop("at")
        system = event.get("actor") == "system"
        event["at_event_ms"], event["at_wall_ms"] = (at, None) if system else (None, at)
        event["detail"] = _renamed(event.get("detail"), DETAIL_KEYS)
        out["event"] = event
    return out


def _payload_down(payload: JSONDoc) -> JSONDoc:
    out = dict(payload)
    if isinstance(out.get("alert"), dict):
        out["alert"] = _renamed(out["alert"], _inverse(ALERT_KEYS))
    if isinstance(out.get("case"), dict):
        out["case"] = _renamed(out["case"], _inverse(CASE_KEYS))
    event = out.get("event")
    if isinstance(event, dict) and ("at_event_ms" in event or "at_wall_ms" in event):
        event = dict(event)
        at_event, at_wall = event.pop("at_event_ms", None), event.pop("at_wall_ms", None)
        event["at"] = at_event if at_event is not None else at_wall
        event["detail"] = _renamed(event.get("detail"), _inverse(DETAIL_KEYS))
        out["event"] = event
    return out


def _rewrite(table: str, column: str, change: Callable[[Any], Any]) -> None:
    """Apply ``change`` to the JSON ``column`` of every row, a batch of ids at a time."""
    conn = op.get_bind()
    t = sa.table(table, sa.column("id"), sa.column(column, sa.JSON))
    last: Any = None
    while True:
        query = sa.select(t.c.id, t.c[column]).order_by(t.c.id).limit(BATCH)
        if last is not None:
            query = query.where(t.c.id > last)
        rows: Iterable[Any] = conn.execute(query).all()
        rows = list(rows)
        if not rows:
            return
        for row_id, doc in rows:
            new = change(doc)
            if new != doc:
                conn.execute(sa.update(t).where(t.c.id == row_id).values({column: new}))
        last = rows[-1][0]
