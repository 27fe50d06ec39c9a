"""Concurrent single enqueues of one app share a round trip and a commit (group commit).

`task.enqueue()` / `aenqueue()` on the app's own connections: a call that finds no other in
flight inserts its job at once, alone, exactly as before. Calls that arrive while one is in
flight wait in line, and the whole line goes in the next round trip, as one multi-row insert
with one commit (one WAL flush for all of them). Each caller still gets its own job's id when
its job is committed, or its own error: a batch that the database refuses as a whole (a full
queue that rejects, a trigger's error) is sent again one job at a time, so that only the job
at fault fails; a database that cannot be reached fails the whole line at once.

Threads: the call that sent a batch wakes the first caller of the next line, which sends that
one. Asyncio: one task per loop sends the lines that form while a call is in flight.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg

from conveyor.errors import DatabaseUnavailableError
from conveyor.spec import JobSpec

Flush = Callable[[Sequence[JobSpec]], list[int]]
AFlush = Callable[[Sequence[JobSpec]], Awaitable[list[int]]]

#: Errors that the same statement would meet one job at a time too: the whole line gets them.
_SHARED = (DatabaseUnavailableError, psycopg.OperationalError)


class _Waiter:
    __slots__ = ("_gate", "error", "job_id", "lead", "spec")

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        # held until the waiter may go on: a bare lock costs less than an Event per call
        self._gate = threading.Lock()
        self._gate.acquire()
        self.job_id: int | None = None
        self.error: BaseException | None = None
        self.lead = False

    def wait(self) -> None:
        self._gate.acquire()

    def wake(self) -> None:
        self._gate.release()

    def result(self) -> int:
        if self.error is not None:
            raise self.error
        assert self.job_id is not None
        return self.job_id


class Coalescer:
    """Single enqueues from threads; `flush` inserts specs and returns their ids in order."""

    def __init__(self, flush: Flush) -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._line: list[_Waiter] = []
        self._busy = False

    def enqueue(self, spec: JobSpec) -> int:
        me = _Waiter(spec)
        with self._lock:
            if self._busy:
                self._line.append(me)
            else:
                self._busy = True
                me.lead = True
        if not me.lead:
            try:
                me.wait()
            except BaseException:  # KeyboardInterrupt in the main thread, say
                self._give_up(me)
                raise
            if not me.lead:
                return me.result()
            with self._lock:  # woken to send the line it waited in
                batch, self._line = self._line, []
        else:
            batch = [me]
        try:
            _send(self._flush, batch)
        finally:
            with self._lock:
                if self._line:
                    self._line[0].lead = True
                    self._line[0].wake()
                else:
                    self._busy = False
        return me.result()

    def _give_up(self, me: _Waiter) -> None:
        """The caller of `me` stopped waiting: its job leaves the line unsent, and if it had
        just been woken to send the line, the next in line sends it instead (else the line
        would wait forever). A job already taken into a batch is sent with it."""
        with self._lock:
            if me not in self._line:
                return
            self._line.remove(me)
            if not me.lead:
                return
            if self._line:
                self._line[0].lead = True
                self._line[0].wake()
            else:
                self._busy = False


def _one_by_one(exc: BaseException, size: int) -> bool:
    """Whether a line of `size` jobs that failed with `exc` is sent again job by job: when the
    database refused it as a whole, not when it could not be reached or the caller stopped."""
    return size > 1 and isinstance(exc, Exception) and not isinstance(exc, _SHARED)


def _send(flush: Flush, batch: list[_Waiter]) -> None:
    try:
        ids = flush([w.spec for w in batch])
    except BaseException as exc:  # noqa: BLE001 - handed to the callers of the batch
        if not _one_by_one(exc, len(batch)):
            _fail(batch, exc)
            return
        for w in batch:  # refused as a whole: one at a time, so only the job at fault fails
            try:
                w.job_id = flush([w.spec])[0]
            except BaseException as one:  # noqa: BLE001 - handed to its own caller
                w.error = one
    else:
        for w, job_id in zip(batch, ids, strict=True):
            w.job_id = job_id
    for w in batch:
        if not w.lead:
            w.wake()


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    for w in batch:
        w.error = exc
        if not w.lead:
            w.wake()


class AsyncCoalescer:
    """Single enqueues from the tasks of one event loop."""

    def __init__(self, flush: AFlush) -> None:
        self._flush = flush
        self._busy = False
        self._line: list[tuple[JobSpec, asyncio.Future[int]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def enqueue(self, spec: JobSpec) -> int:
        if self._busy:
            waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._line.append((spec, waiter))
            return await waiter
        self._busy = True
        try:
            return (await self._flush([spec]))[0]
        finally:
            if self._line:
                self._sender = asyncio.get_running_loop().create_task(self._send_lines())
            else:
                self._busy = False

    async def _send_lines(self) -> None:
        try:
            while self._line:
                # a caller cancelled while it waited gave up on its job: it is not sent
                line = [(s, w) for s, w in self._line if not w.done()]
                self._line = []
                if line:
                    await self._send(line)
        finally:
            self._busy = False
            self._sender = None

    async def _send(self, line: list[tuple[JobSpec, asyncio.Future[int]]]) -> None:
        try:
            ids = await self._flush([s for s, _ in line])
        except Exception as exc:  # noqa: BLE001 - handed to the callers of the line
            if not _one_by_one(exc, len(line)):
                for _, w in line:
                    _settle(w, error=exc)
                return
            for spec, w in line:
                try:
                    _settle(w, job_id=(await self._flush([spec]))[0])
                except Exception as one:  # noqa: BLE001 - handed to its own caller
                    _settle(w, error=one)
        else:
            for (_, w), job_id in zip(line, ids, strict=True):
                _settle(w, job_id=job_id)


def _settle(
    w: asyncio.Future[Any], *, job_id: int | None = None, error: Exception | None = None
) -> None:
    if w.done():
        return
    if error is not None:
        w.set_exception(error)
    else:
        w.set_result(job_id)
