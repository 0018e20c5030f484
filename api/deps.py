"""FastAPI dependencies: the store and the settings live on ``app.state`` (no globals), and
the paging parameters every list shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from api.problems import invalid
from config.settings import ApiSettings
from storage.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


@dataclass(frozen=True, slots=True)
class Paging:
    """``?limit=`` and ``?cursor=`` of a keyset-paginated list (``storage.cursor``)."""

    limit: int
    cursor: str | None


def paging(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, description="page size (at most api_page_max)")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Paging:
    if limit > settings.api_page_max:
        raise invalid("query", "limit", f"Input should be less than or equal to "
                      f"{settings.api_page_max}", "less_than_equal")
    return Paging(limit, cursor)


PagingDep = Annotated[Paging, Depends(paging)]


def bad_cursor(exc: ValueError) -> Exception:
    """The 422 for a cursor the store refused (``storage.cursor.decode_cursor``)."""
    return invalid("query", "cursor", str(exc))
