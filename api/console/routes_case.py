"""Case detail (timeline, alerts with their evidence and signal plots) and the case actions.

The actions call the API's own route functions (``api.routes.cases``), so a transition, an
assignment or a note from the console goes through exactly the checks, errors and audit
trail of the REST call; the session's key is the actor.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.case_schemas import CaseAssign, CaseNoteCreate, CaseTransition
from api.console.evidence import alert_chart
from api.console.queries import case_deliveries
from api.console.render import back, render
from api.console.session import CaseWrite, Reader, Write
from api.routes import cases as case_routes
from storage.cases import CaseStore

router = APIRouter(include_in_schema=False)
MAX_CASE_ID = 2_147_483_647


def _detail(request: Request, case_id: int) -> dict[str, Any] | None:
    cases: CaseStore = request.app.state.cases
    case = cases.get_case(case_id)
    if case is None:
        return None
    store = request.app.state.store
    charts = {a["id"]: alert_chart(store, a) for a in case["alerts"]}
    first_wall = min((e["at_wall_ms"] for e in case["events"] if e["at_wall_ms"]),
                     default=None)
    deliveries = case_deliveries(store, case_id, [a["id"] for a in case["alerts"]],
                                 first_wall)
    return {"case": case, "charts": charts, "deliveries": deliveries}


def _case_id(raw: int) -> int:
    if not 1 <= raw <= MAX_CASE_ID:
        raise HTTPException(404, f"no case with id {raw}")
    return raw


@router.get("/console/cases/{case_id}")
async def case_page(request: Request, case_id: int, staff: Reader) -> Response:
    data = await run_in_threadpool(_detail, request, _case_id(case_id))
    if data is None:
        return render(request, "error.html", staff, status=404,
                      message=f"There is no case {case_id}.")
    return render(request, "case.html", staff, **data)


def _back(request: Request, write: Write, case_id: int, refusal: str | None = None
          ) -> RedirectResponse:
    return back(request, write.staff, f"/console/cases/{case_id}", refusal)


def _refusal(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _version(form: dict[str, str]) -> int | None:
    raw = form.get("version", "")
    return int(raw) if raw.isdigit() and len(raw) < 11 else None


@router.post("/console/cases/{case_id}/transition")
async def transition(request: Request, case_id: int, write: CaseWrite) -> Response:
    case_id = _case_id(case_id)
    form = write.form
    try:
        body = CaseTransition(to=form.get("to", ""), note=form.get("note") or None,
                              version=_version(form))
    except ValidationError as exc:
        return _back(request, write, case_id, _refusal(exc))
    cases: CaseStore = request.app.state.cases
    try:
        result = await run_in_threadpool(case_routes.transition_case, case_id, body, request,
                                         cases, write.staff.principal)
    except HTTPException as exc:
        return _back(request, write, case_id, str(exc.detail))
    if isinstance(result, JSONResponse):  # the route's 409 problem: an illegal move
        return _back(request, write, case_id, str(orjson.loads(bytes(result.body)).get("detail")))
    return _back(request, write, case_id)


@router.post("/console/cases/{case_id}/notes")
async def note(request: Request, case_id: int, write: CaseWrite) -> Response:
    case_id = _case_id(case_id)
    try:
        body = CaseNoteCreate(text=write.form.get("text", ""))
    except ValidationError as exc:
        return _back(request, write, case_id, _refusal(exc))
    try:
        await run_in_threadpool(case_routes.add_note, case_id, body, request.app.state.cases,
                                write.staff.principal)
    except HTTPException as exc:
        return _back(request, write, case_id, str(exc.detail))
    return _back(request, write, case_id)


@router.post("/console/cases/{case_id}/assign")
async def assign(request: Request, case_id: int, write: CaseWrite) -> Response:
    case_id = _case_id(case_id)
    who = write.form.get("assignee", "").strip()
    try:
        body = CaseAssign(assignee=who or None, version=_version(write.form))
    except ValidationError as exc:
        return _back(request, write, case_id, _refusal(exc))
    try:
        await run_in_threadpool(case_routes.assign_case, case_id, body,
                                request.app.state.cases, write.staff.principal)
    except HTTPException as exc:
        return _back(request, write, case_id, str(exc.detail))
    return _back(request, write, case_id)
