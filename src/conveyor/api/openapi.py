"""The OpenAPI 3.1 document, made from the operations (routing.py) and the pydantic models:
every route, parameter, body, response and error, so clients can be generated from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from conveyor.api.models import Problem
from conveyor.api.problems import PROBLEM_JSON, TYPES
from conveyor.api.routing import IDEMPOTENCY_KEY, Operation

REF = "#/components/schemas/{model}"
_TITLES = {status: title for status, title in TYPES.values()}
DESCRIPTION = (
    "Enqueue, inspect and steer Conveyor jobs and workflows over HTTP (docs/api.md). Send"
    " `Authorization: Bearer <token>` (tokens: `conveyor token create --scope"
    " enqueue|read|admin`; admin covers the other two). `X-Request-Id` or `traceparent`"
    " becomes the correlation id of the jobs a request enqueues. A POST with an"
    " `Idempotency-Key` header is answered, for 24 hours, with its first response."
)


def document(operations: Iterable[Operation], version: str, server: str = "/") -> dict[str, Any]:
    """The OpenAPI document of `operations`."""
    ops = list(operations)
    schemas = _schemas(ops)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
    paths["/metrics"] = {"get": _metrics()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Conveyor API", "version": version, "description": DESCRIPTION},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _schemas(ops: list[Operation]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    for op in ops:
        for model in (op.body, op.query):
            if model is not None:
                models.append((model, "validation"))
        models += [(m, "serialization") for m in op.responses.values() if m is not None]
    unique = list(dict.fromkeys(models))
    _, found = models_json_schema(unique, ref_template=REF)
    return dict(sorted(found.get("$defs", {}).items()))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "description": f"Needs the `{op.scope}` scope (or admin).",
        "parameters": _parameters(op, schemas),
        "responses": {},
    }
    if op.body is not None:
        content = {"application/json": {"schema": _ref(op.body)}}
        out["requestBody"] = {"required": True, "content": content}
    for status, model in sorted(op.responses.items()):
        answer: dict[str, Any] = {"description": "OK" if status < 300 else "Done"}
        if model is not None:
            answer["content"] = {"application/json": {"schema": _ref(model)}}
        out["responses"][str(status)] = answer
    for status in op.error_statuses:
        out["responses"][str(status)] = _problem(status)
    if not out["parameters"]:
        del out["parameters"]
    return out


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, kind in op.params.items():
        schema: dict[str, Any] = {"type": kind, "minLength": 1, "pattern": r"^[^/\u0000]+$"}
        if kind == "integer":
            schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if op.query is not None:
        properties = schemas[op.query.__name__]["properties"]
        for name, schema in properties.items():
            params.append(
                {"name": name, "in": "query", "required": False, "schema": _not_null(schema)}
            )
    if op.method == "POST":
        key = {"type": "string", "pattern": IDEMPOTENCY_KEY.pattern}
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A retried request with this key gets the first response (24 h).",
                "schema": key,
            }
        )
    return params


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without its null branch: a query string cannot say null."""
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    if len(branches) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest, **branches[0]}


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": _TITLES.get(status, "Error"),
        "content": {PROBLEM_JSON: {"schema": _ref(Problem)}},
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics of this API process",
        "tags": ["metrics"],
        "description": "Needs the `read` scope (or admin).",
        "responses": {
            "200": {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **{str(s): _problem(s) for s in (401, 403, 429, 503)},
        },
    }
