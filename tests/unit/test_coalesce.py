"""Coalescing of concurrent single enqueues: who sends, what goes in one round trip, and who
gets which id or error. The database side (one insert of many jobs) is the enqueue_many path
tested elsewhere; here `flush` is a function that records its calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from conveyor.coalesce import AsyncCoalescer, Coalescer, _Waiter
from conveyor.errors import DatabaseUnavailableError, QueueFullError
from conveyor.spec import JobSpec

DEADLINE = 30.0


def _spec(n: int) -> JobSpec:
    return JobSpec(task="t", args_json=f'{{"n": {n}}}')


def _n(spec: JobSpec) -> int:
    return int(spec.args_json.split(": ")[1].rstrip("}"))


class Recorder:
    """Ids are 1000 + n; the first call blocks until `release` is set; jobs named in `bad`
    make a batch fail as a whole, and fail alone."""

    def __init__(self, bad: frozenset[int] = frozenset(), error: Exception | None = None):
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.bad = bad
        self.error = error

    def __call__(self, specs: Sequence[JobSpec]) -> list[int]:
        ns = [_n(s) for s in specs]
        self.calls.append(ns)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(DEADLINE)
        if self.error is not None:
            raise self.error
        if self.bad & set(ns):
            raise QueueFullError(["full"])
        return [1000 + n for n in ns]


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE}s: {what}")
        time.sleep(0.001)


def _run_threads(coalescer: Coalescer, flush: Recorder, n: int) -> dict[int, object]:
    """Call 0 sends alone and blocks in flush; calls 1..n-1 line up; then flush goes on."""
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = coalescer.enqueue(_spec(i))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert flush.entered.wait(DEADLINE)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, n)]
    for t in others:
        t.start()
    _until(lambda: len(coalescer._line) == n - 1, "the others waiting in line")
    flush.release.set()
    for t in [first, *others]:
        t.join(DEADLINE)
    return results


def test_a_lone_call_sends_its_job_at_once() -> None:
    flush = Recorder()
    flush.release.set()
    coalescer = Coalescer(flush)
    assert [coalescer.enqueue(_spec(i)) for i in range(3)] == [1000, 1001, 1002]
    assert flush.calls == [[0], [1], [2]]


def test_threads_that_arrive_during_a_send_go_together_in_the_next() -> None:
    flush = Recorder()
    coalescer = Coalescer(flush)
    results = _run_threads(coalescer, flush, 6)
    assert results == {i: 1000 + i for i in range(6)}
    assert flush.calls[0] == [0]
    assert sorted(flush.calls[1]) == [1, 2, 3, 4, 5]
    assert len(flush.calls) == 2
    assert coalescer._busy is False and coalescer._line == []


def test_a_batch_refused_as_a_whole_is_sent_again_one_job_at_a_time() -> None:
    flush = Recorder(bad=frozenset({3}))
    results = _run_threads(Coalescer(flush), flush, 5)
    assert isinstance(results[3], QueueFullError)
    assert {i: r for i, r in results.items() if i != 3} == {0: 1000, 1: 1001, 2: 1002, 4: 1004}
    assert sorted(flush.calls[1]) == [1, 2, 3, 4]
    assert sorted(c[0] for c in flush.calls[2:]) == [1, 2, 3, 4]


def test_a_caller_interrupted_while_woken_to_send_hands_the_line_on() -> None:
    # A KeyboardInterrupt can land in the main thread while it waits in line; if it had just
    # been woken to send the line, the next caller must send it, or every caller would hang.
    flush = Recorder()
    flush.release.set()
    coalescer = Coalescer(flush)
    coalescer._busy = True  # another call is in flight
    woken, waiting, other = _Waiter(_spec(1)), _Waiter(_spec(2)), _Waiter(_spec(4))
    coalescer._line = [woken, waiting, other]
    woken.lead = True  # what the sender that just finished does, before waking it
    coalescer._give_up(woken)
    assert coalescer._line == [waiting, other] and waiting.lead and not other.lead
    waiting.wait()  # it was woken: this returns at once
    # a caller interrupted while merely waiting just leaves the line, unsent
    coalescer._give_up(other)
    assert coalescer._line == [waiting] and coalescer._busy is True
    # and the last one woken to send, with nobody behind it, leaves the coalescer idle
    coalescer._give_up(waiting)
    assert coalescer._line == [] and coalescer._busy is False
    # the line still works afterwards
    assert coalescer.enqueue(_spec(3)) == 1003


def test_a_database_that_cannot_be_reached_fails_the_whole_line_once() -> None:
    down = DatabaseUnavailableError("cannot reach the database to enqueue")
    flush = Recorder(error=down)
    results = _run_threads(Coalescer(flush), flush, 4)
    assert all(r is down for r in results.values())
    assert len(flush.calls) == 2  # the lone first call, then the line in one try


async def test_tasks_that_arrive_during_a_send_go_together_in_the_next() -> None:
    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(specs: Sequence[JobSpec]) -> list[int]:
        ns = [_n(s) for s in specs]
        calls.append(ns)
        if len(calls) == 1:
            await gate.wait()
        if 7 in ns:
            raise QueueFullError(["full"])
        return [1000 + n for n in ns]

    coalescer = AsyncCoalescer(flush)
    first = asyncio.create_task(coalescer.enqueue(_spec(0)))
    await asyncio.sleep(0)
    others = {i: asyncio.create_task(coalescer.enqueue(_spec(i))) for i in range(1, 9)}
    await asyncio.sleep(0)
    others[5].cancel()  # gave up while waiting: its job is not sent
    gate.set()
    assert await asyncio.wait_for(first, DEADLINE) == 1000
    done = await asyncio.wait_for(
        asyncio.gather(*others.values(), return_exceptions=True), DEADLINE
    )
    by_n = dict(zip(others, done, strict=True))
    assert isinstance(by_n.pop(5), asyncio.CancelledError)
    assert isinstance(by_n.pop(7), QueueFullError)
    assert by_n == {i: 1000 + i for i in (1, 2, 3, 4, 6, 8)}
    assert calls[0] == [0]
    assert calls[1] == [1, 2, 3, 4, 6, 7, 8]  # one try for the line, then one by one
    assert calls[2:] == [[1], [2], [3], [4], [6], [7], [8]]
    assert coalescer._busy is False


async def test_a_lone_task_sends_at_once_and_a_cancelled_sender_hands_the_line_on() -> None:
    gate = asyncio.Event()
    calls: list[list[int]] = []

    async def flush(specs: Sequence[JobSpec]) -> list[int]:
        calls.append([_n(s) for s in specs])
        if len(calls) == 1:
            await gate.wait()
        return [1000 + _n(s) for s in specs]

    coalescer = AsyncCoalescer(flush)
    first = asyncio.create_task(coalescer.enqueue(_spec(0)))
    await asyncio.sleep(0)
    second = asyncio.create_task(coalescer.enqueue(_spec(1)))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, DEADLINE) == 1001
    assert await coalescer.enqueue(_spec(2)) == 1002
    assert calls == [[0], [1], [2]]
