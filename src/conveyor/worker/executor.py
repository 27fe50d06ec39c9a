"""Executor: resolve a job's task, run it with its timeout, turn what happened into an outcome."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import functools
import logging
import random
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from conveyor import codec, correlation, logs, tracing
from conveyor._store.protocol import Completion, Store
from conveyor.context import JobContext
from conveyor.errors import PayloadError, UnknownTaskError
from conveyor.job import Job
from conveyor.outcome import FailNow, Retry, SnoozeQueue
from conveyor.task import Task
from conveyor.worker.outcome import Abandoned, Failed, Outcome, Snoozed, Succeeded

log = logging.getLogger("conveyor.worker")


class JobTimeout(Exception):  # noqa: N818 - the name reads as what happened
    """The job ran past its timeout and was stopped."""


class LeaseLost(Exception):  # noqa: N818
    """An atomic job's completion was refused: another worker or a cancel took the job."""


class Executor:
    """Runs one attempt of one job; never raises (every failure becomes an Outcome)."""

    def __init__(
        self,
        tasks: dict[str, Task[Any]],
        store: Store,
        threads: ThreadPoolExecutor,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._tasks = tasks
        self._store = store
        self._threads = threads
        self._rng = rng or random.Random()
        self._thread_of: dict[int, int] = {}
        self._thread_lock = threading.Lock()

    async def execute(self, job: Job, token: UUID) -> Outcome:
        """Run `job` once and report what happened."""
        # each job runs in its own asyncio task, so these stay with this job
        correlation._set(job.correlation_id)
        with logs.job_scope(job), tracing.job_span(job) as span:
            outcome = await self._attempt(job, token)
            if isinstance(outcome, Failed):
                tracing.record_outcome(span, "failed", outcome.error)
            else:
                tracing.record_outcome(span, type(outcome).__name__.lower())
            return outcome

    async def _attempt(self, job: Job, token: UUID) -> Outcome:
        try:
            task = self._resolve_task(job)
            kwargs = self._bind_arguments(task, job)
            return await self._run_with_timeout(task, job, token, kwargs)
        except asyncio.CancelledError:
            self.interrupt(job.id, JobTimeout)
            return Abandoned("cancelled")
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            # SystemExit from a handler fails its job; it must not end the worker.
            return self._apply_retry_policy(job, exc)

    def interrupt(self, job_id: int, exc_type: type[BaseException]) -> bool:
        """Raise `exc_type` inside the thread running a sync job (best effort: it lands at the
        thread's next Python bytecode, not inside a blocking C call)."""
        with self._thread_lock:
            thread_id = self._thread_of.get(job_id)
            if thread_id is None:
                return False
            done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
            )
            return bool(done)

    def _resolve_task(self, job: Job) -> Task[Any]:
        task = self._tasks.get(job.task)
        if task is None:
            raise UnknownTaskError(f"this worker has no task named {job.task!r}")
        return task

    def _bind_arguments(self, task: Task[Any], job: Job) -> dict[str, Any]:
        problem = task.argument_error(job.args)
        if problem:
            raise _Permanent(PayloadError(f"job args do not fit: {problem}"))
        return job.args

    async def _run_with_timeout(
        self, task: Task[Any], job: Job, token: UUID, kwargs: dict[str, Any]
    ) -> Outcome:
        timeout = job.timeout_seconds or task.timeout
        run = self._run_async if task.is_async else self._run_sync
        try:
            return await asyncio.wait_for(run(task, job, token, kwargs), timeout)
        except TimeoutError:
            self.interrupt(job.id, JobTimeout)
            raise JobTimeout(f"job ran longer than its {timeout:g}s timeout") from None

    async def _run_async(
        self, task: Task[Any], job: Job, token: UUID, kwargs: dict[str, Any]
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        if not task.atomic:
            if not task.context_param:
                return Succeeded(_result_json(await task.fn(**kwargs)))
            ctx = self._context(job, token, loop)
            result = await task.fn(**self._with_context(task, kwargs, ctx))
            return Succeeded(_result_json(result), ctx.idempotency_keys)
        async with self._store.transaction() as conn:
            ctx = self._context(job, token, loop, conn)
            result = await task.fn(**self._with_context(task, kwargs, ctx))
            result_json = _result_json(result)
            completion = Completion(job.id, token, result_json, ctx.idempotency_keys)
            if not await self._store.job_complete_in(conn, completion):
                raise LeaseLost("the job was taken over or cancelled; its writes were rolled back")
        return Succeeded(result_json, recorded=True)

    async def _run_sync(
        self, task: Task[Any], job: Job, token: UUID, kwargs: dict[str, Any]
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_thread, task, job, token, kwargs, loop)
        # the thread sees this job's context: its correlation id, its trace span
        return await loop.run_in_executor(self._threads, contextvars.copy_context().run, call)

    def _in_thread(
        self,
        task: Task[Any],
        job: Job,
        token: UUID,
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> Outcome:
        with self._thread_lock:
            self._thread_of[job.id] = threading.get_ident()
        try:
            if not task.atomic:
                if not task.context_param:
                    return Succeeded(_result_json(task.fn(**kwargs)))
                ctx = self._context(job, token, loop)
                result = task.fn(**self._with_context(task, kwargs, ctx))
                return Succeeded(_result_json(result), ctx.idempotency_keys)
            with self._store.sync_transaction() as conn:
                ctx = self._context(job, token, loop, conn)
                result = task.fn(**self._with_context(task, kwargs, ctx))
                result_json = _result_json(result)
                completion = Completion(job.id, token, result_json, ctx.idempotency_keys)
                if not self._store.job_complete_in_sync(conn, completion):
                    raise LeaseLost(
                        "the job was taken over or cancelled; its writes were rolled back"
                    )
            return Succeeded(result_json, recorded=True)
        finally:
            with self._thread_lock:
                self._thread_of.pop(job.id, None)

    def _context(
        self, job: Job, token: UUID, loop: asyncio.AbstractEventLoop, conn: Any = None
    ) -> JobContext:
        return JobContext(
            job,
            loop=loop,
            idempotency_get=self._store.idempotency_get,
            conn=conn,
            token=token,
            flows=self._store,
        )

    @staticmethod
    def _with_context(task: Task[Any], kwargs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        if task.context_param:
            return {**kwargs, task.context_param: ctx}
        return kwargs

    def _apply_retry_policy(self, job: Job, exc: BaseException) -> Outcome:
        if isinstance(exc, LeaseLost):
            return Abandoned(str(exc))
        if isinstance(exc, SnoozeQueue):
            return Snoozed(exc.duration, exc.reason)
        permanent = isinstance(exc, _Permanent)
        if permanent:
            exc = exc.__cause__ or exc.args[0]
        task = self._tasks.get(job.task)
        error = _describe(exc, job.attempt)
        max_attempts = job.max_attempts or (task.max_attempts if task else 1)
        exhausted = job.attempt >= max_attempts
        if permanent or exhausted or task is None or isinstance(exc, FailNow):
            return Failed(error, None)
        if isinstance(exc, task.fail_on) if task.fail_on else False:
            return Failed(error, None)
        if isinstance(exc, Retry):
            return Failed(error, exc.after)
        return Failed(error, task.retry_policy.delay(job.attempt, self._rng).total_seconds())


class _Permanent(Exception):  # noqa: N818
    """Wraps an error no retry can fix (arguments that do not fit the handler)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.__cause__ = cause


def _result_json(value: Any) -> str | None:
    try:
        return codec.encode_result(value)
    except PayloadError as exc:
        # The handler's side effects already happened; running it again cannot fix this.
        raise _Permanent(
            PayloadError(f"{exc}; return JSON values from handlers (or None)")
        ) from None


def _describe(exc: BaseException, attempt: int) -> dict[str, Any]:
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    return {
        "type": name,
        "message": codec.storable_text(str(exc)),
        "traceback": codec.storable_text("".join(traceback.format_exception(exc))),
        "attempt": attempt,
    }
