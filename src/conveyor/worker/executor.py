"""Executor: resolve a job's task, run it with its timeout, turn what happened into an outcome."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import logging
import random
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from conveyor import codec, correlation, logs, tracing
from conveyor._store.protocol import Completion, Store
from conveyor.context import JobContext
from conveyor.errors import JobTimeout as JobTimeout  # its old home: keep imports working
from conveyor.errors import PayloadError, UnknownTaskError
from conveyor.job import Job
from conveyor.outcome import FailNow, Retry, SnoozeQueue
from conveyor.task import Task
from conveyor.worker.delivery import Deliverer
from conveyor.worker.outcome import Abandoned, Failed, Outcome, Parked, Snoozed, Succeeded
from conveyor.worker.running import RunningJob
from conveyor.workflow.engine import Ended, WorkflowEngine, WorkflowMetrics

log = logging.getLogger("conveyor.worker")


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
        on_thread_free: Callable[[RunningJob], None] | None = None,
        deliverer: Deliverer | None = None,
        metrics: WorkflowMetrics | None = None,
    ) -> None:
        self._tasks = tasks
        self._workflows = WorkflowEngine(store, rng=rng, metrics=metrics)
        self._deliverer = deliverer
        self._on_thread_free = on_thread_free
        self._store = store
        self._threads = threads
        self._rng = rng or random.Random()
        # Guards each RunningJob.thread against a thread's exit racing an interrupt(), so a
        # JobTimeout is never raised into a thread that has moved on.
        self._thread_lock = threading.Lock()

    async def execute(self, running: RunningJob) -> Outcome:
        """Run the claimed job once and report what happened. `running` is told once the
        handler really starts (for a sync handler: once a thread has taken it) and which
        thread runs it."""
        job = running.job
        # each job runs in its own asyncio task, so these stay with this job
        correlation._set(job.correlation_id)
        scope = logs.enter_job(job)
        try:
            if not tracing.enabled():
                return await self._attempt(running)
            with tracing.job_span(job) as span:
                outcome = await self._attempt(running)
                if isinstance(outcome, Failed):
                    tracing.record_outcome(span, "failed", outcome.error)
                else:
                    tracing.record_outcome(span, type(outcome).__name__.lower())
                return outcome
        finally:
            logs.leave_job(scope)

    async def _attempt(self, running: RunningJob) -> Outcome:
        job = running.job
        try:
            if self._is_delivery(job):
                assert self._deliverer is not None
                running.mark_started()
                return await self._deliverer.deliver(job)
            task = self._resolve_task(job)
            # a workflow's engine reads the run's arguments itself
            kwargs = {} if task.workflow else self._bind_arguments(task, job)
            return await self._run_with_timeout(task, running, kwargs)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # the worker cancelled us: shutdown, a cancel or a lost lease
                self.interrupt(running, JobTimeout)
                return Abandoned("cancelled")
            return self.outcome_of_error(job, exc)  # the handler raised it itself
        except BaseException as exc:  # noqa: BLE001
            # Whatever handler code raises (SystemExit, KeyboardInterrupt, GeneratorExit
            # included) fails this attempt only. A signal to the worker never arrives here:
            # the worker handles SIGINT and SIGTERM itself and stops by cancelling tasks.
            return self.outcome_of_error(job, exc)

    def interrupt(self, running: RunningJob, exc_type: type[BaseException]) -> bool:
        """Raise `exc_type` inside the thread running a sync job (best effort: it lands at the
        thread's next Python bytecode, not inside a blocking C call)."""
        with self._thread_lock:
            thread_id = running.thread
            if thread_id is None:
                return False
            done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
            )
            return bool(done)

    def _is_delivery(self, job: Job) -> bool:
        """A job whose task is an endpoint (and not a Python task) is POSTed to it."""
        return (
            self._deliverer is not None
            and job.task not in self._tasks
            and self._deliverer.serves(job.task)
        )

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
        self, task: Task[Any], running: RunningJob, kwargs: dict[str, Any]
    ) -> Outcome:
        job, token = running.job, running.token
        timeout = job.timeout_seconds or task.timeout
        if not task.is_async:
            return await self._run_sync(task, running, kwargs, timeout)
        running.mark_started()
        if timeout is None:
            return await self._run_async(task, job, token, kwargs)
        # asyncio.timeout runs the handler in this task: wait_for would wrap it in a task of
        # its own, whose SystemExit or KeyboardInterrupt asyncio re-raises out of the loop
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await self._run_async(task, job, token, kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own TimeoutError (a socket timeout, say)
            raise JobTimeout(f"job ran longer than its {timeout:g}s timeout") from None

    async def _run_async(
        self, task: Task[Any], job: Job, token: UUID, kwargs: dict[str, Any]
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        if task.workflow is not None:
            return _workflow_outcome(await self._workflows.arun(task.workflow, job, token))
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
        self, task: Task[Any], running: RunningJob, kwargs: dict[str, Any], timeout: float | None
    ) -> Outcome:
        """Run a sync handler in a thread. The timeout counts from the moment a thread takes
        the job, not from the claim; a job that no thread took is never started late."""
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        gate = _Gate()

        def begin() -> bool:
            if not gate.open():
                return False  # the worker gave up on the job before a thread was free
            running.mark_started()
            loop.call_soon_threadsafe(started.set)
            return True

        call = functools.partial(self._in_thread, task, running, kwargs, loop, begin)
        # the thread sees this job's context: its correlation id, its trace span
        future = loop.run_in_executor(self._threads, contextvars.copy_context().run, call)
        taken: asyncio.Future[Any] = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait([future, taken], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            gate.close()
            raise
        finally:
            taken.cancel()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await future
        except TimeoutError:
            if not deadline.expired():
                raise
            self.interrupt(running, JobTimeout)
            raise JobTimeout(f"job ran longer than its {timeout:g}s timeout") from None
        except asyncio.CancelledError:
            gate.close()
            raise

    def _in_thread(
        self,
        task: Task[Any],
        running: RunningJob,
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        begin: Callable[[], bool],
    ) -> Outcome:
        job, token = running.job, running.token
        # registered before the timeout can start, so interrupt() always finds this thread
        self._enter_thread(running)
        if not begin():
            self._leave_thread(running, loop)
            return Abandoned("not started: the worker gave up on it before a thread was free")
        try:
            if task.workflow is not None:
                return _workflow_outcome(self._workflows.run(task.workflow, job, token))
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
            self._leave_thread(running, loop)

    # -- threads ------------------------------------------------------------------------------

    def _enter_thread(self, running: RunningJob) -> None:
        with self._thread_lock:
            running.thread = threading.get_ident()

    def _leave_thread(self, running: RunningJob, loop: asyncio.AbstractEventLoop) -> None:
        """Forget this thread's job and cancel any JobTimeout still pending for it, so the
        exception cannot land in the pool's own code or in the thread's next job."""
        while True:
            try:
                with self._thread_lock:
                    if running.thread is not None:
                        running.thread = None
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(threading.get_ident()), None
                        )
                break
            except JobTimeout:
                continue  # delivered on the way out: the entry is still there, go again
        if self._on_thread_free is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._on_thread_free, running)

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

    def outcome_of_error(self, job: Job, exc: BaseException) -> Outcome:
        """What this failure comes to under the job's retry policy; never raises, whatever
        `exc` is made of."""
        try:
            return self._decide(job, exc)
        except Exception as inner:
            log.exception("job %d: cannot apply its retry policy; failing it", job.id)
            error = describe_error(exc, job.attempt)
            error["message"] += f" (and the retry policy raised {type(inner).__name__})"
            return Failed(error, None)

    def _decide(self, job: Job, exc: BaseException) -> Outcome:
        if isinstance(exc, LeaseLost):
            return Abandoned(str(exc))
        if isinstance(exc, SnoozeQueue):
            return Snoozed(exc.duration, exc.reason)
        permanent = isinstance(exc, _Permanent)
        if permanent:
            exc = exc.__cause__ or exc.args[0]
        task = self._tasks.get(job.task)
        error = describe_error(exc, job.attempt)
        max_attempts = job.max_attempts or (task.max_attempts if task else 1)
        exhausted = job.attempt >= max_attempts
        if permanent or exhausted or task is None or isinstance(exc, FailNow):
            return Failed(error, None)
        if isinstance(exc, task.fail_on) if task.fail_on else False:
            return Failed(error, None)
        if isinstance(exc, Retry):
            return Failed(error, exc.after)
        return Failed(error, task.retry_policy.delay(job.attempt, self._rng).total_seconds())


class _Gate:
    """Decides, once, whether a sync job starts: the thread opens it when it takes the job,
    the event loop closes it when it gives up first; whichever comes first wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: bool | None = None

    def open(self) -> bool:
        with self._lock:
            if self._state is None:
                self._state = True
            return self._state

    def close(self) -> None:
        with self._lock:
            if self._state is None:
                self._state = False


class _Permanent(Exception):  # noqa: N818
    """Wraps an error no retry can fix (arguments that do not fit the handler)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.__cause__ = cause


def _workflow_outcome(ended: Ended) -> Outcome:
    """The job's outcome for how its workflow run's attempt ended: a run that failed fails its
    job for good (retry the run with Client.retry_workflow)."""
    if ended.kind == "completed":
        return Succeeded(ended.result_json)
    if ended.kind == "failed":
        return Failed(ended.error or {"type": "WorkflowError", "message": "failed"}, None)
    if ended.kind == "parked":
        return Parked(ended.reason)
    return Abandoned(ended.reason)


def _result_json(value: Any) -> str | None:
    try:
        return codec.encode_result(value)
    except PayloadError as exc:
        # The handler's side effects already happened; running it again cannot fix this.
        raise _Permanent(
            PayloadError(f"{exc}; return JSON values from handlers (or None)")
        ) from None


#: Longest error message and traceback kept per attempt; the rest is cut from the middle.
MAX_MESSAGE_CHARS = 4_000
MAX_TRACEBACK_CHARS = 32_000


def describe_error(exc: BaseException, attempt: int) -> dict[str, Any]:
    """The record of a failed attempt. Never raises: an exception whose __str__ or __repr__
    raises, or whose text is huge, is still described (by its type and what went wrong)."""
    kind = type(exc)
    module = getattr(kind, "__module__", None)
    qualname = getattr(kind, "__qualname__", None) or kind.__name__
    name = qualname if module in (None, "builtins") else f"{module}.{qualname}"
    return {
        "type": _clip(codec.storable_text(str(name)), 200),
        "message": _clip(codec.storable_text(_message(exc)), MAX_MESSAGE_CHARS),
        "traceback": _clip(codec.storable_text(_traceback(exc)), MAX_TRACEBACK_CHARS),
        "attempt": attempt,
    }


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
        if isinstance(text, str):
            # a bare `raise KeyboardInterrupt` still says what happened
            return text or f"{type(exc).__name__} (no message)"
        problem = f"str() returned {type(text).__name__}"
    except Exception as inner:  # noqa: BLE001 - the handler's exception, not ours
        problem = f"str() raised {type(inner).__name__}"
    try:
        return f"<unprintable {type(exc).__name__}: {problem}; repr: {exc!r}>"
    except Exception as inner:  # noqa: BLE001
        return (
            f"<unprintable {type(exc).__name__}: {problem}; repr() raised {type(inner).__name__}>"
        )


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception as inner:  # noqa: BLE001 - a broken __notes__ or frame, say
        return f"(traceback unavailable: formatting it raised {type(inner).__name__})"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    head = limit // 4
    return f"{text[:head]}\n... [{cut:,} characters cut] ...\n{text[head + cut :]}"
