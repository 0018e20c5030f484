"""API keys (admin only): create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, Problem
from storage.keys import KeyStore

router = APIRouter(prefix="/keys", tags=["keys"])


def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys  # type: ignore[no-any-return]


KeysDep = Annotated[KeyStore, Depends(get_keys)]


@router.post("", status_code=201, response_model=ApiKeyCreated,
             responses={401: {"model": Problem}, 403: {"model": Problem},
                        422: {"model": Problem}})
async def create_key(body: ApiKeyCreate, keys: KeysDep, who: Admin) -> ApiKeyCreated:
    """Create a key. The response's ``key`` is the only time the secret is shown."""
    row, key = await run_in_threadpool(keys.create, body.name, body.role)
    return ApiKeyCreated(**row, key=key, created_by=who.name)


@router.get("", response_model=list[ApiKeyPublic],
            responses={401: {"model": Problem}, 403: {"model": Problem}})
async def list_keys(keys: KeysDep, _who: Admin) -> list[ApiKeyPublic]:
    """Every key, revoked ones included (never their secrets)."""
    return [ApiKeyPublic(**row) for row in await run_in_threadpool(keys.list)]


@router.delete("/{key_id}", response_model=ApiKeyPublic,
               responses={401: {"model": Problem}, 403: {"model": Problem},
                          404: {"model": Problem}})
async def revoke_key(key_id: str, keys: KeysDep, _who: Admin) -> ApiKeyPublic:
    """Revoke a key at once (idempotent); the row stays for the audit trail."""
    row = await run_in_threadpool(keys.revoke, key_id)
    if row is None:
        raise HTTPException(404, f"no API key with id {key_id!r}")
    return ApiKeyPublic(**row)
