"""JobContext: what a handler that asks for it receives about its job and its attempt."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from conveyor import codec, logs
from conveyor._store.caller import run_async, run_sync
from conveyor._store.queries import sql
from conveyor.cron import slot_of_key
from conveyor.errors import BlockingCallError
from conveyor.job import Job

log = logging.getLogger("conveyor.job")

IdempotencyGet = Callable[[str], Coroutine[Any, Any, tuple[bool, Any]]]

#: Progress writes closer together than this are skipped (the last value always goes out).
PROGRESS_INTERVAL = 0.25


class FlowAccess(Protocol):
    """What a context needs of the store for progress and a parent's children."""

    async def flow_children(self, parent_id: int) -> list[Job]: ...

    async def job_set_progress(
        self, job_id: int, token: UUID, value: float, message: str | None
    ) -> bool: ...


class JobContext:
    """Handed to a handler that declares a parameter annotated `JobContext`.

    `conn` is the open transaction of an `atomic=True` task (psycopg, sync or async to match
    the handler): write to it, and the job is marked completed in that same transaction.
    """

    def __init__(
        self,
        job: Job,
        *,
        loop: asyncio.AbstractEventLoop,
        idempotency_get: IdempotencyGet,
        conn: Any = None,
        token: UUID | None = None,
        flows: FlowAccess | None = None,
    ) -> None:
        self.job = job
        self.conn = conn
        self._token = token
        self._flows = flows
        self._progress_at = 0.0
        #: A logger whose lines carry this job's id, task, queue, attempt and correlation id.
        self.logger = logging.LoggerAdapter(log, logs.job_fields(job))
        self._loop = loop
        self._idempotency_get = idempotency_get
        self._keys: dict[str, str | None] = {}

    @property
    def correlation_id(self) -> str | None:
        """The id given at enqueue (or taken from the enqueuer's context); jobs this handler
        enqueues get it too."""
        return self.job.correlation_id

    @property
    def attempt(self) -> int:
        """This attempt's number, 1 for the first run."""
        return self.job.attempt

    @property
    def cron_slot(self) -> datetime | None:
        """The scheduled time (UTC) a cron schedule enqueued this job for; None for a job
        enqueued otherwise."""
        return slot_of_key(self.job.unique_key)

    async def aprogress(self, value: float, message: str | None = None) -> None:
        """Report how far the job got (e.g. 40, "resized 4 of 10"); readable at once through
        Client.get_job(id).progress and `conveyor jobs show`. Writes closer together than
        0.25 s are skipped, except a value of 100 or more."""
        if self._flows is None or self._token is None:
            return  # run inline (testing helpers): nothing to record
        now = time.monotonic()
        if value < 100 and now - self._progress_at < PROGRESS_INTERVAL:
            return
        self._progress_at = now
        await self._flows.job_set_progress(self.job.id, self._token, float(value), message)

    def progress(self, value: float, message: str | None = None) -> None:
        """Sync twin of aprogress(), for sync handlers (they run in a thread)."""
        if _on_loop(self._loop):
            raise BlockingCallError(
                "progress() would block the event loop; use await ctx.aprogress()"
            )
        asyncio.run_coroutine_threadsafe(self.aprogress(value, message), self._loop).result()

    async def achildren(self) -> list[Job]:
        """This flow parent's children, in the order given, with their state and result."""
        if self._flows is None:
            return []
        return await self._flows.flow_children(self.job.id)

    def children(self) -> list[Job]:
        """Sync twin of achildren(), for sync handlers."""
        if _on_loop(self._loop):
            raise BlockingCallError(
                "children() would block the event loop; use await ctx.achildren()"
            )
        return asyncio.run_coroutine_threadsafe(self.achildren(), self._loop).result()

    @property
    def idempotency_keys(self) -> tuple[tuple[str, str | None], ...]:
        """Keys claimed by this attempt, to be stored when the job completes."""
        return tuple(self._keys.items())

    def once(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` unless a completed job already claimed `key`; return its stored result.

        The key is stored only when this job completes, so a crash or a failed attempt never
        burns it. In an atomic task it is claimed in the job's own transaction, which also
        makes a concurrent job with the same key wait for this one. Use from sync handlers.
        """
        codec.check_key(key, "the idempotency key given to once()")
        if inspect.iscoroutinefunction(fn):
            raise BlockingCallError("once() runs sync functions; in an async handler use aonce()")
        if _on_loop(self._loop):
            raise BlockingCallError(
                "once() would block the event loop; in an async handler use aonce()"
            )
        if key in self._keys:
            return _decoded(self._keys[key])
        if self.conn is not None:
            return self._once_in_transaction(key, fn, args, kwargs)
        seen, result = asyncio.run_coroutine_threadsafe(
            self._idempotency_get(key), self._loop
        ).result()
        if seen:
            return result
        value = fn(*args, **kwargs)
        self._keys[key] = codec.encode_result(value)
        return value

    async def aonce(
        self, key: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """Async twin of once(): awaits `fn` unless `key` was already claimed."""
        codec.check_key(key, "the idempotency key given to aonce()")
        if key in self._keys:
            return _decoded(self._keys[key])
        if self.conn is not None:
            params = {"key": key, "job_id": self.job.id, "result": None, "now": None}
            if not await run_async(self.conn, sql("idempotency_claim"), params):
                rows = await run_async(self.conn, sql("idempotency_get"), {"key": key})
                return rows[0]["result"]
            value = await fn(*args, **kwargs)
            encoded = codec.encode_result(value)
            await run_async(
                self.conn, sql("idempotency_set_result"), {"key": key, "result": encoded}
            )
            self._keys[key] = encoded
            return value
        seen, result = await self._idempotency_get(key)
        if seen:
            return result
        value = await fn(*args, **kwargs)
        self._keys[key] = codec.encode_result(value)
        return value

    def _once_in_transaction(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        params = {"key": key, "job_id": self.job.id, "result": None, "now": None}
        if not run_sync(self.conn, sql("idempotency_claim"), params):
            return run_sync(self.conn, sql("idempotency_get"), {"key": key})[0]["result"]
        value = fn(*args, **kwargs)
        encoded = codec.encode_result(value)
        run_sync(self.conn, sql("idempotency_set_result"), {"key": key, "result": encoded})
        self._keys[key] = encoded
        return value


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _decoded(encoded: str | None) -> Any:
    return None if encoded is None else codec.decode(encoded)
