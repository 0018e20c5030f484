"""Request body size limit as plain ASGI middleware: a clean 413 before the body is read.

A declared ``Content-Length`` over the limit is refused at once; a chunked body is counted
as it streams and refused as soon as it passes the limit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import MEDIA_TYPE


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0
        started = refused = False

        async def counting_receive() -> Message:
            # Over the limit: answer 413 ourselves, and tell the app the client went away
            # (raising here would reach FastAPI's body parser and become a 400).
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not refused:
                    refused = True
                    if not started:
                        await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 already went out; drop whatever the app answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, tracking_send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        import orjson

        path = scope.get("raw_path") or scope["path"].encode()
        body = orjson.dumps({
            "type": "about:blank", "title": "Content Too Large", "status": 413,
            "detail": f"request body is larger than {self.max_bytes} bytes",
            "instance": path.decode("latin-1")})
        headers: list[Any] = [(b"content-type", MEDIA_TYPE.encode()),
                              (b"content-length", str(len(body)).encode()),
                              (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def no_nul_characters(request: Request) -> None:
    """No ownercare input contains a NUL character (and PostgreSQL refuses one in text):
    refuse it in the path or query with a 422 here, for every route, before any query."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    for where, raw in (("path", raw_path), ("query", request.scope.get("query_string", b""))):
        if b"\x00" in unquote_to_bytes(raw):
            raise RequestValidationError([{"loc": (where,), "type": "value_error",
                                           "msg": f"the {where} contains a NUL character"}])
