"""Vehicles (list and health card), chargers (list and detail) and the fleet overview, from
the API's own route functions (``api.routes.vehicles``, ``chargers``, ``fleet``)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from api.console.charts import sparkline
from api.console.queries import vehicle_sessions
from api.console.render import render
from api.console.session import Reader, Staff
from api.deps import Paging
from api.routes import chargers as charger_routes
from api.routes import fleet as fleet_routes
from api.routes import vehicles as vehicle_routes
from storage import commands as command_store

router = APIRouter(include_in_schema=False)
PAGE = 50
TREND_DAYS = 30
COMMANDS = 10  # the car's newest remote commands on its card
# Signals of the installed software, shown beside the OTA state on the card.
SOFTWARE = re.compile(r"(Software|Firmware|Version)", re.IGNORECASE)


def _not_found(request: Request, staff: Staff, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 422
    message = str(exc.detail) if isinstance(exc, HTTPException) else "; ".join(
        str(e.get("msg")) for e in exc.errors()) if isinstance(exc, RequestValidationError) \
        else str(exc)
    return render(request, "error.html", staff, status=status, message=message)


@router.get("/console/vehicles")
async def vehicles(request: Request, staff: Reader) -> Response:
    prefix = request.query_params.get("vin", "").strip().upper()
    cursor = request.query_params.get("cursor") or None
    if prefix and not re.fullmatch(vehicle_routes.VIN_PREFIX_PATTERN, prefix):
        return render(request, "vehicles.html", staff, page=None, prefix=prefix,
                      error="A VIN has only the characters A-Z (no I, O, Q) and 0-9.")
    try:
        page = await run_in_threadpool(vehicle_routes.list_vehicles, request.app.state.store,
                                       Paging(PAGE, cursor), staff.principal,
                                       vin_prefix=prefix or None, model=None)
    except RequestValidationError:
        page, cursor = None, None
    return render(request, "vehicles.html", staff, page=page, prefix=prefix,
                  error=None if page else "That page link is stale.")


def _card(request: Request, staff: Staff, vin: str) -> dict[str, Any]:
    store = request.app.state.store
    card = vehicle_routes.get_vehicle(vin, store, request.app.state.cases, staff.principal,
                                      days=TREND_DAYS)
    sparks = {name: sparkline([p.mean for p in points],
                              label=f"{name.replace('_', ' ')}, daily mean, "
                                    f"{len(points)} days")
              for name, points in sorted(card.trends.items())}
    software = [s for s in card.signals if SOFTWARE.search(s.path)]
    return {"v": card, "sparks": sparks, "software": software,
            "sessions": vehicle_sessions(store, vin),
            "commands": command_store.list_commands(store, vin=vin, limit=COMMANDS)}


@router.get("/console/vehicles/{vin}")
async def vehicle(request: Request, vin: str, staff: Reader) -> Response:
    try:
        data = await run_in_threadpool(_card, request, staff, vin)
    except (HTTPException, RequestValidationError) as exc:
        return _not_found(request, staff, exc)
    return render(request, "vehicle.html", staff, **data)


@router.get("/console/chargers")
async def chargers(request: Request, staff: Reader) -> Response:
    cursor = request.query_params.get("cursor") or None
    try:
        page = await run_in_threadpool(charger_routes.list_chargers, request.app.state.store,
                                       Paging(PAGE, cursor), staff.principal)
    except RequestValidationError:
        page = await run_in_threadpool(charger_routes.list_chargers, request.app.state.store,
                                       Paging(PAGE, None), staff.principal)
    return render(request, "chargers.html", staff, page=page)


@router.get("/console/chargers/{charger_id}")
async def charger(request: Request, charger_id: str, staff: Reader) -> Response:
    try:
        detail = await run_in_threadpool(charger_routes.get_charger, charger_id,
                                         request.app.state.store, staff.principal,
                                         sessions=20)
    except (HTTPException, RequestValidationError) as exc:
        return _not_found(request, staff, exc)
    return render(request, "charger.html", staff, c=detail)


@router.get("/console/fleet")
async def fleet(request: Request, staff: Reader) -> Response:
    overview = await run_in_threadpool(fleet_routes.fleet_overview, request.app.state.store,
                                       request.app.state.cases, staff.principal, days=30,
                                       top=10)
    return render(request, "fleet.html", staff, f=overview)
