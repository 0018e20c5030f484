"""Alerts: list, detail, live stream (server-sent events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import SettingsDep, StoreDep
from api.schemas import AlertPage, AlertPublic, AlertStatus, Problem, Severity

router = APIRouter(prefix="/alerts", tags=["alerts"])

POLL_S = 0.5
KEEPALIVE_S = 15.0


@router.get("", response_model=AlertPage, responses={422: {"model": Problem}})
def list_alerts(
    store: StoreDep,
    settings: SettingsDep,
    vin: Annotated[str | None, Query(description="VIN or charger id")] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,  # noqa: A002 - API name
    severity: Severity | None = None,
    status: AlertStatus | None = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> AlertPage:
    if limit > settings.api_page_max:
        raise HTTPException(422, f"limit must be at most {settings.api_page_max}")
    try:
        rows, next_cursor = store.list_alerts(asset_id=vin, alert_type=type, severity=severity,
                                              status=status, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None
    return AlertPage(items=[AlertPublic(**r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "`event: alert` messages; `id` is resumable"}},
)
async def stream_alerts(
    request: Request,
    store: StoreDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
) -> StreamingResponse:
    """New and changed alerts as server-sent events.

    Each event's ``id`` is the position in the alert change log: reconnect with the
    ``Last-Event-ID`` header (browsers do it by themselves) to receive every change since,
    exactly once. Without it the stream starts at the current end.
    """
    if last_event_id is not None:
        try:
            start = int(last_event_id)
        except ValueError:
            raise HTTPException(422, "Last-Event-ID must be an event id this API sent") from None
    elif after is not None:
        start = after
    else:
        start = await asyncio.to_thread(store.last_event_id)
    return StreamingResponse(_events(request, store, start), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, store: StoreDep, position: int) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    last_sent = time.monotonic()
    while not await request.is_disconnected():
        events = await asyncio.to_thread(store.alert_events_after, position, 100)
        for event in events:
            position = event["id"]
            data = orjson.dumps({"change": event["change"], "alert": event["snapshot"]})
            yield b"id: %d\nevent: alert\ndata: %s\n\n" % (position, data)
            last_sent = time.monotonic()
        if not events:
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield b": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_S)


@router.get("/{alert_id}", response_model=AlertPublic, responses={404: {"model": Problem}})
def get_alert(alert_id: str, store: StoreDep) -> AlertPublic:
    row = store.get_alert(alert_id)
    if row is None:
        raise HTTPException(404, f"no alert with id {alert_id!r}")
    return AlertPublic(**row)
