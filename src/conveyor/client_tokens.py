"""The Client's API-token methods (`conveyor token`, docs/api.md), mixed into Client and
AsyncClient so that client.py stays one concept per screen."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TypeVar

from conveyor._store import api
from conveyor._store.ops import Op, Plan
from conveyor.tokens import (
    SHOWN_CHARACTERS,
    ApiToken,
    check_name,
    check_scopes,
    hash_secret,
    new_secret,
)

T = TypeVar("T")


def _create(name: str, scopes: Iterable[str]) -> tuple[Op[ApiToken], str]:
    secret = new_secret()
    op = api.token_insert(
        check_name(name), check_scopes(scopes), secret[:SHOWN_CHARACTERS], hash_secret(secret)
    )
    return op, secret


class TokenMethods:
    """Client's token methods."""

    def _run(self, work: Op[T] | Plan[T]) -> T:
        raise NotImplementedError

    def create_token(self, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
        """Make an API token with these scopes (enqueue, read, admin); return it and its
        secret, which is shown only now: the database keeps a hash. ConfigError when a live
        token has the name."""
        op, secret = _create(name, scopes)
        return self._run(op), secret

    def tokens(self) -> list[ApiToken]:
        """Every API token (live ones first), without secrets."""
        return self._run(api.token_list())

    def revoke_token(self, name: str) -> bool:
        """Revoke the live token of this name (or id); it fails from the next request on.
        False when there is none."""
        return self._run(api.token_revoke(name))


class AsyncTokenMethods:
    """AsyncClient's token methods (async twins of TokenMethods)."""

    def _run(self, work: Op[T] | Plan[T]) -> Awaitable[T]:
        raise NotImplementedError

    async def create_token(self, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
        """Async twin of Client.create_token()."""
        op, secret = _create(name, scopes)
        return await self._run(op), secret

    async def tokens(self) -> list[ApiToken]:
        """Async twin of Client.tokens()."""
        return await self._run(api.token_list())

    async def revoke_token(self, name: str) -> bool:
        """Async twin of Client.revoke_token()."""
        return await self._run(api.token_revoke(name))
