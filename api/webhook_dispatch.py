"""The webhook dispatcher: an asyncio task of the API that sends due deliveries.

Every API replica runs one. Each poll claims due deliveries with a lease (see
``storage.outbox.claim_due``), POSTs them signed the Standard Webhooks way (``care.webhooks``:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), and records the outcome: 2xx
is delivered; anything else (other status, timeout, refused connection) is retried after
min(cap, base·2^(attempt-1)) seconds, and after the last try the delivery is dead, listed
by ``GET /webhooks/{id}/deliveries?state=dead`` until someone retries it.

Delivery is at least once: a replica stopped in the middle of a request leaves its lease to
expire, and the delivery is sent again (same ``webhook-id``; receivers de-duplicate on it).
The clock and the sleep are injected, so tests run the retry schedule without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from care import webhooks
from config.settings import WebhookSettings
from storage import outbox as webhook_store
from storage.store import Store

log = logging.getLogger(__name__)

USER_AGENT = "ownercare-webhooks/1"
PRUNE_EVERY_MS = 3_600_000  # how often old delivered deliveries are deleted


class RefusedAddress(ValueError):
    """The receiver's host resolves to an address webhooks may not reach."""


async def resolve_checked(url: str, allowed: tuple[webhooks.IpNetwork, ...]) -> list[
        webhooks.IpAddress]:
    """Every address the URL's host resolves to, if each may be reached; else
    :class:`RefusedAddress` saying which is not. The system resolver parses the host, so
    numeric forms such as ``0x7f000001`` or ``2130706433`` are judged as what they reach."""
    target = httpx.URL(url)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedAddress(f"the host {target.host!r} does not resolve ({exc})") from None
    try:
        return webhooks.check_addresses(target.host, (str(i[4][0]) for i in infos), allowed)
    except ValueError as exc:
        raise RefusedAddress(str(exc)) from None


class Dispatcher:
    """Sends the outbox. ``clock`` returns unix seconds; ``sleep`` waits between idle polls."""

    def __init__(self, store: Store, settings: WebhookSettings, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._sleep = sleep
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        # Counters of this process, for /metrics (the states are in delivery_counts()).
        self.failed_attempts_total = 0
        self.delivered_total = 0
        self.dead_total = 0

    def now_ms(self) -> int:
        return round(self.clock() * 1000)

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self, *, poll: bool = True) -> AsyncIterator[Dispatcher]:
        """Open the HTTP client and (with ``poll``) run the polling loop until exit."""
        self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s,
                                         follow_redirects=False,
                                         headers={"User-Agent": USER_AGENT})
        if poll:
            self._task = asyncio.create_task(self._loop(), name="webhook-dispatcher")
        log.info("webhook_dispatcher_start poll=%s", poll)
        try:
            yield self
        finally:
            if self._task is not None:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            await self._client.aclose()
            self._client = None
            log.info("webhook_dispatcher_stop")

    async def _loop(self) -> None:
        next_prune = self.now_ms()
        while True:
            if self.now_ms() >= next_prune:
                next_prune = self.now_ms() + PRUNE_EVERY_MS
                try:
                    await self.prune()
                except Exception as exc:  # housekeeping: never in the way of deliveries
                    log.warning("webhook_prune_failed error=%r", exc)
            try:
                sent = await self.run_once()
            except Exception as exc:  # a database restart must not end webhook delivery
                log.warning("webhook_dispatch_poll_failed error=%r", exc)
                sent = 0
            if sent < self.settings.webhook_batch:  # a full batch: more may be due at once
                await self._sleep(self.settings.webhook_poll_s)

    # ------------------------------------------------------------------ one poll

    async def prune(self) -> int:
        """Delete deliveries delivered more than ``webhook_retention_days`` ago."""
        keep_ms = round(self.settings.webhook_retention_days * 86_400_000)
        return await asyncio.to_thread(webhook_store.prune_delivered, self.store,
                                       self.now_ms() - keep_ms)

    async def run_once(self) -> int:
        """Claim the due deliveries (up to a batch), send them concurrently, record the
        outcomes. Returns how many were attempted."""
        s = self.settings
        rows = await asyncio.to_thread(webhook_store.claim_due, self.store, self.now_ms(),
                                       int(s.webhook_lease_s * 1000), s.webhook_batch)
        await asyncio.gather(*(self._attempt(row) for row in rows))
        return len(rows)

    async def _attempt(self, row: dict[str, Any]) -> None:
        if self._client is None:
            raise RuntimeError("use `async with dispatcher.running():`")
        attempt = row["attempts"] + 1
        timestamp = int(self.clock())
        payload = webhooks.body(row["event_id"], row["event_type"], row["created_wall_ms"],
                                row["payload"])
        headers = webhooks.headers(row["secret"], event_id=row["event_id"],
                                   event_type=row["event_type"], delivery_id=row["id"],
                                   timestamp=timestamp, payload=payload)
        status: int | None = None
        error: str | None = None
        try:
            # A total deadline: httpx's timeout is per read, so a receiver that trickles
            # bytes could otherwise hold the request past our lease.
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                status = await self._post(row["url"], payload, headers)
            if not 200 <= status < 300:
                # The status only: the receiver's body (or an internal page's, if the
                # checks were ever bypassed) must not reach last_error or the logs.
                error = f"HTTP {status}"
        except TimeoutError:
            error = f"timed out after {self.settings.webhook_timeout_s} s"
        except RefusedAddress as exc:  # our own message, naming the address only
            error = f"RefusedAddress: {exc}"[:500]
        except Exception as exc:  # noqa: BLE001 - any failure is a failed try, never a
            # stuck lease: httpx.HTTPError mostly, but e.g. InvalidURL is not one of those.
            # The class only: an exception's text may quote what the receiver sent.
            error = type(exc).__name__
        await self._record(row, attempt, status, error)

    async def _post(self, url: str, payload: bytes, headers: dict[str, str]) -> int:
        """POST to an address checked just now; the status (the body is never read).

        DNS rebinding: a name that resolved to a public address at registration may
        resolve to 127.0.0.1 now, and again differently between a check and httpx's own
        lookup. So we resolve once, check every address, and connect to the checked one by
        putting it in the URL, while the ``Host`` header and TLS (SNI and certificate
        verification, httpx's documented ``sni_hostname`` request extension) still use the
        registered name. That keeps httpx's maintained transport (pooling, TLS) instead of
        a hand-written connection layer.
        """
        assert self._client is not None
        target = httpx.URL(url)
        addresses = await resolve_checked(url, self.settings.webhook_allowed_networks)
        pinned = target.copy_with(host=str(addresses[0]))
        headers = {**headers, "Host": target.netloc.decode("ascii")}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self._client.build_request("POST", pinned, content=payload,
                                             headers=headers, extensions=extensions)
        resp = await self._client.send(request, stream=True)
        await resp.aclose()
        return resp.status_code

    async def _record(self, row: dict[str, Any], attempt: int, status: int | None,
                      error: str | None) -> None:
        s = self.settings
        now = self.now_ms()
        delivered = error is None
        retry_at = None
        if not delivered and attempt < s.webhook_max_attempts:
            delay = webhooks.backoff_s(attempt, s.webhook_backoff_base_s, s.webhook_backoff_cap_s)
            retry_at = now + int(delay * 1000)
        try:
            kept = await asyncio.to_thread(
                webhook_store.record_attempt, self.store, row["id"], row["lease"],
                delivered=delivered, status_code=status, error=error, now_ms=now,
                retry_at=retry_at)
        except Exception as exc:  # the lease expires and the delivery is sent again
            log.warning("webhook_record_failed id=%s error=%r", row["id"], exc)
            return
        if not kept:
            log.warning("webhook_lease_lost id=%s attempt=%s", row["id"], attempt)
        if delivered:
            self.delivered_total += 1
            log.info("webhook_delivered id=%s webhook=%s type=%s attempt=%s", row["id"],
                     row["webhook_id"], row["event_type"], attempt)
            return
        self.failed_attempts_total += 1
        log.warning("webhook_delivery_failed id=%s webhook=%s status=%s attempt=%s error=%s "
                    "retry_at=%s", row["id"], row["webhook_id"], status, attempt, error,
                    retry_at)
        if retry_at is None:
            self.dead_total += 1
            log.error("webhook_delivery_dead id=%s webhook=%s type=%s attempts=%s", row["id"],
                      row["webhook_id"], row["event_type"], attempt)

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> list[Metric]:
        """For ``GET /metrics`` (blocking: a database query). Deliveries by webhook and
        state are the database's (all replicas); the counters are this process's."""
        deliveries = GaugeMetricFamily(
            "ownercare_webhook_deliveries", "webhook deliveries by state (dead = dead letters)",
            labels=["webhook_id", "state"])
        for (webhook_id, state), n in sorted(webhook_store.delivery_counts(self.store).items()):
            deliveries.add_metric([webhook_id, state], n)
        counters = [
            ("ownercare_webhook_failed_attempts", "webhook delivery attempts that failed",
             self.failed_attempts_total),
            ("ownercare_webhook_delivered", "webhook deliveries delivered", self.delivered_total),
            ("ownercare_webhook_dead", "webhook deliveries that went dead after the last try",
             self.dead_total),
        ]
        families: list[Metric] = [deliveries]
        for name, help_text, value in counters:
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], value)
            families.append(family)
        return families
