"""Webhooks (admin only): register a receiver of alert and case events, list, pause, resume,
delete; inspect its deliveries and retry dead ones. Signing and retries: ``care.webhooks``,
``api.webhook_dispatch``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin
from api.deps import PagingDep, SettingsDep, StoreDep, bad_cursor
from api.problems import invalid
from api.schemas import (
    DeliveryState,
    Problem,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookDeliveryPublic,
    WebhookPage,
    WebhookPublic,
)
from api.webhook_dispatch import Dispatcher, RefusedAddress, resolve_checked
from care.webhooks import check_event_patterns, check_url
from storage import outbox as webhook_store
from storage.store import Store

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

AUTH_ERRORS: dict[int | str, dict[str, object]] = {401: {"model": Problem},
                                                   403: {"model": Problem}}
NOT_FOUND: dict[int | str, dict[str, object]] = {**AUTH_ERRORS, 404: {"model": Problem}}


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.webhook_dispatcher  # type: ignore[no-any-return]


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


@router.post("", status_code=201, response_model=WebhookCreated,
             responses={**AUTH_ERRORS, 422: {"model": Problem},
                        201: {"headers": {"Location": {"description": "the new webhook",
                                                       "schema": {"type": "string"}}}}})
async def create_webhook(body: WebhookCreate, store: StoreDep, settings: SettingsDep,
                         dispatcher: DispatcherDep, who: Admin,
                         response: Response) -> WebhookCreated:
    """Register a webhook, active at once. The response's ``secret`` (``whsec_...``) is the
    only time the signing secret is shown: keep it to verify the Standard Webhooks
    signature (``webhook-signature``) of every delivery.

    The URL's host must resolve to public addresses only (every address it resolves to):
    loopback, private, link-local, multicast, unspecified and reserved ones are refused
    unless inside ``OWNERCARE_WEBHOOK_ALLOW_NETWORKS``."""
    try:
        url = check_url(body.url, allow_http=settings.webhook_allow_http)
    except ValueError as exc:
        raise invalid("body", "url", str(exc)) from None
    try:
        events = check_event_patterns(body.events)
    except ValueError as exc:
        raise invalid("body", "events", str(exc)) from None
    # Last, as it asks the resolver. The dispatcher checks again before every connection:
    # what a name resolves to can change after registration.
    try:
        await resolve_checked(url, settings.webhook_allowed_networks)
    except RefusedAddress as exc:
        raise invalid("body", "url", str(exc)) from None
    row = await run_in_threadpool(
        lambda: webhook_store.create_webhook(store, url=url, events=events,
                                             description=body.description,
                                             created_by=who.name, now_ms=dispatcher.now_ms()))
    response.headers["Location"] = f"/webhooks/{row['id']}"
    return WebhookCreated(**row)


@router.get("", response_model=WebhookPage, responses={**AUTH_ERRORS, 422: {"model": Problem}})
async def list_webhooks(store: StoreDep, paging: PagingDep, _who: Admin) -> WebhookPage:
    """Every webhook, oldest first (never their secrets), one page at a time (follow
    ``next_cursor``)."""
    try:
        rows, next_cursor = await run_in_threadpool(
            webhook_store.list_webhooks, store, paging.limit, paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return WebhookPage(items=[WebhookPublic(**r) for r in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=NOT_FOUND)
async def get_webhook(webhook_id: str, store: StoreDep, _who: Admin) -> WebhookPublic:
    return WebhookPublic(**await _webhook(store, webhook_id))


@router.post("/{webhook_id}/pause", response_model=WebhookPublic, responses=NOT_FOUND)
async def pause_webhook(webhook_id: str, store: StoreDep, _who: Admin) -> WebhookPublic:
    """Stop sending (idempotent). Events while paused are not queued for this webhook;
    deliveries already pending wait and go out after resume."""
    return await _set_state(store, webhook_id, "paused")


@router.post("/{webhook_id}/resume", response_model=WebhookPublic, responses=NOT_FOUND)
async def resume_webhook(webhook_id: str, store: StoreDep, _who: Admin) -> WebhookPublic:
    """Send again (idempotent), starting with the deliveries that waited."""
    return await _set_state(store, webhook_id, "active")


@router.delete("/{webhook_id}", status_code=204, response_class=Response,
               responses=NOT_FOUND)
async def delete_webhook(webhook_id: str, store: StoreDep, _who: Admin) -> Response:
    """Delete the webhook and all its deliveries, pending and dead ones included."""
    if not await run_in_threadpool(webhook_store.delete_webhook, store, webhook_id):
        raise HTTPException(404, f"no webhook with id {webhook_id!r}")
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryPage,
            responses={**NOT_FOUND, 422: {"model": Problem}})
async def list_deliveries(
    webhook_id: str, store: StoreDep, paging: PagingDep, _who: Admin,
    state: Annotated[DeliveryState | None, Query(
        description="only deliveries in this state; 'dead' is the dead-letter list")] = None,
) -> WebhookDeliveryPage:
    """The webhook's deliveries, newest first, one page at a time (follow ``next_cursor``
    until it is null)."""
    await _webhook(store, webhook_id)
    try:
        rows, next_cursor = await run_in_threadpool(
            webhook_store.list_deliveries, store, webhook_id, state, paging.limit,
            paging.cursor)
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return WebhookDeliveryPage(items=[WebhookDeliveryPublic(**r) for r in rows],
                               next_cursor=next_cursor)


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry",
             response_model=WebhookDeliveryPublic,
             responses={**NOT_FOUND, 409: {"model": Problem}})
async def retry_delivery(webhook_id: str, delivery_id: str, store: StoreDep,
                         dispatcher: DispatcherDep, _who: Admin) -> WebhookDeliveryPublic:
    """Send a dead delivery again: back to pending, due now, with a fresh set of tries."""
    await _webhook(store, webhook_id)
    try:
        row = await run_in_threadpool(webhook_store.retry_delivery, store, webhook_id,
                                      delivery_id, dispatcher.now_ms())
    except webhook_store.DeliveryStateError as exc:
        raise HTTPException(409, str(exc)) from None
    if row is None:
        raise HTTPException(404, f"webhook {webhook_id!r} has no delivery {delivery_id!r}")
    return WebhookDeliveryPublic(**row)


async def _webhook(store: Store, webhook_id: str) -> dict[str, Any]:
    row = await run_in_threadpool(webhook_store.get_webhook, store, webhook_id)
    if row is None:
        raise HTTPException(404, f"no webhook with id {webhook_id!r}")
    return row


async def _set_state(store: Store, webhook_id: str, state: str) -> WebhookPublic:
    row = await run_in_threadpool(webhook_store.set_webhook_state, store, webhook_id, state)
    if row is None:
        raise HTTPException(404, f"no webhook with id {webhook_id!r}")
    return WebhookPublic(**row)
