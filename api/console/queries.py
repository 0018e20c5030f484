"""The few reads only the console needs, each bounded: the alert titles of a queue page,
a car's charging sessions, and the webhooks sent about one case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from storage.models import alerts, case_alerts, charging_sessions, webhook_deliveries
from storage.store import Store

DELIVERY_SCAN = 500  # newest case/alert deliveries looked at for one case


def case_headlines(store: Store, case_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per case: its newest alert's type and title, and how many alerts it has."""
    if not case_ids:
        return {}
    ca, a = case_alerts.c, alerts.c
    newest = (select(ca.case_id, func.max(a.last_seen_event_ms).label("last"),
                     func.count().label("n"))
              .join(alerts, a.id == ca.alert_id)
              .where(ca.case_id.in_(list(case_ids))).group_by(ca.case_id).subquery())
    query = (select(ca.case_id, a.type, a.title, newest.c.n)
             .join(alerts, a.id == ca.alert_id)
             .join(newest, (newest.c.case_id == ca.case_id)
                   & (newest.c.last == a.last_seen_event_ms)))
    out: dict[int, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for case_id, kind, title, n in conn.execute(query):
            out.setdefault(int(case_id), {"type": kind, "title": title, "alerts": int(n)})
    return out


def vehicle_sessions(store: Store, vin: str, limit: int = 10) -> list[dict[str, Any]]:
    """The car's newest charging sessions, at any charger."""
    s = charging_sessions.c
    query = (select(s.charger_id, s.connector, s.start_event_ms, s.end_event_ms, s.end_status,
                    s.error_code, s.abnormal, s.energy_wh, s.max_power_w)
             .where(s.vin == vin).order_by(s.start_event_ms.desc()).limit(limit))
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def case_deliveries(store: Store, case_id: int, alert_ids: Sequence[str],
                    since_wall_ms: int | None) -> list[dict[str, Any]]:
    """Webhook deliveries about this case or its alerts, oldest first, among the newest
    ``DELIVERY_SCAN`` written since the case's first audit entry."""
    d = webhook_deliveries.c
    query = (select(d.id, d.webhook_id, d.event_type, d.payload, d.state, d.attempts,
                    d.last_status_code, d.created_wall_ms, d.delivered_wall_ms)
             .order_by(d.created_wall_ms.desc()).limit(DELIVERY_SCAN))
    if since_wall_ms is not None:
        query = query.where(d.created_wall_ms >= since_wall_ms)
    wanted = set(alert_ids)
    found = []
    with store.engine.connect() as conn:
        for row in conn.execute(query).mappings():
            payload = row["payload"] or {}
            case = payload.get("case") or {}
            alert = payload.get("alert") or {}
            if case.get("id") == case_id or alert.get("id") in wanted:
                found.append({k: row[k] for k in row if k != "payload"})
    return found[::-1]
