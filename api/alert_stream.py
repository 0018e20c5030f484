"""The alert change log as server-sent events: the poll loop ``GET /alerts/stream`` and the
console's live queue share (resume position, key re-check, keep-alive, a poll that survives
a restarting database)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request

from storage.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often a stream looks for new alert events
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # the reconnect delay a stream suggests to EventSource clients
# How often an open stream looks its key up again: a revoked key (or one whose role no
# longer reads) stops receiving within this bound, not when the client reconnects.
KEY_RECHECK_S = 3.0
BATCH = 100  # events read per poll


async def alert_events(request: Request, store: Store, position: int, *, name: str,
                       allowed: Callable[[], Awaitable[bool]],
                       data: Callable[[dict[str, Any]], bytes]) -> AsyncIterator[bytes]:
    """Events after ``position`` until the client goes away or ``allowed`` says no; each
    event's payload is ``data(event)``. ``name`` prefixes the log lines."""
    yield b"retry: %d\n\n" % RETRY_MS
    last_sent = last_check = time.monotonic()
    try:
        while not await request.is_disconnected():
            if time.monotonic() - last_check >= KEY_RECHECK_S:
                last_check = time.monotonic()
                try:
                    still = await allowed()
                except Exception as exc:  # a restarting database is no reason to cut
                    log.warning("%s_key_check_failed error=%r", name, exc)
                    still = True
                if not still:
                    log.info("%s_key_invalid client=%s", name, request.client)
                    return
            try:
                events = await asyncio.to_thread(store.alert_events_after, position, BATCH)
            except Exception as exc:  # a busy or restarting database: keep the stream open
                log.warning("%s_poll_failed error=%r", name, exc)
                events = []
            for event in events:
                position = event["id"]
                yield b"id: %d\nevent: alert\ndata: %s\n\n" % (position, data(event))
                last_sent = time.monotonic()
            if len(events) < BATCH:
                if time.monotonic() - last_sent >= KEEPALIVE_S:
                    yield b": keepalive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(POLL_S)
    finally:
        log.info("%s_closed client=%s position=%s", name, request.client, position)
