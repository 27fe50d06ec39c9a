"""Who is calling and how much: the bearer token and its scopes, the loopback rule, the
per-token rate limit, and the bounded request body."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from conveyor._store import api as api_ops
from conveyor._store.runner import arun
from conveyor.api.problems import ApiProblem
from conveyor.connections import Connections
from conveyor.http_auth import is_loopback
from conveyor.tokens import Scope, allows, hash_secret, same_hash

#: The principal of a loopback caller while no token exists: id 0, every scope.
LOOPBACK = "loopback"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class Principal:
    """The caller: its token's id (0 for a loopback caller without one), name and scopes."""

    token_id: int
    name: str
    scopes: tuple[Scope, ...]

    def require(self, scope: Scope) -> None:
        """Raise a 403 problem unless the caller's scopes cover `scope`."""
        if not allows(self.scopes, scope):
            raise ApiProblem(
                "forbidden",
                f"this needs the {scope!r} scope and token {self.name!r} has"
                f" {', '.join(self.scopes)}; use a token made with"
                f" `conveyor token create --scope {scope}`"
                + ("" if scope == "admin" else " (or --scope admin)"),
            )


async def authenticate(request: Request, connections: Connections) -> Principal:
    """The caller of `request`, from its bearer token; without one, a loopback caller while no
    token exists. Raise a 401 problem otherwise. Every call asks the database: a revoked token
    fails on its next request."""
    header = request.headers.get("authorization")
    async with connections.aconnection() as conn:
        if header is None:
            if _loopback_request(request) and not await arun(conn, api_ops.token_any_live()):
                return Principal(0, LOOPBACK, ("admin",))
            raise _unauthorized("send Authorization: Bearer <token> (`conveyor token create`)")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        digest = hash_secret(secret.strip())
        found = await arun(conn, api_ops.token_authenticate(digest))
    # looked up by its hash (an index), then compared in constant time all the same
    if found is None or not same_hash(digest, found.hash):
        raise _unauthorized(
            "the token is unknown or revoked; make one with `conveyor token create`"
        )
    return Principal(found.id, found.name, found.scopes)


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(
        "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="conveyor"'}
    )


def _loopback_request(request: Request) -> bool:
    """From this machine, to a loopback name: a web page whose domain was rebound to
    127.0.0.1 sends another Host, and is refused."""
    client = request.client.host if request.client else ""
    host = request.headers.get("host", "")
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    return is_loopback(client) and is_loopback(name)


@dataclass
class RateLimiter:
    """A token bucket per token, in this process's memory: `rate` requests a second with
    bursts of `burst`. Several API processes each allow the rate (docs/api.md)."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def take(self, token_id: int) -> None:
        """Spend one request of `token_id`'s bucket; a 429 problem with Retry-After if empty."""
        now = self.clock()
        level, since = self._buckets.get(token_id, (self.burst, now))
        level = min(self.burst, level + (now - since) * self.rate)
        if level < 1.0:
            self._buckets[token_id] = (level, now)
            wait = max(1, math.ceil((1.0 - level) / self.rate))
            raise ApiProblem(
                "rate-limited",
                f"over {self.rate:g} requests a second for this token; retry after {wait} s"
                " (or ask for a higher --rate-limit)",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[token_id] = (level - 1.0, now)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiProblem:
    return ApiProblem(
        "payload-too-large",
        f"the body is {'at least ' if size else ''}{size:,} bytes, over the {limit:,}-byte limit;"
        " send fewer jobs per batch, or store large data elsewhere and pass its id",
    )


def correlation_id(request: Request) -> str:
    """The request's id: its X-Request-Id, else its traceparent's trace id, else a new one."""
    given = request.headers.get("x-request-id", "").strip()
    if given and len(given) <= 255 and given.isprintable():
        return given
    found = _TRACEPARENT.match(request.headers.get("traceparent", "").strip())
    if found:
        return found.group(1)
    return uuid.uuid4().hex


def trace_context(request: Request) -> dict[str, str] | None:
    """The W3C trace headers of the request, carried to the jobs it enqueues (a worker's span
    is then a child of the caller's); None without a valid traceparent."""
    parent = request.headers.get("traceparent", "").strip()
    if not _TRACEPARENT.match(parent):
        return None
    state = request.headers.get("tracestate")
    return {"traceparent": parent, **({"tracestate": state} if state else {})}
