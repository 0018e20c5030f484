"""Remote support commands: staff (role agent or above; clear_dtc admin only) ask a car for a
snapshot, a 12 V battery test, a wake-up or to clear its trouble codes, from a case or from
the vehicle. The worker signs and sends them; the car's answers come back through the
bridge. Every step is in the command's own trail and in its case's."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse

from api.auth import Agent, Viewer
from api.deps import StoreDep
from api.problems import instance, invalid, problem
from api.remote_schemas import (
    CommandCreate,
    CommandDetail,
    CommandList,
    CommandPublic,
    VehicleCommandCreate,
)
from api.schemas import Problem
from care.commands import DEFAULT_TTL_MS, required_permission
from storage import commands as command_store
from storage.keys import Principal

router = APIRouter(tags=["commands"])

Vin = Annotated[str, Path(pattern=r"^[A-HJ-NPR-Z0-9]{17}$", description="the car's VIN")]
CaseId = Annotated[int, Path(ge=1, le=2_147_483_647, description="case id")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem},
    429: {"model": Problem}}


def _request(request: Request, response: Response, store: Any, who: Principal, vin: str,
             body: CommandCreate, case_id: int | None) -> CommandPublic | JSONResponse:
    permission = required_permission(body.kind)
    if not who.may(permission):
        raise HTTPException(403, f"the key {who.name!r} has role {who.role!r}; {body.kind} "
                                 "needs an admin key")
    try:
        row, created = command_store.request_command(
            store, vin=vin, kind=body.kind, actor=who.name, key_id=who.key_id,
            command_id=body.id, case_id=case_id, alert_id=body.alert_id,
            ttl_ms=body.ttl_s * 1000 if body.ttl_s else DEFAULT_TTL_MS)
    except command_store.CommandNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except command_store.InvalidCommand as exc:
        raise invalid("body", "case_id" if "case" in str(exc) else "alert_id",
                      str(exc)) from None
    except command_store.CommandConflict as exc:
        return problem(409, str(exc), instance(request), command_id=exc.command_id)
    except command_store.CommandRateLimited as exc:
        seconds = max(1, math.ceil(exc.retry_after_ms / 1000))
        return problem(429, str(exc), instance(request),
                       headers={"Retry-After": str(seconds)})
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/commands/{row['id']}"
    return CommandPublic(**row)


@router.post("/vehicles/{vin}/commands", response_model=CommandPublic, status_code=201,
             responses=_ERRORS)
def request_for_vehicle(vin: Vin, body: VehicleCommandCreate, request: Request,
                        response: Response, store: StoreDep, who: Agent
                        ) -> CommandPublic | JSONResponse:
    """Send a command to the car (201; 200 when ``id`` names a command already requested).

    One command of a kind may be in flight per car (409 names it); a car and a key may each
    ask only so often (429 with ``Retry-After``). The command expires at the fleet's event
    time now plus ``ttl_s`` (6 h by default): the car refuses it after that, and the cloud
    marks it expired."""
    return _request(request, response, store, who, vin, body, body.case_id)


@router.post("/cases/{case_id}/commands", response_model=CommandPublic, status_code=201,
             responses=_ERRORS)
def request_for_case(case_id: CaseId, body: CommandCreate, request: Request,
                     response: Response, store: StoreDep, who: Agent
                     ) -> CommandPublic | JSONResponse:
    """Send a command to the case's car; the steps go into the case's audit trail. A
    ``battery_test`` is for the case's ``weak_12v_battery`` alert unless ``alert_id`` says
    otherwise: its result confirms or refutes it."""
    case = request.app.state.cases.get_case(case_id)
    if case is None:
        raise HTTPException(404, f"no case with id {case_id}")
    if case["asset_kind"] != "vehicle":
        raise HTTPException(409, f"case {case_id} is about a charger; commands go to cars")
    return _request(request, response, store, who, case["asset_id"], body, case_id)


@router.get("/commands/{command_id}", response_model=CommandDetail,
            responses={404: {"model": Problem}})
def get_command(command_id: Annotated[str, Path(max_length=36, pattern=r"^[A-Za-z0-9._:-]+$")],
                store: StoreDep, _who: Viewer) -> CommandDetail:
    """A command with every step it went through."""
    row = command_store.get_command(store, command_id)
    if row is None:
        raise HTTPException(404, f"no command with id {command_id}")
    return CommandDetail(**row)


@router.get("/vehicles/{vin}/commands", response_model=CommandList)
def list_for_vehicle(vin: Vin, store: StoreDep, _who: Viewer) -> CommandList:
    """The car's commands, newest first (the latest 100)."""
    return CommandList(items=[CommandPublic(**r)
                              for r in command_store.list_commands(store, vin=vin)])


@router.get("/cases/{case_id}/commands", response_model=CommandList)
def list_for_case(case_id: CaseId, store: StoreDep, _who: Viewer) -> CommandList:
    """The case's commands, newest first (the latest 100)."""
    return CommandList(items=[CommandPublic(**r)
                              for r in command_store.list_commands(store, case_id=case_id)])
