"""Every error as RFC 9457 ``application/problem+json``.

``{type, title, status, detail, instance}`` always; ``errors`` (one entry per invalid input,
each with ``loc``, ``msg`` and ``type``) on 422. Route code raises ``HTTPException`` for
404/503 and ``invalid(...)`` for inputs FastAPI cannot check by itself, so hand-made 422s
look exactly like FastAPI's own.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"


def problem(status: int, detail: str | None, instance: str,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": instance, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def instance(request: Request) -> str:
    """The request path as sent (still percent-encoded): the problem's ``instance`` URI."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else quote(request.url.path)


def invalid(where: str, name: str, msg: str, error_type: str = "value_error") -> Exception:
    """A 422 for one input (``where`` is "query", "path" or "header"), as FastAPI reports."""
    return RequestValidationError([{"loc": (where, name), "msg": msg, "type": error_type}])


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), instance(request),
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return problem(422, detail, instance(request), errors=errors)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api_unhandled_error path=%s error=%r", request.url.path, exc,
                  exc_info=exc)
        return problem(500, "internal error; see the server log", instance(request))
