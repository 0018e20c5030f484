"""Chargers: the list with connector status, and one charger's sessions and faults."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.auth import Viewer
from api.deps import SettingsDep, StoreDep
from api.problems import invalid
from api.schemas import (
    AlertPublic,
    ChargerPage,
    ChargerPublic,
    ChargerSummary,
    ChargingSessionPublic,
    ConnectorStatus,
    FaultShare,
    Problem,
    SignalPublic,
)
from ingest.contract import CHARGER_ID_RE
from storage import views

router = APIRouter(prefix="/chargers", tags=["chargers"])


@router.get("", response_model=ChargerPage, responses={422: {"model": Problem}})
def list_chargers(
    store: StoreDep,
    settings: SettingsDep,
    _who: Viewer,
    limit: Annotated[int, Query(ge=1, description="page size (at most api_page_max)")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ChargerPage:
    """Chargers by id: each connector's latest status, last report, open alerts.
    Keyset pagination: follow ``next_cursor`` until it is null."""
    if limit > settings.api_page_max:
        raise invalid("query", "limit", f"Input should be less than or equal to "
                      f"{settings.api_page_max}", "less_than_equal")
    try:
        rows, next_cursor = views.list_chargers(store, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise invalid("query", "cursor", str(exc)) from None
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
        first_seen=detail["first_seen"],
        last_seen=detail["last_seen"],
        fleet_now=now,
        connectors=[ConnectorStatus(**c) for c in detail["connectors"]],
        signals=[SignalPublic(path=s["path"], value=s["value"], ts=s["ts"],
                              age_s=None if now is None else (now - s["ts"]) / 1000)
                 for s in detail["signals"]],
        open_alerts=[AlertPublic(**a) for a in detail["open_alerts"]],
        alerts=[AlertPublic(**a) for a in detail["alerts"]],
        recent_sessions=[ChargingSessionPublic(**s) for s in detail["recent_sessions"]],
        faults=[ChargingSessionPublic(**s) for s in detail["faults"]],
        attributed_fault_share=FaultShare(**detail["attributed_fault_share"]),
    )
