"""API tokens: what a caller of the REST API (docs/api.md) presents, and what each may do.

A token is `cvk_` and 32 random bytes (URL-safe base64). It is shown once, when made; the
database keeps only its SHA-256 hash, which a request's token is looked up by (an index),
and then compared with in constant time, and a short prefix to tell tokens apart in a list.

Scopes: `enqueue` (add jobs, start workflow runs, send events), `read` (look at jobs, queues,
endpoints and runs), `admin` (everything, the two others included: retry, cancel, pause,
endpoints).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from conveyor.errors import ConfigError

Scope = Literal["enqueue", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("enqueue", "read", "admin")
TOKEN_PREFIX = "cvk_"
#: Characters of a token kept in the clear, to tell tokens apart (`cvk_` and 6 more).
SHOWN_CHARACTERS = 10


@dataclass(frozen=True)
class ApiToken:
    """A token as stored (never its secret)."""

    id: int
    name: str
    scopes: tuple[Scope, ...]
    #: The token's first characters, e.g. 'cvk_Xy3a9Q'.
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows(self, scope: Scope) -> bool:
        """True when this token may do what `scope` covers (admin covers every scope)."""
        return allows(self.scopes, scope)


def allows(held: Iterable[str], needed: Scope) -> bool:
    """True when scopes `held` cover `needed`: admin covers enqueue and read."""
    held = set(held)
    return needed in held or "admin" in held


def check_scopes(scopes: Iterable[str]) -> tuple[Scope, ...]:
    """The scopes, checked and in a stable order; ConfigError naming the valid ones."""
    given = list(scopes)
    unknown = sorted(set(given) - set(SCOPES))
    if unknown or not given:
        what = f"unknown scope(s) {', '.join(map(repr, unknown))}" if unknown else "no scope"
        raise ConfigError(f"{what}: a token's scope is one or more of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def check_name(name: str) -> str:
    """A token name: 1 to 200 characters, no NUL."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\x00" in name:
        raise ConfigError(f"a token name must be 1 to 200 characters, got {name!r}")
    return name


def new_secret() -> str:
    """A fresh token: `cvk_` and 32 random bytes."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    """The SHA-256 of a token: what the database keeps and looks tokens up by."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def same_hash(given: bytes, stored: bytes) -> bool:
    """Compare two token hashes in constant time."""
    return hmac.compare_digest(given, stored)
