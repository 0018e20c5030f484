"""Chargers: the list with connector status, and one charger's sessions and faults."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.auth import Viewer
from api.deps import PagingDep, StoreDep, bad_cursor
from api.problems import invalid
from api.routes.vehicles import signal_public
from api.schemas import (
    AlertPublic,
    ChargerPage,
    ChargerPublic,
    ChargerSummary,
    ChargingSessionPublic,
    ConnectorStatus,
    FaultShare,
    Problem,
)
from ingest.contract import CHARGER_ID_RE
from storage import views

router = APIRouter(prefix="/chargers", tags=["chargers"])


@router.get("", response_model=ChargerPage, responses={422: {"model": Problem}})
def list_chargers(
    store: StoreDep,
    paging: PagingDep,
    _who: Viewer,
) -> ChargerPage:
    """Chargers by id: each connector's latest status, last report, open alerts.
    Keyset pagination: follow ``next_cursor`` until it is null."""
    try:
        rows, next_cursor = views.list_chargers(store, limit=paging.limit, cursor=paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return ChargerPage(items=[ChargerSummary(**r) for r in rows], next_cursor=next_cursor)


@router.get("/{charger_id}", response_model=ChargerPublic,
            responses={404: {"model": Problem}, 422: {"model": Problem}})
def get_charger(
    charger_id: str,
    store: StoreDep,
    _who: Viewer,
    sessions: Annotated[int, Query(ge=1, le=200, description="recent sessions to list")] = 20,
) -> ChargerPublic:
    """Latest status, recent charging sessions, sessions that ended abnormally, alerts, and
    the share of abnormal sessions attributable to this charger (``rule`` says how)."""
    if not CHARGER_ID_RE.fullmatch(charger_id):
        raise invalid("path", "charger_id", f"{charger_id!r} is not a charger id (1-48 of "
                      "A-Z, a-z, 0-9, '.', '_', '-')", "string_pattern_mismatch")
    detail = views.charger_detail(store, charger_id, sessions=sessions)
    if detail is None:
        raise HTTPException(404, f"charger {charger_id} has never reported")
    now = store.fleet_now_ms()
    return ChargerPublic(
        charger_id=charger_id,
        first_seen_event_ms=detail["first_seen_event_ms"],
        last_seen_event_ms=detail["last_seen_event_ms"],
        fleet_now_event_ms=now,
        connectors=[ConnectorStatus(**c) for c in detail["connectors"]],
        signals=[signal_public(s, now) for s in detail["signals"]],
        open_alerts=[AlertPublic(**a) for a in detail["open_alerts"]],
        alerts=[AlertPublic(**a) for a in detail["alerts"]],
        recent_sessions=[ChargingSessionPublic(**s) for s in detail["recent_sessions"]],
        faults=[ChargingSessionPublic(**s) for s in detail["faults"]],
        attributed_fault_share=FaultShare(**detail["attributed_fault_share"]),
    )
