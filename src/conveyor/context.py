"""JobContext: what a handler that asks for it receives about its job and its attempt."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from conveyor import codec
from conveyor._store.caller import run_async, run_sync
from conveyor._store.queries import sql
from conveyor.cron import slot_of_key
from conveyor.job import Job

log = logging.getLogger("conveyor.job")

IdempotencyGet = Callable[[str], Coroutine[Any, Any, tuple[bool, Any]]]


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
    ) -> None:
        self.job = job
        self.conn = conn
        self.logger = logging.LoggerAdapter(log, {"job_id": job.id, "task": job.task})
        self._loop = loop
        self._idempotency_get = idempotency_get
        self._keys: dict[str, str | None] = {}

    @property
    def attempt(self) -> int:
        """This attempt's number, 1 for the first run."""
        return self.job.attempt

    @property
    def cron_slot(self) -> datetime | None:
        """The scheduled time (UTC) a cron schedule enqueued this job for; None for a job
        enqueued otherwise."""
        return slot_of_key(self.job.unique_key)

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
        if inspect.iscoroutinefunction(fn):
            raise TypeError("once() runs sync functions; in an async handler use aonce()")
        if _on_loop(self._loop):
            raise TypeError("once() would block the event loop; in an async handler use aonce()")
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
