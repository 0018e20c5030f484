"""The case queue: open cases by due time, filtered, one bounded page at a time, refreshed
live from the alert change log (the same log ``GET /alerts/stream`` serves)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from api.alert_stream import alert_events
from api.console.queries import case_headlines
from api.console.render import SECURITY_HEADERS, render
from api.console.session import Reader, current_staff
from care.casework import OPEN_STATES
from storage.cases import CaseStore
from vocab.severity import SEVERITIES as ALL_SEVERITIES

router = APIRouter(include_in_schema=False)

PAGE = 50  # cases per queue page: what a person scans, and what keeps the page small
SEVERITIES = list(reversed(ALL_SEVERITIES))  # worst first


@dataclass(frozen=True, slots=True)
class Filters:
    state: str  # "open" or one open state
    severity: str
    assignee: str  # "", "none" (unassigned) or a name
    overdue: bool
    asset: str
    cursor: str

    @classmethod
    def of(cls, request: Request) -> Filters:
        q = request.query_params
        state = q.get("state", "open")
        severity = q.get("severity", "")
        return cls(state=state if state in OPEN_STATES else "open",
                   severity=severity if severity in SEVERITIES else "",
                   assignee=q.get("assignee", "").strip()[:128],
                   overdue=q.get("overdue") == "1",
                   asset=q.get("asset", "").strip()[:64],
                   cursor=q.get("cursor", "")[:200])

    def query(self, **override: Any) -> str:
        """The query string of these filters (``override`` replaces some), for links."""
        values = {"state": self.state, "severity": self.severity, "assignee": self.assignee,
                  "overdue": "1" if self.overdue else "", "asset": self.asset,
                  "cursor": self.cursor} | override
        return urlencode({k: v for k, v in values.items() if v})


def _queue(cases: CaseStore, f: Filters) -> dict[str, Any]:
    try:
        rows, next_cursor, fleet_now = cases.list_cases(
            state=None if f.state == "open" else f.state, open_only=True,
            severity=f.severity or None,
            assignee=f.assignee if f.assignee not in ("", "none") else None,
            unassigned=f.assignee == "none", asset_id=f.asset or None,
            overdue=True if f.overdue else None, sort="due", limit=PAGE,
            cursor=f.cursor or None)
        error = None
    except ValueError:
        rows, next_cursor, fleet_now = [], None, cases.store.fleet_now_ms()
        error = "That page link is stale; showing the first page."
    headlines = case_headlines(cases.store, [r["id"] for r in rows])
    return {"rows": rows, "next_cursor": next_cursor, "fleet_now": fleet_now,
            "headlines": headlines, "filters": f, "error": error,
            "states": OPEN_STATES, "severities": SEVERITIES}


@router.get("/console/queue")
async def queue(request: Request, staff: Reader) -> Response:
    data = await run_in_threadpool(_queue, request.app.state.cases, Filters.of(request))
    return render(request, "queue.html", staff, **data)


@router.get("/console/queue/rows")
async def queue_rows(request: Request, staff: Reader) -> Response:
    """The queue's table alone: what the filters and live updates swap in."""
    filters = Filters.of(request)
    data = await run_in_threadpool(_queue, request.app.state.cases, filters)
    response = render(request, "_queue_table.html", staff, **data)
    if request.headers.get("HX-Request") and request.headers.get("HX-Trigger") == "queue-filters":
        # The filtered queue gets its own address: the back button and bookmarks keep it.
        response.headers["HX-Replace-Url"] = f"/console/queue?{filters.query()}"
    return response


@router.get("/console/stream")
async def stream(request: Request, staff: Reader) -> StreamingResponse:
    """Alert changes as server-sent events for the page's script, from the current end of
    the change log on (``Last-Event-ID`` resumes); the session is checked again every few
    seconds, so signing out or revoking the key ends the stream."""
    store = request.app.state.store
    last = request.headers.get("last-event-id", "")
    start = int(last) if last.isdigit() else await asyncio.to_thread(store.last_event_id)

    async def signed_in() -> bool:
        return await current_staff(request) is not None

    events = alert_events(request, store, start, name="console_stream", allowed=signed_in,
                          data=_summary)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})


def _summary(event: dict[str, Any]) -> bytes:
    a = event["snapshot"]
    return orjson.dumps({"change": event["change"], "id": a["id"], "type": a["type"],
                         "severity": a["severity"], "asset_kind": a["asset_kind"],
                         "asset_id": a["asset_id"], "title": a["title"],
                         "at_event_ms": event["at_event_ms"]})


