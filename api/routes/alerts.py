"""Alerts: list, detail, live stream (server-sent events)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import Viewer, still_allowed
from api.deps import PagingDep, StoreDep, bad_cursor
from api.problems import invalid
from api.schemas import AlertPage, AlertPublic, AlertStatus, Problem
from storage.store import Store
from vocab.severity import Severity

log = logging.getLogger(__name__)
router = APIRouter(prefix="/alerts", tags=["alerts"])

_MAX_MS = 2**63 - 1
POLL_S = 0.1  # how often the stream looks for new alert events
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # the reconnect delay the stream suggests to EventSource clients
# How often an open stream looks its key up again: a revoked key (or one whose role no
# longer reads) stops receiving within this bound, not when the client reconnects.
KEY_RECHECK_S = 3.0
BATCH = 100  # events read per poll


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
    return StreamingResponse(_events(request, store, start), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, store: Store, position: int) -> AsyncIterator[bytes]:
    """Poll the change log (in a thread) until the client goes away."""
    yield b"retry: %d\n\n" % RETRY_MS
    last_sent = last_check = time.monotonic()
    try:
        while not await request.is_disconnected():
            if time.monotonic() - last_check >= KEY_RECHECK_S:
                last_check = time.monotonic()
                try:
                    allowed = await still_allowed(request, "read")
                except Exception as exc:  # a restarting database is no reason to cut
                    log.warning("alert_stream_key_check_failed error=%r", exc)
                    allowed = True
                if not allowed:
                    log.info("alert_stream_key_invalid client=%s", request.client)
                    return
            try:
                events = await asyncio.to_thread(store.alert_events_after, position, BATCH)
            except Exception as exc:  # a busy or restarting database: keep the stream open
                log.warning("alert_stream_poll_failed error=%r", exc)
                events = []
            for event in events:
                position = event["id"]
                data = orjson.dumps({"change": event["change"], "alert": event["snapshot"]})
                yield b"id: %d\nevent: alert\ndata: %s\n\n" % (position, data)
                last_sent = time.monotonic()
            if len(events) < BATCH:
                if time.monotonic() - last_sent >= KEEPALIVE_S:
                    yield b": keepalive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(POLL_S)
    finally:
        log.info("alert_stream_closed client=%s position=%s", request.client, position)


@router.get("/{alert_id}", response_model=AlertPublic, responses={404: {"model": Problem}})
def get_alert(alert_id: str, store: StoreDep, _who: Viewer) -> AlertPublic:
    """One alert with its evidence and recommended action."""
    row = store.get_alert(alert_id)
    if row is None:
        raise HTTPException(404, f"no alert with id {alert_id!r}")
    return AlertPublic(**row)
