"""Concurrent task.enqueue() / aenqueue() calls share round trips (conveyor/coalesce.py): every
job is committed once with its caller's arguments, each caller gets its own id or its own
error, and nothing a caller did not ask for is written."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import conveyor

THREADS = 16
EACH = 25


@pytest.fixture
def c(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="c")
    def c(n: int) -> None:
        pass

    return c


def _by_n(conn: psycopg.Connection[Any]) -> dict[int, int]:
    rows = conn.execute("SELECT (args ->> 'n')::int, id FROM conveyor.job").fetchall()
    assert len(rows) == len({r[0] for r in rows}), "a job was written twice"
    return {int(r[0]): int(r[1]) for r in rows}


def test_threads_each_get_their_own_jobs_id(
    c: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    got: dict[int, int] = {}
    start = threading.Barrier(THREADS)

    def caller(k: int) -> None:
        start.wait()
        for j in range(EACH):
            n = k * 1000 + j
            got[n] = c.enqueue(n=n)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == THREADS * EACH
    assert _by_n(conn) == got


async def test_tasks_each_get_their_own_jobs_id(
    c: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    async def caller(k: int) -> dict[int, int]:
        return {k * 1000 + j: await c.aenqueue(n=k * 1000 + j) for j in range(EACH)}

    results = await asyncio.gather(*(caller(k) for k in range(THREADS)))
    got = {n: job_id for part in results for n, job_id in part.items()}
    assert len(got) == THREADS * EACH
    assert _by_n(conn) == got


def test_a_full_queue_refuses_only_the_jobs_past_its_depth(
    app: conveyor.Conveyor, c: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("tight", max_depth=5, on_full="reject")
    tight = c.with_options(queue="tight")
    outcomes: dict[int, object] = {}
    start = threading.Barrier(THREADS)

    def caller(k: int) -> None:
        start.wait()
        try:
            outcomes[k] = (tight if k % 2 else c).enqueue(n=k)
        except conveyor.QueueFullError as exc:
            outcomes[k] = exc

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    refused = sorted(k for k, o in outcomes.items() if isinstance(o, conveyor.QueueFullError))
    assert len(refused) == THREADS // 2 - 5 and all(k % 2 for k in refused)
    written = _by_n(conn)
    assert written == {k: o for k, o in outcomes.items() if isinstance(o, int)}
    assert sorted(written) == sorted(set(range(THREADS)) - set(refused))


async def test_callers_of_one_unique_key_all_get_the_one_job(
    c: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    once = c.with_options(unique_key="report-2026-12")
    ids = await asyncio.gather(*(once.aenqueue(n=k) for k in range(THREADS)))
    assert len(set(ids)) == 1
    assert list(_by_n(conn).values()) == [ids[0]]
