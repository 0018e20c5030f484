"""API keys (admin only): create (the key is shown once), list, read, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin
from api.deps import PagingDep, bad_cursor
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyPublic, Problem
from storage.keys import KeyStore

router = APIRouter(prefix="/keys", tags=["keys"])

AUTH_ERRORS: dict[int | str, dict[str, object]] = {401: {"model": Problem},
                                                   403: {"model": Problem}}
NOT_FOUND: dict[int | str, dict[str, object]] = {**AUTH_ERRORS, 404: {"model": Problem}}


def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys  # type: ignore[no-any-return]


KeysDep = Annotated[KeyStore, Depends(get_keys)]


@router.post("", status_code=201, response_model=ApiKeyCreated,
             responses={**AUTH_ERRORS, 422: {"model": Problem},
                        201: {"headers": {"Location": {"description": "the new key",
                                                       "schema": {"type": "string"}}}}})
async def create_key(body: ApiKeyCreate, keys: KeysDep, who: Admin,
                     response: Response) -> ApiKeyCreated:
    """Create a key. The response's ``key`` is the only time the secret is shown."""
    row, key = await run_in_threadpool(keys.create, body.name, body.role)
    response.headers["Location"] = f"/keys/{row['id']}"
    return ApiKeyCreated(**row, key=key, created_by=who.name)


@router.get("", response_model=ApiKeyPage, responses={**AUTH_ERRORS, 422: {"model": Problem}})
async def list_keys(keys: KeysDep, paging: PagingDep, _who: Admin) -> ApiKeyPage:
    """Every key, revoked ones included (never their secrets), oldest first, one page at a
    time (follow ``next_cursor``)."""
    try:
        rows, next_cursor = await run_in_threadpool(
            lambda: keys.page(limit=paging.limit, cursor=paging.cursor))
    except ValueError as exc:
        raise bad_cursor(exc) from None
    return ApiKeyPage(items=[ApiKeyPublic(**row) for row in rows], next_cursor=next_cursor)


@router.get("/{key_id}", response_model=ApiKeyPublic, responses=NOT_FOUND)
async def get_key(key_id: str, keys: KeysDep, _who: Admin) -> ApiKeyPublic:
    row = await run_in_threadpool(keys.get, key_id)
    if row is None:
        raise HTTPException(404, f"no API key with id {key_id!r}")
    return ApiKeyPublic(**row)


@router.delete("/{key_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
async def revoke_key(key_id: str, keys: KeysDep, _who: Admin) -> Response:
    """Revoke a key at once (idempotent); ``GET /keys/{key_id}`` still shows it, with
    ``revoked_wall_ms``, for the audit trail."""
    if await run_in_threadpool(keys.revoke, key_id) is None:
        raise HTTPException(404, f"no API key with id {key_id!r}")
    return Response(status_code=204)
