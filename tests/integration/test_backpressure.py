"""Backpressure: a queue's maximum depth, and what happens to jobs past it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import job_states


@pytest.fixture
def t(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="t", queue="q")
    def t(n: int = 0) -> None:
        return None

    return t


def _waiting(conn: psycopg.Connection[Any]) -> list[int]:
    rows = conn.execute("SELECT (args->>'n')::int FROM conveyor.job ORDER BY id").fetchall()
    return [r[0] for r in rows]


def test_full_queue_that_rejects_raises_and_writes_nothing(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("q", max_depth=3)
    for n in range(3):
        t.enqueue(n=n)
    with pytest.raises(conveyor.QueueFullError, match="'q' is full") as caught:
        t.enqueue(n=3)
    assert caught.value.queues == ["q"]
    assert _waiting(conn) == [0, 1, 2]
    with pytest.raises(conveyor.QueueFullError):
        app.enqueue_many([t.spec(n=n) for n in range(500)])  # through COPY
    with pytest.raises(conveyor.QueueFullError):
        app.enqueue_many([t.spec(n=4), t.spec(n=5)])
    assert _waiting(conn) == [0, 1, 2]


def test_rejection_inside_the_callers_transaction_leaves_it_usable(
    app: conveyor.Conveyor, t: conveyor.Task[Any], db: str
) -> None:
    app.client().configure_queue("q", max_depth=1)
    t.enqueue(n=0)
    with psycopg.connect(db) as own, own.transaction():
        with pytest.raises(conveyor.QueueFullError):
            t.enqueue_tx(own, n=1)
        own.execute("SELECT 1")  # no SQL error happened: the transaction goes on


def test_running_jobs_do_not_count_toward_the_depth(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("q", max_depth=2)
    t.enqueue(n=0)
    conn.execute("UPDATE conveyor.job SET state = 'running'")
    t.enqueue(n=1)
    t.enqueue(n=2)
    assert _waiting(conn) == [0, 1, 2]


def test_drop_oldest_evicts_the_oldest_of_the_lowest_priority(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("q", max_depth=3, on_full="drop_oldest")
    t.with_options(priority=5).enqueue(n=0)
    t.enqueue(n=1)
    t.enqueue(n=2)
    t.enqueue(n=3)  # full: n=1 is the oldest of priority 0
    t.enqueue(n=4)  # then n=2
    assert _waiting(conn) == [0, 3, 4]
    dropped = app.client().list_jobs(state="cancelled")
    assert sorted(j.args["n"] for j in dropped) == [1, 2]
    assert dropped[0].errors[-1]["type"] == "Dropped"
    (info,) = [q for q in app.client().queues() if q.name == "q"]
    assert info.dropped == 2


def test_drop_newest_evicts_the_newest_of_the_lowest_priority(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("q", max_depth=2, on_full="drop_newest")
    t.enqueue(n=0)
    t.with_options(priority=9).enqueue(n=1)
    t.enqueue(n=2)  # the newest of priority 0 is the job itself
    t.with_options(priority=9).enqueue(n=3)  # now n=0 is the only one of priority 0
    assert _waiting(conn) == [1, 3]
    app.enqueue_many([t.spec(n=n) for n in range(10, 300)])  # COPY: all of them dropped
    assert _waiting(conn) == [1, 3]
    assert job_states(conn) == {"available": 2, "cancelled": 292}
