"""Alerts: list, detail, live stream (server-sent events)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.alert_stream import alert_events
from api.auth import Viewer, still_allowed
from api.deps import PagingDep, StoreDep, bad_cursor
from api.problems import invalid
from api.schemas import AlertPage, AlertPublic, AlertStatus, Problem
from vocab.severity import Severity

log = logging.getLogger(__name__)
router = APIRouter(prefix="/alerts", tags=["alerts"])

_MAX_MS = 2**63 - 1


AlertSort = Literal["-last_seen_event_ms", "last_seen_event_ms", "-first_seen_event_ms",
                    "first_seen_event_ms"]


@router.get("", response_model=AlertPage, responses={422: {"model": Problem}})
def list_alerts(
    store: StoreDep,
    paging: PagingDep,
    _who: Viewer,
    vin: Annotated[str | None, Query(max_length=64, description="alerts of this vehicle")] = None,
    charger: Annotated[str | None, Query(max_length=64,
                                         description="alerts of this charger")] = None,
    type: Annotated[str | None, Query(max_length=64,  # noqa: A002 - the API's name
                                      description="alert type, e.g. weak_12v_battery")] = None,
    severity: Severity | None = None,
    status: AlertStatus | None = None,
    since_event_ms: Annotated[int | None, Query(ge=0, le=_MAX_MS, description=(
        "event time, epoch ms: only alerts still active at or after it "
        "(last_seen_event_ms >= since_event_ms)"))] = None,
    until_event_ms: Annotated[int | None, Query(ge=0, le=_MAX_MS, description=(
        "event time, epoch ms: only alerts raised at or before it "
        "(first_seen_event_ms <= until_event_ms)"))] = None,
    sort: Annotated[AlertSort, Query(description="order; '-' = descending")
                    ] = "-last_seen_event_ms",
    root_cause_id: Annotated[str | None, Query(max_length=36, description=(
        "only the consequences of this alert (alerts linked to it as their root cause)"))
    ] = None,
    linked: Annotated[bool | None, Query(description=(
        "false: hide consequences of another open problem (one row per problem); "
        "true: only the consequences"))] = None,
) -> AlertPage:
    """Alerts, newest activity first by default, one page at a time.

    Pagination is by keyset: follow ``next_cursor`` (with the same filters and sort) until it
    is null. Alerts that arrive meanwhile never make later pages repeat or skip an alert.
    """
    if vin is not None and charger is not None:
        raise invalid("query", "charger", "give vin or charger, not both")
    if since_event_ms is not None and until_event_ms is not None \
            and until_event_ms < since_event_ms:
        raise invalid("query", "until_event_ms", f"until_event_ms={until_event_ms} is before "
                      f"since_event_ms={since_event_ms}")
    kind, asset_id = ("vehicle", vin) if vin is not None else (
        ("charger", charger) if charger is not None else (None, None))
    try:
        rows, next_cursor = store.list_alerts(
            asset_id=asset_id, asset_kind=kind, alert_type=type, severity=severity,
            status=status, since_event_ms=since_event_ms, until_event_ms=until_event_ms,
            sort=sort, limit=paging.limit, cursor=paging.cursor, root_cause_id=root_cause_id,
            linked=linked)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return AlertPage(items=[AlertPublic(**r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "`event: alert` messages; `id` is resumable"},
               422: {"model": Problem}},
)
async def stream_alerts(
    request: Request,
    store: StoreDep,
    _who: Viewer,
    last_event_id: Annotated[str | None, Header(
        description="resume after this event id (EventSource sends it on reconnect)")] = None,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
) -> StreamingResponse:
    """New and changed alerts as server-sent events.

    Each message is ``id: <event id>``, ``event: alert``, ``data: {"change": "created" |
    "linked" | "updated" | "reopened" | "resolved" | "superseded", "alert": {...}}``
    (``linked``: created as the consequence of another alert, see ``root_cause_id``). The id
    is the position in the alert change log: reconnect with the ``Last-Event-ID`` header
    (browsers do it by themselves) or ``?after=`` to receive every change since, exactly once.
    Without either the stream starts at the current end. A ``: keepalive`` comment comes
    every 15 s when idle. The key is checked again every few seconds: the stream ends soon
    after the key is revoked or its role no longer reads.
    """
    if last_event_id is not None:
        try:
            start = int(last_event_id)
            if start < 0:
                raise ValueError
        except ValueError:
            raise invalid("header", "last-event-id",
                          "Last-Event-ID must be an event id this API sent") from None
    elif after is not None:
        start = after
    else:
        start = await asyncio.to_thread(store.last_event_id)
    log.info("alert_stream_open client=%s after=%s", request.client, start)
    events = alert_events(request, store, start, name="alert_stream", data=_data,
                          allowed=lambda: still_allowed(request, "read"))
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _data(event: dict[str, Any]) -> bytes:
    return orjson.dumps({"change": event["change"], "alert": event["snapshot"]})


@router.get("/{alert_id}", response_model=AlertPublic, responses={404: {"model": Problem}})
def get_alert(alert_id: str, store: StoreDep, _who: Viewer) -> AlertPublic:
    """One alert with its evidence and recommended action."""
    row = store.get_alert(alert_id)
    if row is None:
        raise HTTPException(404, f"no alert with id {alert_id!r}")
    return AlertPublic(**row)
