"""Alerts into care cases, on the alert write path (``Store.upsert_alert`` calls the hook in
the same transaction as the alert itself, so an alert never exists without its case).

* Every alert belongs to exactly one case: the first change of an alert the store has not
  linked yet (normally its creation) joins the asset's open case, or opens a new one
  (state ``new``, the alert's severity, ``opened_event_ms`` = the alert's
  ``first_seen_event_ms``).
* A case's severity is the worst severity its alerts reached (see ``casework.escalated``);
  escalation moves ``due_event_ms`` to ``opened_event_ms`` + the SLA of the new severity.
* A closed case stays closed: its alerts' later updates (a reopening too) change nothing, and
  a new alert of the asset opens a new case.
* A consequence (an alert with ``root_cause_id``) joins its cause's case while that case is
  open (the asset's open case, as causes and consequences share an asset); its audit entry
  names the cause. It can still raise the case's severity: a car that now also lost
  communication is more urgent.
* Audit entries are written by actor ``system`` with the alert's event time
  (``at_event_ms``) and the wall time of the write (``at_wall_ms``, like the case's
  ``updated_wall_ms``).
* Idempotent: ``case_alerts.alert_id`` is the primary key and the link is looked up first,
  so a redelivered alert (which ``upsert_alert`` already turns into "no change") can never
  open a second case or link twice.
* Every audit entry (``record``, also used by the staff actions in ``storage.cases``) is
  announced to webhooks as ``case.<action>`` through the outbox, in the same transaction.

No import of ``storage.store`` here: the store imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from care import casework
from care.webhooks import matches
from storage.fleet_clock import fleet_now_ms
from storage.models import case_alerts, case_events, cases, webhooks
from storage.outbox import enqueue

log = logging.getLogger(__name__)

SYSTEM = "system"


def public_case(row: Any, fleet_now_event_ms: int | None) -> dict[str, Any]:
    """A case row as the API shows it: with ``overdue`` (open and due before the fleet's
    event-time now). Plain str keys: SQLAlchemy's are ``quoted_name``s, which orjson (the
    JSON columns' serializer, e.g. the webhook outbox's payload) refuses."""
    case = {str(key): value for key, value in row.items()}
    case["overdue"] = (fleet_now_event_ms is not None
                       and case["state"] not in casework.TERMINAL
                       and case["due_event_ms"] < fleet_now_event_ms)
    return case


def record(conn: Connection, case_id: int, at_event_ms: int | None, at_wall_ms: int,
           actor: str, action: str, from_state: str | None = None,
           to_state: str | None = None, **detail: Any) -> int:
    """Append one audit entry and announce it to webhooks; return its id.

    ``at_event_ms`` is the event time of the alert change a system entry records (None for
    staff actions, which have no event time); ``at_wall_ms`` when it was written.
    Call it after the case row is updated: the webhook payload carries the case as it is
    after the change.
    """
    result = conn.execute(case_events.insert().values(
        case_id=case_id, at_event_ms=at_event_ms, at_wall_ms=at_wall_ms, actor=actor,
        action=action, from_state=from_state, to_state=to_state, detail=detail))
    event_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    _announce(conn, {"id": event_id, "case_id": case_id, "at_event_ms": at_event_ms,
                     "at_wall_ms": at_wall_ms, "actor": actor, "action": action,
                     "from_state": from_state, "to_state": to_state, "detail": detail})
    return event_id


def _announce(conn: Connection, entry: dict[str, Any]) -> None:
    """``case.<action>`` to the webhooks that want it: ``{"change", "case", "event"}``.

    The cheap question first (one small query): most audit entries, on the alert write path
    too, have no webhook that wants them.
    """
    event_type = f"case.{entry['action']}"
    filters = conn.execute(select(webhooks.c.events).where(webhooks.c.state == "active"))
    if not any(matches(events, event_type) for (events,) in filters):
        return
    row = conn.execute(select(cases).where(cases.c.id == entry["case_id"])).mappings().one()
    fleet_now = fleet_now_ms(conn)
    enqueue(conn, event_type, {"change": entry["action"], "case": public_case(row, fleet_now),
                               "event": entry}, now_wall_ms=entry["at_wall_ms"])


def open_case_of(conn: Connection, asset_kind: str, asset_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(cases).where(
        cases.c.asset_kind == asset_kind, cases.c.asset_id == asset_id,
        cases.c.state.not_in(sorted(casework.TERMINAL)))).mappings().first()
    return dict(row) if row else None


def on_alert_change(conn: Connection, change: str | None, alert: Mapping[str, Any],
                    sla_hours: Mapping[str, float], now_wall_ms: int) -> int | None:
    """Keep the cases in step with one alert change; return the alert's case id.

    ``change`` is what ``upsert_alert`` reports ("created", "updated", "resolved",
    "reopened"; None, a duplicate, changes nothing); ``alert`` is the alert row as stored;
    ``now_wall_ms`` the wall time of this write.
    """
    if change is None:
        return None
    linked = conn.execute(select(cases).join(case_alerts, case_alerts.c.case_id == cases.c.id)
                          .where(case_alerts.c.alert_id == alert["id"])).mappings().first()
    if linked is not None:
        if linked["state"] not in casework.TERMINAL:
            _escalate(conn, dict(linked), alert, alert["last_seen_event_ms"], sla_hours,
                      now_wall_ms)
        return int(linked["id"])
    # Not linked yet: normally a created alert; also an alert stored before cases existed.
    at = alert["first_seen_event_ms"] if change == "created" else alert["last_seen_event_ms"]
    root_cause_id = alert.get("root_cause_id")
    case = (_open_case_of_alert(conn, root_cause_id) if root_cause_id is not None else None) \
        or open_case_of(conn, alert["asset_kind"], alert["asset_id"])
    if case is None:
        case = _open(conn, alert, sla_hours, now_wall_ms)
    conn.execute(case_alerts.insert().values(alert_id=alert["id"], case_id=case["id"]))
    case["version"] += 1
    conn.execute(update(cases).where(cases.c.id == case["id"])
                 .values(version=case["version"], updated_wall_ms=now_wall_ms))
    record(conn, case["id"], at, now_wall_ms, SYSTEM, "alert_linked", alert_id=alert["id"],
           alert_type=alert["type"], severity=alert["severity"], root_cause_id=root_cause_id)
    _escalate(conn, case, alert, at, sla_hours, now_wall_ms)
    return int(case["id"])


def _open_case_of_alert(conn: Connection, alert_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(cases).join(case_alerts, case_alerts.c.case_id == cases.c.id)
                       .where(case_alerts.c.alert_id == alert_id,
                              cases.c.state.not_in(sorted(casework.TERMINAL)))).mappings().first()
    return dict(row) if row else None


def _open(conn: Connection, alert: Mapping[str, Any], sla_hours: Mapping[str, float],
          now_wall_ms: int) -> dict[str, Any]:
    opened = alert["first_seen_event_ms"]
    values = {
        "asset_kind": alert["asset_kind"], "asset_id": alert["asset_id"], "state": "new",
        "severity": alert["severity"], "assignee": None, "opened_event_ms": opened,
        "due_event_ms": casework.due_at(opened, alert["severity"], sla_hours),
        "closed_wall_ms": None, "updated_wall_ms": now_wall_ms, "version": 1,
    }
    result = conn.execute(cases.insert().values(**values))
    case = {"id": int(result.inserted_primary_key[0]), **values}  # type: ignore[index]
    record(conn, case["id"], opened, now_wall_ms, SYSTEM, "opened", None, "new",
           alert_id=alert["id"], severity=case["severity"], due_event_ms=case["due_event_ms"])
    log.info("case_opened id=%s asset=%s severity=%s due_event_ms=%s", case["id"],
             alert["asset_id"], case["severity"], case["due_event_ms"])
    return case


def _escalate(conn: Connection, case: dict[str, Any], alert: Mapping[str, Any], at: int,
              sla_hours: Mapping[str, float], now_wall_ms: int) -> None:
    severity = casework.escalated(case["severity"], alert["severity"])
    if severity == case["severity"]:
        return
    due = casework.due_at(case["opened_event_ms"], severity, sla_hours)
    conn.execute(update(cases).where(cases.c.id == case["id"]).values(
        severity=severity, due_event_ms=due, updated_wall_ms=now_wall_ms,
        version=case["version"] + 1))
    record(conn, case["id"], at, now_wall_ms, SYSTEM, "severity_changed", alert_id=alert["id"],
           severity_from=case["severity"], severity_to=severity,
           due_from_event_ms=case["due_event_ms"], due_to_event_ms=due)
    log.info("case_escalated id=%s severity=%s due_event_ms=%s", case["id"], severity, due)
    case.update(severity=severity, due_event_ms=due, updated_wall_ms=now_wall_ms,
                version=case["version"] + 1)
