"""Care cases: list (work queues, overdue), detail with audit trail, and the staff actions
(transition, assign, note). Reads need a viewer key, actions an agent key; the key's name is
the actor in the audit trail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from api.auth import Agent, Viewer
from api.case_schemas import (
    CaseAssign,
    CaseDetail,
    CaseEventPublic,
    CaseNoteCreate,
    CasePage,
    CasePublic,
    CaseTransition,
    TransitionProblem,
)
from api.deps import PagingDep, bad_cursor
from api.problems import instance, invalid, problem
from api.schemas import Problem
from care.casework import CaseState, IllegalTransition, allowed
from storage.cases import CaseConflict, CaseNotFound, CaseSort, CaseStore, InvalidOutcomes
from vocab.severity import Severity

router = APIRouter(prefix="/cases", tags=["cases"])


def get_cases(request: Request) -> CaseStore:
    return request.app.state.cases  # type: ignore[no-any-return]


CasesDep = Annotated[CaseStore, Depends(get_cases)]
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot compare text with NUL in it: a 422, not a 500
CaseId = Annotated[int, Path(ge=1, le=2_147_483_647, description="case id")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem}}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND, 409: {"model": Problem}, 422: {"model": Problem}}


@router.get("", response_model=CasePage, responses={422: {"model": Problem}})
def list_cases(
    cases: CasesDep,
    paging: PagingDep,
    _who: Viewer,
    state: CaseState | None = None,
    assignee: Annotated[str | None, Query(max_length=128, pattern=_NO_NUL)] = None,
    unassigned: Annotated[bool, Query(description="only cases nobody is assigned")] = False,
    severity: Severity | None = None,
    asset_id: Annotated[str | None, Query(max_length=64, pattern=_NO_NUL,
                                          description="VIN or charger id")] = None,
    overdue: Annotated[bool | None, Query(
        description="true: open cases past due_event_ms (by the fleet's event-time now); "
                    "false: every other case")] = None,
    sort: Annotated[CaseSort, Query(
        description="newest: latest opened first; due: earliest due_event_ms first (a work "
                    "queue)")] = "newest",
) -> CasePage:
    """Cases one page at a time; follow ``next_cursor`` until it is null.

    With the default sort, cases opened while you page sort before the cursor, so pages never
    repeat or skip. "Overdue" compares ``due_event_ms`` with ``fleet_now_event_ms``, the
    newest event time any vehicle or charger reported (the same clock as the alerts), not the
    wall clock.
    """
    try:
        rows, next_cursor, fleet_now = cases.list_cases(
            state=state, assignee=assignee, unassigned=unassigned, severity=severity,
            asset_id=asset_id, overdue=overdue, sort=sort, limit=paging.limit,
            cursor=paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return CasePage(items=[CasePublic(**r) for r in rows], next_cursor=next_cursor,
                    fleet_now_event_ms=fleet_now)


@router.get("/{case_id}", response_model=CaseDetail, responses=_NOT_FOUND)
def get_case(case_id: CaseId, cases: CasesDep, _who: Viewer) -> CaseDetail:
    """A case with its alerts (and their outcome labels), its audit trail and the
    transitions allowed from its current state."""
    case = cases.get_case(case_id)
    if case is None:
        raise HTTPException(404, f"no case with id {case_id}")
    return CaseDetail(**case)


@router.post("/{case_id}/transition", response_model=CaseDetail,
             responses={**_WRITE_ERRORS, 409: {"model": TransitionProblem}})
def transition_case(case_id: CaseId, body: CaseTransition, request: Request,
                    cases: CasesDep, who: Agent) -> CaseDetail | JSONResponse:
    """Move the case along its workflow (see ``allowed_transitions`` of the case).

    Main path: new → acknowledged → owner_contacted → service_booked → resolved; any open
    case may end as false_positive or no_action_needed. An illegal move is a 409 whose
    ``allowed`` lists the legal ones. When the case ends, its alerts are labelled for
    ``GET /quality``: resolved confirms them, false_positive refutes them, no_action_needed
    labels none (it says nothing about whether the detector was right); ``outcomes``
    overrides the label per alert.
    """
    try:
        case = cases.transition_case(case_id, body.to, actor=who.name, note=body.note,
                                     outcomes=body.outcomes, expected_version=body.version)
    except CaseNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except IllegalTransition as exc:
        return problem(409, str(exc), instance(request), allowed=list(exc.allowed))
    except CaseConflict as exc:
        return problem(409, str(exc), instance(request), allowed=list(allowed(exc.state)))
    except InvalidOutcomes as exc:
        raise invalid("body", "outcomes", str(exc)) from None
    return CaseDetail(**case)


@router.post("/{case_id}/assign", response_model=CaseDetail, responses=_WRITE_ERRORS)
def assign_case(case_id: CaseId, body: CaseAssign, cases: CasesDep, who: Agent) -> CaseDetail:
    """Give an open case to someone (``null``: to nobody). A closed case is a 409."""
    try:
        case = cases.assign_case(case_id, body.assignee, actor=who.name,
                                 expected_version=body.version)
    except CaseNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except CaseConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return CaseDetail(**case)


@router.post("/{case_id}/notes", status_code=201, response_model=CaseEventPublic,
             responses={**_NOT_FOUND, 422: {"model": Problem}})
def add_note(case_id: CaseId, body: CaseNoteCreate, cases: CasesDep,
             who: Agent) -> CaseEventPublic:
    """Add a note to the case's audit trail (closed cases too)."""
    try:
        entry = cases.add_note(case_id, body.text, actor=who.name)
    except CaseNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return CaseEventPublic(**entry)
