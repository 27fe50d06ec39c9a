"""Operations: each route of the API as data (method, path, scope, body, query, responses,
handler), from which both the Starlette routes and the OpenAPI document are made, so the two
cannot drift apart. One pipeline runs them all: authenticate, check the scope, rate-limit, read
the bounded body, validate, then run the handler, a POST in one transaction with its
Idempotency-Key record."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from conveyor._store import api as api_ops
from conveyor._store.runner import arun
from conveyor.api.guard import Principal, RateLimiter, authenticate, read_body
from conveyor.api.models import INT64
from conveyor.api.problems import ApiProblem, from_error, validation_problem
from conveyor.tokens import Scope

if TYPE_CHECKING:
    from conveyor.app import Conveyor

#: An Idempotency-Key: 1 to 255 visible ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,255}$")
#: Statuses every operation may answer besides its own.
COMMON_ERRORS = (400, 401, 403, 422, 429, 503)
BODY_ERRORS = (413, 415)


@dataclass(frozen=True)
class Context:
    """What every handler may use: the app, and the API's settings."""

    app: Conveyor
    limiter: RateLimiter | None
    max_body_bytes: int


@dataclass(frozen=True)
class Call:
    """One request, validated: its caller, connection (inside a transaction for a POST or a
    DELETE), path parameters, query, body, and correlation id."""

    context: Context
    principal: Principal
    conn: Any
    path: Mapping[str, Any]
    query: Any
    body: Any
    correlation_id: str
    trace_context: dict[str, str] | None


@dataclass(frozen=True)
class Reply:
    """A handler's answer: its status and body (None: no content)."""

    status: int
    body: BaseModel | None = None


Handler = Callable[[Call], Awaitable[Reply]]
ParamType = Literal["integer", "string"]


@dataclass(frozen=True)
class Operation:
    """One route: everything the pipeline and the OpenAPI document need to know of it."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    operation_id: str
    summary: str
    scope: Scope
    handler: Handler
    #: success status -> body model (None: no content)
    responses: Mapping[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    #: path parameter -> its type
    params: Mapping[str, ParamType] = field(default_factory=dict)
    #: statuses of this route's own refusals (404, 409), beside COMMON_ERRORS
    errors: tuple[int, ...] = ()
    tag: str = "jobs"
    #: False for a handler whose one statement is atomic by itself: without an idempotency key
    #: it runs on an autocommit connection, one round trip instead of BEGIN, it and COMMIT
    atomic: bool = True

    @property
    def error_statuses(self) -> tuple[int, ...]:
        """Every refusal status this operation may answer."""
        extra = BODY_ERRORS if self.body is not None else ()
        return tuple(sorted({*COMMON_ERRORS, *extra, *self.errors}))

    def endpoint(self, context: Context) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette endpoint running this operation."""

        async def run(request: Request) -> Response:
            request.state.route = self.path
            try:
                return await _pipeline(self, context, request)
            except ApiProblem as problem:
                return problem.response(request.url.path)

        return run


async def _pipeline(op: Operation, context: Context, request: Request) -> Response:
    connections = context.app._connections
    principal = await guarded(authenticate(request, connections))
    request.state.principal = principal.name
    principal.require(op.scope)
    if context.limiter is not None:
        context.limiter.take(principal.token_id)
    path = _path_params(op, request)
    query = _validate(op.query, dict(request.query_params), "query") if op.query else None
    raw = b""
    if op.body is not None:
        _check_json(request)
        raw = await read_body(request, context.max_body_bytes)
        body = _parse(op.body, raw)
    else:
        body = None
    key = _idempotency_key(request) if op.method == "POST" else None

    async def work(conn: Any) -> Reply:
        call = Call(
            context,
            principal,
            conn,
            path,
            query,
            body,
            request.state.correlation_id,
            request.state.trace_context,
        )
        return await op.handler(call)

    if op.method == "GET":
        status, content = await guarded(_on_connection(connections, work))
        return _json(status, content)
    fingerprint = hashlib.sha256(f"{op.method} {request.url.path}\n".encode() + raw).digest()
    if key is None and not op.atomic:
        status, content = await guarded(_on_connection(connections, work))
        return _json(status, content)
    status, content, replayed = await guarded(
        _in_transaction(connections, principal, key, fingerprint, work)
    )
    response = _json(status, content)
    if key is not None:
        response.headers["idempotent-replayed"] = "true" if replayed else "false"
    return response


async def guarded(work: Awaitable[Any]) -> Any:
    """Await `work`, turning Conveyor's errors (and refused values) into problems."""
    try:
        return await work
    except ApiProblem:
        raise
    except Exception as exc:
        problem = from_error(exc)
        if problem is None:
            raise
        raise problem from exc


async def _on_connection(
    connections: Any, work: Callable[[Any], Awaitable[Reply]]
) -> tuple[int, Any]:
    async with connections.aconnection() as conn:
        reply = await work(conn)
    return reply.status, _content(reply)


async def _in_transaction(
    connections: Any,
    principal: Principal,
    key: str | None,
    fingerprint: bytes,
    work: Callable[[Any], Awaitable[Reply]],
) -> tuple[int, Any, bool]:
    """Run `work` in one transaction; with an idempotency key, claim the key first and store
    the response in the same transaction, or answer the stored response of the first."""
    async with connections.aconnection() as conn:
        async with conn.transaction():
            if key is None or await arun(
                conn, api_ops.idempotency_claim(principal.token_id, key, fingerprint)
            ):
                reply = await work(conn)
                content = _content(reply)
                if key is not None:
                    store = api_ops.idempotency_store(
                        principal.token_id, key, reply.status, content
                    )
                    await arun(conn, store)
                return reply.status, content, False
        # the key is taken (a concurrent first request waited for above has committed)
        stored = await arun(conn, api_ops.idempotency_get(principal.token_id, key))
    if stored is None or stored.status is None or stored.fingerprint != fingerprint:
        raise ApiProblem(
            "idempotency-key-reused",
            f"Idempotency-Key {key!r} was used within 24 hours for a different request (another"
            " path or body); use a new key for a new request",
        )
    return stored.status, stored.body, True


def _content(reply: Reply) -> Any:
    return None if reply.body is None else reply.body.model_dump(mode="json")


def _json(status: int, content: Any) -> Response:
    if content is None:
        return Response(status_code=status)
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status, media_type="application/json")


def _check_json(request: Request) -> None:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiProblem(
            "unsupported-media-type",
            f"the body must be JSON sent with Content-Type: application/json, got {media!r}",
        )


def _parse(model: type[BaseModel], raw: bytes) -> BaseModel:
    if not raw.strip():
        raise ApiProblem("bad-request", "the body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            first = exc.errors()[0]
            raise ApiProblem("bad-request", f"the body is not valid JSON: {first['msg']}") from None
        raise validation_problem("body", exc.errors()) from None


def _validate(model: type[BaseModel], values: dict[str, str], where: str) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_problem(where, exc.errors()) from None


def _path_params(op: Operation, request: Request) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, kind in op.params.items():
        text = str(request.path_params[name])
        if "\x00" in text or not text:
            raise ApiProblem("invalid-request", f"path parameter {name} must not be empty or NUL")
        if kind == "integer":
            if not text.isdigit() or not 1 <= int(text) <= INT64:
                raise ApiProblem(
                    "invalid-request", f"{name} must be a positive integer (a job id), got {text!r}"
                )
            found[name] = int(text)
        else:
            found[name] = text
    return found


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise ApiProblem(
            "invalid-request",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (e.g. a UUID)",
        )
    return key
