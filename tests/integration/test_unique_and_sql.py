"""Unique keys (also under concurrency), and the SQL interface other languages use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import eventually, job_states, running_worker, wait_until

THREADS = 8


class _RollbackError(Exception):
    """Raised inside a transaction block to make it roll back."""


@pytest.fixture
def charge(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="charge")
    def charge(order_id: int) -> None:
        return None

    return charge


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone()
    assert row is not None
    return int(row[0])


# -- unique keys ------------------------------------------------------------------------------


def test_second_enqueue_with_the_same_key_returns_the_existing_id(
    db: str, conn: psycopg.Connection[Any], charge: conveyor.Task[Any]
) -> None:
    first = charge.with_options(unique_key="order-1").enqueue(order_id=1)
    second = charge.with_options(unique_key="order-1").enqueue(order_id=1)
    with psycopg.connect(db) as caller, caller.transaction():
        third = charge.with_options(unique_key="order-1").enqueue_tx(caller, order_id=1)
    other = charge.with_options(unique_key="order-2").enqueue(order_id=2)
    assert first == second == third != other
    assert _count(conn) == 2


async def test_key_is_free_again_once_the_job_finished(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="done")
    def done() -> int:
        # While the job runs its key is still taken: this returns the job's own id.
        return done.with_options(unique_key="k-completed").enqueue()

    @app.task(name="doomed", max_attempts=1)
    def doomed() -> None:
        raise conveyor.FailNow("no retry")

    completed = done.with_options(unique_key="k-completed").enqueue()
    failed = doomed.with_options(unique_key="k-failed").enqueue()
    cancelled = done.with_options(unique_key="k-cancelled", delay=3600).enqueue()
    assert app.client().cancel(cancelled) == [cancelled]
    async with running_worker(app):
        await eventually(lambda: job_states(conn) == {"completed": 1, "failed": 1, "cancelled": 1})
    assert app.client().get_job(completed).result == completed
    again = [
        done.with_options(unique_key="k-completed").enqueue(),
        doomed.with_options(unique_key="k-failed").enqueue(),
        done.with_options(unique_key="k-cancelled").enqueue(),
    ]
    assert len(set(again)) == 3
    assert set(again).isdisjoint({completed, failed, cancelled})


def test_duplicate_keys_inside_one_bulk_enqueue_share_one_job(
    app: conveyor.Conveyor, charge: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    ids = app.enqueue_many(
        [
            charge.with_options(unique_key="k").spec(order_id=1),
            charge.spec(order_id=2),
            charge.with_options(unique_key="k").spec(order_id=3),
        ]
    )
    assert ids[0] == ids[2] != ids[1]
    assert _count(conn) == 2
    args = conn.execute("SELECT args FROM conveyor.jobs WHERE id = %s", (ids[0],)).fetchone()
    assert args == ({"order_id": 1},), "the first job of a key wins"


def test_large_bulk_enqueue_with_repeated_and_existing_keys(
    db: str, app: conveyor.Conveyor, charge: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    existing = charge.with_options(unique_key="key-0").enqueue(order_id=-1)
    # Above the COPY threshold: keys must still be honoured.
    specs = [charge.with_options(unique_key=f"key-{n % 50}").spec(order_id=n) for n in range(500)]
    with psycopg.connect(db) as caller, caller.transaction():
        ids = app.enqueue_many_tx(caller, specs)
    assert len(ids) == 500
    assert all(ids[n] == ids[n % 50] for n in range(500))
    assert ids[0] == existing
    assert len(set(ids)) == 50
    assert _count(conn) == 50


def _enqueue_python(charge: conveyor.Task[Any]) -> Callable[[psycopg.Connection[Any]], int]:
    def enqueue(caller: psycopg.Connection[Any]) -> int:
        return charge.with_options(unique_key="race").enqueue_tx(caller, order_id=7)

    return enqueue


def _enqueue_sql(caller: psycopg.Connection[Any]) -> int:
    row = caller.execute(
        "SELECT conveyor.enqueue('charge', '{\"order_id\": 7}', unique_key => 'race')"
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(params=["python", "sql"])
def enqueue_race_key(
    request: pytest.FixtureRequest, charge: conveyor.Task[Any]
) -> Callable[[psycopg.Connection[Any]], int]:
    """Enqueue a job with unique key 'race' on the given connection, from Python or from SQL."""
    return _enqueue_python(charge) if request.param == "python" else _enqueue_sql


def test_concurrent_enqueue_of_one_key_yields_one_job(
    db: str,
    conn: psycopg.Connection[Any],
    enqueue_race_key: Callable[[psycopg.Connection[Any]], int],
) -> None:
    barrier = threading.Barrier(THREADS)

    def enqueue() -> int:
        with psycopg.connect(db) as caller, caller.transaction():
            barrier.wait(timeout=10)
            return enqueue_race_key(caller)

    with ThreadPoolExecutor(THREADS) as pool:
        ids = [f.result(timeout=30) for f in [pool.submit(enqueue) for _ in range(THREADS)]]
    assert len(set(ids)) == 1
    assert _count(conn) == 1
    row = conn.execute("SELECT id FROM conveyor.jobs").fetchone()
    assert row == (ids[0],)


@pytest.mark.parametrize("holder_commits", [True, False], ids=["holder-commits", "holder-aborts"])
def test_enqueues_blocked_behind_an_open_transaction_on_the_key_all_get_one_id(
    db: str,
    conn: psycopg.Connection[Any],
    enqueue_race_key: Callable[[psycopg.Connection[Any]], int],
    holder_commits: bool,
) -> None:
    # Every caller waits on the holder's uncommitted row, so each statement's snapshot predates
    # the row it conflicts with: the case a naive INSERT ... ON CONFLICT gets wrong.
    def enqueue() -> int:
        with psycopg.connect(db) as caller, caller.transaction():
            return enqueue_race_key(caller)

    def waiting_on_locks() -> bool:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return row is not None and row[0] == THREADS

    with psycopg.connect(db) as holder, ThreadPoolExecutor(THREADS) as pool:
        holder_id = enqueue_race_key(holder)
        futures = [pool.submit(enqueue) for _ in range(THREADS)]
        wait_until(waiting_on_locks)
        if holder_commits:
            holder.commit()
        else:
            holder.rollback()
        ids = [f.result(timeout=30) for f in futures]
    assert len(set(ids)) == 1
    assert (ids[0] == holder_id) is holder_commits
    assert _count(conn) == 1


# -- the SQL interface ------------------------------------------------------------------------


def test_sql_function_enqueues_in_a_committed_transaction_only(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db) as caller:
        with caller.transaction():
            row = caller.execute(
                "SELECT conveyor.enqueue('email.send', %s::jsonb)", ('{"to": "a@b.c"}',)
            ).fetchone()
            assert _count(conn) == 0, "invisible before commit"
        assert row is not None
        with pytest.raises(_RollbackError), caller.transaction():
            caller.execute("SELECT conveyor.enqueue('email.send')")
            raise _RollbackError
    rows = conn.execute("SELECT id, task, queue, state, args FROM conveyor.jobs").fetchall()
    assert rows == [(row[0], "email.send", "default", "available", {"to": "a@b.c"})]


def test_sql_function_with_a_future_run_at_schedules_the_job(
    conn: psycopg.Connection[Any],
) -> None:
    row = conn.execute(
        "SELECT conveyor.enqueue('report.build', '{}', 'reports', now() + interval '1 hour', 5)"
    ).fetchone()
    assert row is not None
    job = conn.execute(
        "SELECT state, queue, priority, run_at - created_at FROM conveyor.jobs WHERE id = %s",
        (row[0],),
    ).fetchone()
    assert job is not None
    assert job[:3] == ("scheduled", "reports", 5)
    assert job[3].total_seconds() == pytest.approx(3600, abs=5)


def test_sql_function_with_a_unique_key_returns_the_existing_id(
    conn: psycopg.Connection[Any],
) -> None:
    first = conn.execute(
        "SELECT conveyor.enqueue('report.build', '{\"day\": 1}', unique_key => 'daily')"
    ).fetchone()
    again = conn.execute(
        "SELECT conveyor.enqueue('report.build', '{\"day\": 2}', unique_key => 'daily')"
    ).fetchone()
    other = conn.execute(
        "SELECT conveyor.enqueue('report.build', unique_key => 'weekly')"
    ).fetchone()
    assert first == again != other
    assert _count(conn) == 2


@pytest.mark.parametrize(
    ("args", "kind"),
    [("'[1, 2]'", "array"), ("'\"text\"'", "string"), ("'null'", "null"), ("NULL", "NULL")],
)
def test_sql_function_rejects_args_that_are_not_an_object(
    conn: psycopg.Connection[Any], args: str, kind: str
) -> None:
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match=f"args must be a JSON object.*got {kind}"
    ):
        conn.execute(f"SELECT conveyor.enqueue('t', {args}::jsonb)")
    assert _count(conn) == 0


def test_sql_function_keeps_injection_attempts_as_plain_data(
    conn: psycopg.Connection[Any],
) -> None:
    task = "x'); DROP TABLE conveyor.job; --"
    conn.execute("SELECT conveyor.enqueue(%s, %s::jsonb)", (task, '{"q": "\'; DELETE"}'))
    assert conn.execute("SELECT task, args->>'q' FROM conveyor.jobs").fetchone() == (
        task,
        "'; DELETE",
    )


def test_jobs_relation_has_the_contract_columns(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'conveyor' AND table_name = 'jobs'"
    ).fetchall()
    contract = {
        "id": "bigint",
        "task": "text",
        "queue": "text",
        "state": "text",
        "attempt": "integer",
        "max_attempts": "integer",
        "args": "jsonb",
        "errors": "jsonb",
        "created_at": "timestamp with time zone",
        "run_at": "timestamp with time zone",
        "finished_at": "timestamp with time zone",
    }
    columns = dict(rows)
    assert {name: columns.get(name) for name in contract} == contract
