"""OTA campaigns: the list, one campaign's waves, gates and waiting cars, and pause / resume /
cancel through the API's own route functions (``api.routes.ota``)."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.console.render import back, render
from api.console.session import OtaWrite, Reader
from api.deps import Paging
from api.ota_schemas import UUID, CampaignChange
from api.routes import ota as ota_routes

router = APIRouter(include_in_schema=False)
ACTIONS = {"pause": ota_routes.pause_campaign, "resume": ota_routes.resume_campaign,
           "cancel": ota_routes.cancel_campaign}
WAITING_SHOWN = 200


@router.get("/console/ota")
async def campaigns(request: Request, staff: Reader) -> Response:
    cursor = request.query_params.get("cursor") or None
    error = None
    try:
        page = await ota_routes.list_campaigns(request.app.state.store,
                                               _paging(cursor), staff.principal)
    except Exception:  # a stale or foreign cursor: the first page
        page = await ota_routes.list_campaigns(request.app.state.store, _paging(None),
                                               staff.principal)
        error = "That page link is stale; showing the first page."
    return render(request, "campaigns.html", staff, page=page, error=error)


def _paging(cursor: str | None) -> Paging:
    return Paging(limit=50, cursor=cursor)


@router.get("/console/ota/{campaign_id}")
async def campaign(request: Request, campaign_id: str, staff: Reader) -> Response:
    store = request.app.state.store
    try:
        found = await ota_routes.get_campaign(campaign_id, store, staff.principal)
        waiting = await ota_routes.waiting(campaign_id, store, staff.principal, WAITING_SHOWN)
    except HTTPException as exc:
        return render(request, "error.html", staff, status=exc.status_code,
                      message=str(exc.detail))
    return render(request, "campaign.html", staff, c=found, waiting=waiting,
                  waiting_shown=WAITING_SHOWN)


@router.post("/console/ota/{campaign_id}/{action}")
async def change(request: Request, campaign_id: str, action: str, write: OtaWrite
                 ) -> Response:
    route = ACTIONS.get(action)
    if route is None or not re.fullmatch(UUID, campaign_id):
        raise HTTPException(404, f"no campaign {campaign_id!r} or no action {action!r}")
    reason = write.form.get("reason", "").strip()
    error = None
    try:
        body = CampaignChange(reason=reason) if reason else None
        await route(campaign_id=campaign_id, store=request.app.state.store,
                    who=write.staff.principal, body=body)
    except ValidationError as exc:
        error = "; ".join(e["msg"] for e in exc.errors())
    except HTTPException as exc:
        error = str(exc.detail)
    return back(request, write.staff, f"/console/ota/{campaign_id}", error)
