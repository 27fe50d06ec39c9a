"""Errors as `application/problem+json` (RFC 9457): a type naming the problem, a title, and a
detail that says what to fix. Every refusal of the API goes through here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

from conveyor.api.models import FieldProblem, Problem
from conveyor.errors import (
    ConfigError,
    DatabaseUnavailableError,
    EndpointNotFoundError,
    JobNotFoundError,
    PayloadError,
    QueueFullError,
    SchemaError,
    UniqueKeyRaceError,
    WorkflowNotFoundError,
)

PROBLEM_JSON = "application/problem+json"
#: Problem types are URIs relative to this one; docs/api.md lists them.
TYPE_BASE = "https://conveyor.dev/problems/"

#: Every problem type: its status and title (docs/api.md#errors explains each one).
TYPES: Mapping[str, tuple[int, str]] = {
    "bad-request": (400, "The request could not be read"),
    "unauthorized": (401, "A valid API token is needed"),
    "forbidden": (403, "The token's scope does not allow this"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed here"),
    "conflict": (409, "The resource is not in a state that allows this"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "The request body must be JSON"),
    "invalid-request": (422, "The request is not valid"),
    "idempotency-key-reused": (422, "The Idempotency-Key was used for another request"),
    "rate-limited": (429, "Too many requests for this token"),
    "unavailable": (503, "The database cannot be reached"),
    "queue-full": (503, "The queue is full"),
    "schema-outdated": (503, "The database schema is older than this Conveyor"),
}


class ApiProblem(Exception):  # noqa: N818 - it is answered, not an error of the API
    """Raised anywhere in a request: answered as a problem document."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        errors: Sequence[FieldProblem] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status, self.title = TYPES[kind]
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def response(self, instance: str | None = None) -> Response:
        """This problem as an application/problem+json response."""
        return problem_response(self, instance)


def problem_response(problem: ApiProblem, instance: str | None = None) -> Response:
    """The response for `problem`, `instance` being the request's path."""
    body = Problem(
        type=TYPE_BASE + problem.kind,
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        instance=instance,
        errors=problem.errors,
    )
    content = body.model_dump(mode="json", exclude_none=True)
    return Response(
        json.dumps(content, ensure_ascii=False),
        problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def from_error(exc: Exception) -> ApiProblem | None:
    """The problem a Conveyor error (or a refused value) stands for; None for a bug."""
    if isinstance(exc, JobNotFoundError | EndpointNotFoundError | WorkflowNotFoundError):
        return ApiProblem("not-found", str(exc))
    if isinstance(exc, QueueFullError):
        return ApiProblem("queue-full", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, PayloadError | ConfigError):
        return ApiProblem("invalid-request", str(exc))
    if isinstance(exc, DatabaseUnavailableError | UniqueKeyRaceError):
        return ApiProblem("unavailable", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, SchemaError):
        return ApiProblem("schema-outdated", str(exc))
    return _database_refusal(exc)


def _database_refusal(exc: Exception) -> ApiProblem | None:
    """A value the database refused (a check, a range, a function's RAISE): the client's to
    fix, so 422 with the database's own message; a lost connection: 503."""
    import psycopg

    from conveyor.migrate import schema_missing

    missing = schema_missing(exc)
    if missing is not None:
        return ApiProblem("schema-outdated", str(missing))
    if isinstance(exc, psycopg.errors.DataError | psycopg.errors.IntegrityError):
        return ApiProblem("invalid-request", _first_line(exc))
    if isinstance(exc, psycopg.errors.RaiseException):
        return ApiProblem("invalid-request", _first_line(exc))
    if isinstance(exc, psycopg.OperationalError):
        return ApiProblem(
            "unavailable", f"the database failed: {_first_line(exc)}", headers={"Retry-After": "1"}
        )
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def validation_problem(where: str, errors: Sequence[Mapping[str, Any]]) -> ApiProblem:
    """A 422 listing each invalid field of pydantic's `errors` under `where` (body, query)."""
    found = [
        FieldProblem(location=_location(where, error.get("loc", ())), message=error["msg"])
        for error in errors
    ]
    listed = "; ".join(f"{p.location}: {p.message}" for p in found[:5])
    return ApiProblem("invalid-request", f"fix these fields: {listed}", errors=found)


def _location(where: str, loc: Sequence[Any]) -> str:
    text = where
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
