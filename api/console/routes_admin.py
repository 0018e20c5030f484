"""Webhooks and their deliveries (admin, as in the API), and detector quality (any reader),
from the API's own route functions (``api.routes.webhooks``, ``quality``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from api.console.render import back, render
from api.console.session import AdminPage, Reader, Write, write
from api.deps import Paging
from api.routes import quality as quality_routes
from api.routes import webhooks as webhook_routes
from api.schemas import DeliveryState

router = APIRouter(include_in_schema=False)
AdminWrite = Annotated[Write, Depends(write("admin"))]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("pending", "delivered", "dead")


@router.get("/console/webhooks")
async def webhooks(request: Request, staff: AdminPage) -> Response:
    page = await webhook_routes.list_webhooks(request.app.state.store, Paging(100, None),
                                              staff.principal)
    return render(request, "webhooks.html", staff, page=page)


@router.get("/console/webhooks/{webhook_id}")
async def webhook(request: Request, webhook_id: str, staff: AdminPage) -> Response:
    store = request.app.state.store
    wanted = request.query_params.get("state")
    state = next((s for s in DELIVERY_STATES if s == wanted), None)
    cursor = request.query_params.get("cursor") or None
    try:
        hook = await webhook_routes.get_webhook(webhook_id, store, staff.principal)
        deliveries = await webhook_routes.list_deliveries(
            webhook_id, store, Paging(50, cursor), staff.principal, state=state)
    except (HTTPException, RequestValidationError) as exc:
        status = exc.status_code if isinstance(exc, HTTPException) else 422
        return render(request, "error.html", staff, status=status,
                      message=str(getattr(exc, "detail", "That page link is stale.")))
    return render(request, "webhook.html", staff, hook=hook, deliveries=deliveries,
                  state=state, states=DELIVERY_STATES)


@router.post("/console/webhooks/{webhook_id}/{action}")
async def webhook_state(request: Request, webhook_id: str, action: str,
                        write: AdminWrite) -> Response:
    routes = {"pause": webhook_routes.pause_webhook, "resume": webhook_routes.resume_webhook}
    if action not in routes:
        raise HTTPException(404, f"no webhook action {action!r}")
    error = None
    try:
        await routes[action](webhook_id, request.app.state.store, write.staff.principal)
    except HTTPException as exc:
        error = str(exc.detail)
    return back(request, write.staff, "/console/webhooks", error)


@router.post("/console/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
async def retry(request: Request, webhook_id: str, delivery_id: str,
                write: AdminWrite) -> Response:
    error = None
    try:
        await webhook_routes.retry_delivery(webhook_id, delivery_id, request.app.state.store,
                                            request.app.state.webhook_dispatcher,
                                            write.staff.principal)
    except HTTPException as exc:
        error = str(exc.detail)
    if error and "no webhook" in error:
        return back(request, write.staff, "/console/webhooks", error)
    return back(request, write.staff, f"/console/webhooks/{webhook_id}", error)


@router.get("/console/quality")
async def quality(request: Request, staff: Reader) -> Response:
    report = await run_in_threadpool(quality_routes.get_quality, request.app.state.cases,
                                     staff.principal)
    return render(request, "quality.html", staff, report=report)
