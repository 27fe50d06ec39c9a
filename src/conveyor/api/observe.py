"""What the API tells about itself: Prometheus metrics (requests by route and status, and
their durations) and one JSON log line per request with its correlation id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.guard import correlation_id, trace_context
from conveyor.metrics import DURATION_BUCKETS

log = logging.getLogger("conveyor.api")


class ApiMetrics:
    """The API's counters, in `registry` (a new one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "conveyor_api_requests",
            "API requests by route (its template, e.g. /v1/jobs/{id}) and status.",
            ("route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "conveyor_api_request_duration_seconds",
            "Time from a request's arrival to its response, by route.",
            ("route",),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def text(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)


class Observe:
    """ASGI middleware: give each request its correlation id (X-Request-Id, else the
    traceparent's trace id, else a new one; echoed as X-Request-Id), count and time it, and
    log one line about it."""

    def __init__(
        self, app: ASGIApp, metrics: ApiMetrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)
        state = scope.setdefault("state", {})
        request_id = correlation_id(request)
        state["correlation_id"] = request_id
        state["trace_context"] = trace_context(request)
        started = self.clock()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = self.clock() - started
            route = state.get("route", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.duration.labels(route).observe(elapsed)
            log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "correlation_id": request_id,
                    "token": state.get("principal"),
                },
            )
