"""HTTP request metrics of this API replica, as plain ASGI middleware.

* ``http_requests_total{method, route, status}``: requests answered;
* ``http_request_duration_seconds{method, route}``: a histogram of the time from the request
  to the end of its response.

Labels stay bounded whatever clients send: ``route`` is the path template a request matched
(``/alerts/{alert_id}``, never the raw path), or ``unmatched``; ``method`` is a standard
method or ``other``. Every route's series exist from start-up, at 0, so ``rate()`` sees them
before their first request.

A server-sent-event stream lasts as long as its client stays connected: it is counted when
its response starts and kept out of the duration histogram, whose quantiles it would
otherwise dominate.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from re import Pattern
from typing import Any, Final

import fastapi.routing
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Prometheus' default buckets: API calls take milliseconds to a few seconds.
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"
EVENT_STREAM: Final = b"text/event-stream"


@dataclass(frozen=True, slots=True)
class Template:
    path: str  # as declared, with the router's prefix: /alerts/{alert_id}
    pattern: Pattern[str]
    methods: frozenset[str]
    status: int  # what the handler answers when all goes well


def templates(routes: Iterable[BaseRoute]) -> list[Template]:
    """The app's routes with their full paths, in the order the router tries them."""
    # FastAPI >= 0.16x keeps included routers nested; iter_route_contexts flattens them.
    flatten: Any = getattr(fastapi.routing, "iter_route_contexts", None)
    out = []
    for route in (flatten(routes) if flatten else routes):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if isinstance(path, str) and methods:
            out.append(Template(path, compile_path(path)[0], frozenset(methods),
                                getattr(route, "status_code", None) or 200))
    return out


class HttpMetrics:
    """This process's request counts and durations. Updated and collected on the event loop
    only, so it needs no lock."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()
        # per (method, route): observations per bucket (not cumulative; the last is +Inf)
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}
        self.templates: list[Template] = []

    def prime(self, routes: Iterable[BaseRoute]) -> None:
        """Learn the app's routes, and create every route's series at 0 (with the status its
        handler answers when all goes well)."""
        self.templates = templates(routes)
        for template in self.templates:
            for method in sorted(template.methods):
                self.requests[(method, template.path, str(template.status))] += 0
                self._histogram((method, template.path))

    def route_of(self, scope: Scope) -> str:
        """The template of the route a request matches, as the router would choose it (also
        for a request answered before routing, such as an oversized body)."""
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        method_mismatch = None
        for template in self.templates:
            if template.pattern.match(path):
                if scope["method"] in template.methods:
                    return template.path
                method_mismatch = method_mismatch or template.path
        return method_mismatch or UNMATCHED

    def observe(self, method: str, route: str, status: int, seconds: float | None) -> None:
        """Count one response; ``seconds`` None keeps it out of the histogram."""
        method = method if method in METHODS else "other"
        self.requests[(method, route, str(status))] += 1
        if seconds is not None:
            key = (method, route)
            self._histogram(key)[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.sums[key] += seconds

    def _histogram(self, key: tuple[str, str]) -> list[int]:
        if key not in self.buckets:
            self.buckets[key] = [0] * (len(BUCKETS) + 1)
            self.sums[key] = 0.0
        return self.buckets[key]

    def collect(self) -> list[Metric]:
        requests = CounterMetricFamily("http_requests", "HTTP requests answered by this API "
                                       "replica", labels=["method", "route", "status"])
        for (method, route, status), n in sorted(self.requests.items()):
            requests.add_metric([method, route, status], n)
        durations = HistogramMetricFamily(
            "http_request_duration_seconds", "time from an HTTP request to the end of its "
            "response (event streams excluded)", labels=["method", "route"])
        for (method, route), counts in sorted(self.buckets.items()):
            cumulative, total = [], 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                total += n
                cumulative.append((bound, float(total)))
            durations.add_metric([method, route], cumulative, self.sums[(method, route)])
        return [requests, durations]


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500  # what the server answers if the app raises before responding
        counted = False

        async def observing_send(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = message["status"]
                if any(name.lower() == b"content-type" and value.startswith(EVENT_STREAM)
                       for name, value in message.get("headers", ())):
                    counted = True
                    self.metrics.observe(scope["method"], self.metrics.route_of(scope), status,
                                         None)
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            if not counted:
                self.metrics.observe(scope["method"], self.metrics.route_of(scope), status,
                                     self.clock() - started)
