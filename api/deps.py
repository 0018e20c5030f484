"""FastAPI dependencies: the store and the settings live on ``app.state`` (no globals)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from config.settings import ApiSettings
from storage.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
