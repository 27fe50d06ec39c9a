"""SchemaGuard: answer 503 with the fix ("run `conveyor migrate`") while the database's schema
is not the one this Conveyor expects, instead of failing every page with a database error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.errors import SchemaError

#: A schema found wrong is checked again after this many seconds (someone may have migrated).
RECHECK_SECONDS = 5.0


class SchemaGuard:
    """Checks the schema on the first request (mounted apps get no startup event of their own)
    and, once it is right, never again; while it is wrong, rechecks every few seconds."""

    def __init__(
        self,
        app: ASGIApp,
        check: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._check = check
        self._monotonic = monotonic
        self._ok = False
        self._problem: str | None = None
        self._checked_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._ok:
            problem = await self._problem_now()
            if problem is not None:
                response = PlainTextResponse(
                    f"Conveyor dashboard: {problem}\n",
                    status_code=503,
                    headers={"Retry-After": "5"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _problem_now(self) -> str | None:
        if self._problem is not None and self._monotonic() - self._checked_at < RECHECK_SECONDS:
            return self._problem
        try:
            await asyncio.to_thread(self._check)
        except SchemaError as exc:
            self._problem, self._checked_at = str(exc), self._monotonic()
            return self._problem
        self._ok, self._problem = True, None
        return None
