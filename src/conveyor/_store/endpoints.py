"""Endpoint operations: add, change, remove and read HTTP endpoints (conveyor.endpoint)."""

from __future__ import annotations

from typing import Any

from conveyor._store.ops import Op, Row, Rows, found
from conveyor.endpoints import Endpoint
from conveyor.errors import ConfigError, EndpointNotFoundError


def _params(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "secrets": list(endpoint.secrets),
        "timeout_seconds": endpoint.timeout,
        "queue": endpoint.queue,
        "retry_4xx": endpoint.retry_4xx,
    }


def endpoint_from_row(row: Row) -> Endpoint:
    """The stored endpoint; one that fails the checks (written by hand) comes back with its
    `problem`, so listing still works and its deliveries fail saying why."""
    fields = {
        "name": row["name"],
        "url": row["url"],
        "secrets": tuple(row["secrets"]),
        "timeout": row["timeout_seconds"],
        "queue": row["queue"],
        "retry_4xx": row["retry_4xx"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    try:
        return Endpoint(**fields)
    except ConfigError as exc:
        return Endpoint(**fields, problem=str(exc))


def insert(endpoint: Endpoint) -> Op[None]:
    def read(rows: Rows) -> None:
        if not rows:
            raise ConfigError(
                f"an endpoint named {endpoint.name!r} exists already; change it with"
                f" `conveyor endpoint set {endpoint.name} ...`"
            )

    return Op("endpoint_insert", _params(endpoint), read)


def upsert(endpoint: Endpoint) -> Op[bool]:
    """Add or replace; True when something changed."""
    return Op("endpoint_upsert", _params(endpoint), found)


def update(name: str, changes: dict[str, Any]) -> Op[None]:
    params = {
        "name": name,
        "url": None,
        "secrets": None,
        "add_secret": None,
        "timeout_seconds": None,
        "queue": None,
        "retry_4xx": None,
        **changes,
    }

    def read(rows: Rows) -> None:
        if not rows:
            raise _not_found(name)

    return Op("endpoint_update", params, read)


def remove(name: str) -> Op[None]:
    def read(rows: Rows) -> None:
        if not rows:
            raise _not_found(name)

    return Op("endpoint_remove", {"name": name}, read)


def list_all() -> Op[list[Endpoint]]:
    return Op("endpoint_list", {"name": None}, lambda rows: [endpoint_from_row(r) for r in rows])


def get(name: str) -> Op[Endpoint]:
    def read(rows: Rows) -> Endpoint:
        if not rows:
            raise _not_found(name)
        return endpoint_from_row(rows[0])

    return Op("endpoint_list", {"name": name}, read)


def _not_found(name: str) -> EndpointNotFoundError:
    return EndpointNotFoundError(
        f"no endpoint named {name!r}; `conveyor endpoint list` shows the endpoints"
    )
