"""REST API operations: its tokens (conveyor.api_token) and idempotency records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor._store.ops import Op, Row, Rows, found, rowcount
from conveyor.errors import ConfigError
from conveyor.tokens import ApiToken, Scope

#: How long the first response to an Idempotency-Key is kept (and replayed).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Authenticated:
    """The live token a request's secret hashes to: its id, name, scopes and stored hash."""

    id: int
    name: str
    scopes: tuple[Scope, ...]
    hash: bytes


@dataclass(frozen=True)
class StoredResponse:
    """The first response to an idempotency key, and the fingerprint of its request."""

    fingerprint: bytes
    status: int | None
    body: Any


def _token(row: Row) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        prefix=row["prefix"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def token_insert(name: str, scopes: Sequence[Scope], prefix: str, digest: bytes) -> Op[ApiToken]:
    def read(rows: Rows) -> ApiToken:
        if not rows:
            raise ConfigError(
                f"a live token named {name!r} exists already; revoke it first"
                f" (`conveyor token revoke {name}`) or choose another name"
            )
        return _token(rows[0])

    params = {"name": name, "scopes": list(scopes), "prefix": prefix, "hash": digest}
    return Op("api_token_insert", params, read)


def token_list() -> Op[list[ApiToken]]:
    return Op("api_token_list", {}, lambda rows: [_token(row) for row in rows])


def token_revoke(name: str) -> Op[bool]:
    return Op("api_token_revoke", {"name": name}, found)


def token_authenticate(digest: bytes) -> Op[Authenticated | None]:
    def read(rows: Rows) -> Authenticated | None:
        if not rows:
            return None
        row = rows[0]
        return Authenticated(row["id"], row["name"], tuple(row["scopes"]), bytes(row["hash"]))

    return Op("api_token_authenticate", {"hash": digest}, read)


def token_any_live() -> Op[bool]:
    return Op("api_token_any_live", {}, lambda rows: bool(rows[0]["live"]))


def idempotency_claim(token_id: int, key: str, fingerprint: bytes) -> Op[bool]:
    params = {
        "token_id": token_id,
        "key": key,
        "fingerprint": fingerprint,
        "ttl_seconds": IDEMPOTENCY_TTL_SECONDS,
    }
    return Op("api_idempotency_claim", params, found)


def idempotency_get(token_id: int, key: str) -> Op[StoredResponse | None]:
    def read(rows: Rows) -> StoredResponse | None:
        if not rows:
            return None
        row = rows[0]
        return StoredResponse(bytes(row["fingerprint"]), row["status"], row["body"])

    return Op("api_idempotency_get", {"token_id": token_id, "key": key}, read)


def idempotency_store(token_id: int, key: str, status: int, body: Any) -> Op[None]:
    params = {"token_id": token_id, "key": key, "status": status, "body": json.dumps(body)}
    return Op("api_idempotency_store", params, lambda rows: None)


def idempotency_prune(now: datetime | None) -> Op[int]:
    params = {"now": now, "ttl_seconds": IDEMPOTENCY_TTL_SECONDS}
    return Op("api_idempotency_prune", params, rowcount)
