"""create_app: the REST API as an ASGI app, served by `conveyor api` or mounted in yours.

from conveyor.api import create_app
app.mount("/conveyor", create_app(conveyor_app, rate_limit=50))
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.api import jobs, resources, workflows
from conveyor.api.guard import RateLimiter, authenticate
from conveyor.api.observe import ApiMetrics, Observe
from conveyor.api.openapi import document
from conveyor.api.problems import ApiProblem, problem_response
from conveyor.api.routing import Context, Operation, guarded
from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.api")

#: Every operation of the API, in the order of the document.
OPERATIONS: tuple[Operation, ...] = (
    *jobs.OPERATIONS,
    *resources.OPERATIONS,
    *workflows.OPERATIONS,
)
#: Room for a job's arguments at the payload limit plus its options, or a batch of small jobs.
MIN_BODY_BYTES = 1024 * 1024


def create_app(
    conveyor_app: Conveyor,
    *,
    rate_limit: float | None = 100.0,
    burst: float | None = None,
    max_body_bytes: int | None = None,
    metrics_registry: CollectorRegistry | None = None,
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """Return the REST API of `conveyor_app` as a Starlette app (docs/api.md).

    Callers authenticate with `Authorization: Bearer <token>` (`conveyor token create`); while
    no live token exists, only loopback callers are answered. `rate_limit` is each token's
    requests a second in this process (None: unlimited), with bursts of `burst` (default: one
    second's worth); `max_body_bytes` bounds request bodies (default: 1 MiB, or the app's
    payload limit plus 64 KiB if larger). `clock` (monotonic seconds) is the rate limit's.
    """
    if rate_limit is not None and not rate_limit > 0:
        raise ConfigError(f"rate_limit must be > 0 requests a second (or None), got {rate_limit}")
    limit = max_body_bytes or max(MIN_BODY_BYTES, conveyor_app.max_payload_bytes + 64 * 1024)
    if limit <= 0:
        raise ConfigError(f"max_body_bytes must be positive, got {max_body_bytes}")
    limiter = None
    if rate_limit is not None:
        bucket = max(1.0, burst if burst is not None else rate_limit)
        limiter = RateLimiter(rate_limit, bucket, clock or time.monotonic)
    context = Context(conveyor_app, limiter, limit)
    metrics = ApiMetrics(metrics_registry)
    routes = [
        Route(op.path, op.endpoint(context), methods=[op.method], name=op.operation_id)
        for op in OPERATIONS
    ]
    routes += [
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/metrics", _metrics_endpoint(context, metrics), methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await conveyor_app.aclose()

    return Starlette(
        routes=routes,
        middleware=[Middleware(Observe, metrics=metrics)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )


async def _openapi(request: Request) -> Response:
    request.state.route = "/openapi.json"
    server = request.scope.get("root_path", "") or "/"
    text = json.dumps(document(OPERATIONS, api_version(), server), ensure_ascii=False)
    return Response(text, media_type="application/json")


def _metrics_endpoint(context: Context, metrics: ApiMetrics) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        request.state.route = "/metrics"
        try:
            principal = await guarded(authenticate(request, context.app._connections))
            principal.require("read")
            if context.limiter is not None:
                context.limiter.take(principal.token_id)
        except ApiProblem as problem:
            return problem.response(request.url.path)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        problem = ApiProblem("method-not-allowed", f"{request.method} is not allowed on this path")
    else:
        problem = ApiProblem(
            "not-found", f"no route {request.url.path}; GET /openapi.json lists every route"
        )
    return problem_response(problem, request.url.path)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("request failed: %s %s", request.method, request.url.path, exc_info=exc)
    body = {
        "type": "https://conveyor.dev/problems/internal",
        "title": "Internal error",
        "status": 500,
        "detail": "the API failed on this request; its log has the traceback",
    }
    return Response(json.dumps(body), 500, media_type="application/problem+json")


def api_version() -> str:
    """The version the document states: the installed package's."""
    try:
        return version("conveyor")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0"
