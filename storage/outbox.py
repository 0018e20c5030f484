"""Webhooks in the database: registrations, and the transactional outbox of deliveries.

:func:`enqueue` writes deliveries in the caller's transaction, so a change and the webhook
deliveries announcing it commit together or not at all (no event sent for a rolled-back
change, none lost for a committed one). The dispatcher (``api.webhook_dispatch``) then claims
due deliveries with a lease: a conditional UPDATE that only one API replica can win, so two
replicas never send the same delivery at the same time.

Event payloads (``data`` of the signed body, see ``care.webhooks``):

* ``alert.<change>``: ``{"change": <the suffix>, "alert": <the alert as GET /alerts/{id}
  returns it>}``, the same as the SSE stream's data.
* ``case.<action>`` (``storage.case_intake.record``): ``{"change": <the action>, "case":
  <the case as the API returns it>, "event": <the audit entry>}``.

The body's ``created_wall_ms`` (and the delivery's) is the wall time of the write that
queued it; the times the event is about (event time) are in ``data``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from care.webhooks import matches, new_secret
from storage.cursor import after, check_limit, decode_cursor, page
from storage.database import Database
from storage.models import webhook_deliveries, webhooks

log = logging.getLogger(__name__)

WEBHOOK_STATES = ("active", "paused")
DELIVERY_STATES = ("pending", "delivered", "dead")
WEBHOOK_SORT = "webhooks:created_wall_ms"
DELIVERY_SORT = "deliveries:-created_wall_ms"
# Every column but the secret: what listings show.
_PUBLIC = [c for c in webhooks.c if c.name != "secret"]


def _is_id(value: str) -> bool:
    """Could this be one of our uuid ids? Anything else cannot exist, so lookups answer
    "not found" without asking the database (which refuses, e.g., NUL characters)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class DeliveryStateError(ValueError):
    """The delivery is not in a state that allows the operation (a 409)."""


# ---------------------------------------------------------------------------- the outbox


def enqueue(conn: Connection, event_type: str, payload: Mapping[str, Any], *,
            now_wall_ms: int, event_id: str | None = None) -> int:
    """Add one pending delivery of this event for every active webhook whose filter matches.

    Runs in the caller's transaction (``conn``); commit or roll back with it.
    ``now_wall_ms`` is the wall time of that write, sent as the body's ``created_wall_ms``.
    Returns the deliveries added.
    """
    event_id = event_id or str(uuid.uuid4())
    targets = [row.id for row in conn.execute(
        select(webhooks.c.id, webhooks.c.events).where(webhooks.c.state == "active"))
        if matches(row.events, event_type)]
    if not targets:
        return 0
    conn.execute(insert(webhook_deliveries), [
        {"id": str(uuid.uuid4()), "webhook_id": webhook_id, "event_id": event_id,
         "event_type": event_type, "payload": dict(payload), "state": "pending",
         "attempts": 0, "next_attempt_wall_ms": 0, "lease_until_wall_ms": None,
         "last_status_code": None, "last_error": None, "created_wall_ms": now_wall_ms,
         "delivered_wall_ms": None}
        for webhook_id in targets])
    return len(targets)


def enqueue_alert_change(conn: Connection, change: str, snapshot: Mapping[str, Any],
                         now_wall_ms: int) -> int:
    """The outbox hook of ``Store.upsert_alert``: ``alert.<change>`` with the snapshot."""
    return enqueue(conn, f"alert.{change}", {"change": change, "alert": dict(snapshot)},
                   now_wall_ms=now_wall_ms)


# ---------------------------------------------------------------------------- registrations


def create_webhook(store: Database, *, url: str, events: list[str], description: str,
                   created_by: str, now_ms: int) -> dict[str, Any]:
    """Register an active webhook; the returned dict is the only one holding the secret.

    ``url`` and ``events`` must already be checked (``care.webhooks.check_url`` and
    ``check_event_patterns``)."""
    row = {"id": str(uuid.uuid4()), "url": url, "secret": new_secret(), "events": events,
           "state": "active", "description": description, "created_wall_ms": now_ms,
           "created_by": created_by}
    with store.write() as conn:
        conn.execute(insert(webhooks).values(**row))
    log.info("webhook_created id=%s by=%s events=%s", row["id"], created_by, ",".join(events))
    return row


def list_webhooks(store: Database, limit: int = 100, cursor: str | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of webhooks, oldest first (never their secrets), and the next page's cursor.

    Raises ValueError for a cursor this store did not issue."""
    check_limit(limit)
    order = (webhooks.c.created_wall_ms, webhooks.c.id)
    query = select(*_PUBLIC).order_by(*order).limit(limit + 1)
    if cursor:
        query = query.where(after(order, decode_cursor(cursor, WEBHOOK_SORT)))
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return page(rows, limit, lambda r: (r["created_wall_ms"], r["id"]), WEBHOOK_SORT)


def get_webhook(store: Database, webhook_id: str) -> dict[str, Any] | None:
    if not _is_id(webhook_id):
        return None
    with store.engine.connect() as conn:
        row = conn.execute(select(*_PUBLIC).where(webhooks.c.id == webhook_id)).mappings().first()
    return dict(row) if row else None


def set_webhook_state(store: Database, webhook_id: str, state: str) -> dict[str, Any] | None:
    """Pause or resume; None when there is no such webhook. Pending deliveries of a paused
    webhook wait (they go out after resume); events while paused are not recorded for it."""
    if state not in WEBHOOK_STATES:
        raise ValueError(f"state must be one of {', '.join(WEBHOOK_STATES)}")
    if not _is_id(webhook_id):
        return None
    with store.write() as conn:
        done = conn.execute(update(webhooks).where(webhooks.c.id == webhook_id)
                            .values(state=state)).rowcount
    if not done:
        return None
    log.info("webhook_state id=%s state=%s", webhook_id, state)
    return get_webhook(store, webhook_id)


def delete_webhook(store: Database, webhook_id: str) -> bool:
    """Delete a webhook and its deliveries (also on SQLite, which ignores the cascade)."""
    if not _is_id(webhook_id):
        return False
    with store.write() as conn:
        conn.execute(delete(webhook_deliveries)
                     .where(webhook_deliveries.c.webhook_id == webhook_id))
        done = conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id)).rowcount
    if done:
        log.info("webhook_deleted id=%s", webhook_id)
    return bool(done)


# ---------------------------------------------------------------------------- deliveries


def list_deliveries(store: Database, webhook_id: str, state: str | None = None,
                    limit: int = 100, cursor: str | None = None,
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a webhook's deliveries, newest first (created_wall_ms desc, id desc),
    and the next page's cursor; ``state="dead"`` is the dead-letter list.

    Raises ValueError for a cursor this store did not issue."""
    check_limit(limit)
    if not _is_id(webhook_id):
        return [], None
    d = webhook_deliveries.c
    query = select(webhook_deliveries).where(d.webhook_id == webhook_id)
    if state is not None:
        query = query.where(d.state == state)
    if cursor:
        query = query.where(after((d.created_wall_ms, d.id),
                                  decode_cursor(cursor, DELIVERY_SORT), descending=True))
    query = query.order_by(d.created_wall_ms.desc(), d.id.desc()).limit(limit + 1)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return page(rows, limit, lambda r: (r["created_wall_ms"], r["id"]), DELIVERY_SORT)


def get_delivery(store: Database, webhook_id: str, delivery_id: str) -> dict[str, Any] | None:
    if not (_is_id(webhook_id) and _is_id(delivery_id)):
        return None
    with store.engine.connect() as conn:
        row = conn.execute(select(webhook_deliveries).where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.webhook_id == webhook_id)).mappings().first()
    return dict(row) if row else None


def retry_delivery(store: Database, webhook_id: str, delivery_id: str,
                   now_ms: int) -> dict[str, Any] | None:
    """Put a dead delivery back to pending with a fresh set of tries, due now.

    None when there is no such delivery; DeliveryStateError when it is not dead."""
    if not (_is_id(webhook_id) and _is_id(delivery_id)):
        return None
    with store.write() as conn:
        done = conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.webhook_id == webhook_id,
            webhook_deliveries.c.state == "dead",
        ).values(state="pending", attempts=0, next_attempt_wall_ms=now_ms,
                 lease_until_wall_ms=None)).rowcount
    row = get_delivery(store, webhook_id, delivery_id)
    if row is None:
        return None
    if not done:
        raise DeliveryStateError(f"delivery {delivery_id} is {row['state']}; only dead "
                                 "deliveries can be retried")
    log.info("webhook_delivery_retry id=%s webhook=%s", delivery_id, webhook_id)
    return row


def claim_due(store: Database, now_ms: int, lease_ms: int, limit: int) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due deliveries of active webhooks for this dispatcher.

    Each row comes with its webhook's ``url`` and ``secret`` and the ``lease`` it was claimed
    with, to pass to :func:`record_attempt`. The claim is a conditional UPDATE (still
    pending, lease free): when replicas race for a row exactly one UPDATE changes it.
    """
    d = webhook_deliveries.c
    due = (select(webhook_deliveries, webhooks.c.url, webhooks.c.secret)
           .join(webhooks, webhooks.c.id == d.webhook_id)
           .where(d.state == "pending", d.next_attempt_wall_ms <= now_ms,
                  or_(d.lease_until_wall_ms.is_(None), d.lease_until_wall_ms <= now_ms),
                  webhooks.c.state == "active")
           .order_by(d.next_attempt_wall_ms, d.created_wall_ms, d.id)
           .limit(limit))
    with store.engine.connect() as conn:  # a plain read: an idle poll takes no write lock
        candidates = [dict(r) for r in conn.execute(due).mappings()]
    if not candidates:
        return []
    lease = now_ms + lease_ms
    claimed = []
    with store.write() as conn:
        for row in candidates:
            won = conn.execute(update(webhook_deliveries).where(
                d.id == row["id"], d.state == "pending", d.attempts == row["attempts"],
                or_(d.lease_until_wall_ms.is_(None), d.lease_until_wall_ms <= now_ms),
            ).values(lease_until_wall_ms=lease)).rowcount
            if won:
                claimed.append({**row, "lease": lease})
    return claimed


def record_attempt(store: Database, delivery_id: str, lease: int, *, delivered: bool,
                   status_code: int | None, error: str | None, now_ms: int,
                   retry_at: int | None) -> bool:
    """Record one try of a claimed delivery and release the lease.

    Delivered, or pending again until ``retry_at``, or dead when ``retry_at`` is None.
    False when the lease was lost meanwhile (expired and claimed by another dispatcher, or
    the webhook was deleted): then that one's outcome counts, not ours.
    """
    values: dict[str, Any] = {"attempts": webhook_deliveries.c.attempts + 1,
                              "lease_until_wall_ms": None, "last_status_code": status_code,
                              "last_error": error}
    if delivered:
        values |= {"state": "delivered", "delivered_wall_ms": now_ms}
    elif retry_at is not None:
        values |= {"state": "pending", "next_attempt_wall_ms": retry_at}
    else:
        values |= {"state": "dead"}
    with store.write() as conn:
        done = conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.lease_until_wall_ms == lease).values(**values)).rowcount
    return bool(done)


def delivery_counts(store: Database) -> dict[tuple[str, str], int]:
    """{(webhook_id, state): deliveries} for /metrics."""
    query = (select(webhook_deliveries.c.webhook_id, webhook_deliveries.c.state, func.count())
             .group_by(webhook_deliveries.c.webhook_id, webhook_deliveries.c.state))
    with store.engine.connect() as conn:
        return {(w, s): int(n) for w, s, n in conn.execute(query)}


def prune_delivered(store: Database, before_ms: int) -> int:
    """Forget deliveries delivered before ``before_ms`` (wall clock); dead ones stay until
    retried or their webhook is deleted. Returns how many went."""
    with store.write() as conn:
        gone = conn.execute(delete(webhook_deliveries).where(
            webhook_deliveries.c.state == "delivered",
            webhook_deliveries.c.delivered_wall_ms < before_ms)).rowcount
    if gone:
        log.info("webhook_deliveries_pruned count=%s", gone)
    return int(gone)
