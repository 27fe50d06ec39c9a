"""Unique keys under concurrency, and the SQL interface other languages use."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import conveyor


@pytest.fixture
def charge(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="charge")
    def charge(order_id: int) -> None:
        return None

    return charge


def test_second_enqueue_with_same_key_returns_the_existing_job(
    conn: psycopg.Connection[Any], charge: conveyor.Task[Any]
) -> None:
    first = charge.with_options(unique_key="order-1").enqueue(order_id=1)
    second = charge.with_options(unique_key="order-1").enqueue(order_id=1)
    assert first == second
    assert conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone() == (1,)


def test_key_is_free_again_once_the_job_finished(
    app: conveyor.Conveyor, charge: conveyor.Task[Any]
) -> None:
    first = charge.with_options(unique_key="order-2").enqueue(order_id=2)
    app.client().cancel(first)
    second = charge.with_options(unique_key="order-2").enqueue(order_id=2)
    assert second != first


def test_duplicate_keys_inside_one_bulk_enqueue_share_one_job(
    app: conveyor.Conveyor, charge: conveyor.Task[Any]
) -> None:
    ids = app.enqueue_many(
        [
            charge.with_options(unique_key="k").spec(order_id=1),
            charge.spec(order_id=2),
            charge.with_options(unique_key="k").spec(order_id=3),
        ]
    )
    assert ids[0] == ids[2] != ids[1]


def test_concurrent_enqueue_of_one_key_yields_one_job(
    db: str, conn: psycopg.Connection[Any], charge: conveyor.Task[Any]
) -> None:
    barrier = threading.Barrier(8)
    results: list[int] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            with psycopg.connect(db) as caller, caller.transaction():
                barrier.wait(timeout=10)
                results.append(
                    charge.with_options(unique_key="race").enqueue_tx(caller, order_id=7)
                )
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 8 and len(set(results)) == 1
    assert conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone() == (1,)


def test_sql_function_enqueues_in_committed_transaction_only(db: str) -> None:
    with psycopg.connect(db) as caller:
        with caller.transaction():
            row = caller.execute(
                "SELECT conveyor.enqueue('email.send', %s::jsonb)", ('{"to": "a@b.c"}',)
            ).fetchone()
        assert row is not None
        kept = row[0]
        with pytest.raises(_RollbackError), caller.transaction():
            caller.execute("SELECT conveyor.enqueue('email.send')")
            raise _RollbackError
        rows = caller.execute("SELECT id, task, queue, state, args FROM conveyor.jobs").fetchall()
    assert rows == [(kept, "email.send", "default", "available", {"to": "a@b.c"})]


class _RollbackError(Exception):
    pass


def test_sql_function_with_future_run_at_priority_queue_and_unique_key(
    conn: psycopg.Connection[Any],
) -> None:
    first = conn.execute(
        "SELECT conveyor.enqueue('report.build', '{}', 'reports', now() + interval '1 hour',"
        " 5, 'daily')"
    ).fetchone()
    again = conn.execute(
        "SELECT conveyor.enqueue('report.build', unique_key => 'daily')"
    ).fetchone()
    assert first == again
    row = conn.execute(
        "SELECT state, queue, priority, run_at > now() FROM conveyor.jobs"
    ).fetchone()
    assert row == ("scheduled", "reports", 5, True)


@pytest.mark.parametrize("args", ["'[1, 2]'", "'\"text\"'", "'null'", "NULL"])
def test_sql_function_rejects_non_object_args(conn: psycopg.Connection[Any], args: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="args must be a JSON object"):
        conn.execute(f"SELECT conveyor.enqueue('t', {args}::jsonb)")


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
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'conveyor' AND table_name = 'jobs'"
    ).fetchall()
    columns = {r[0] for r in rows}
    contract = {"id", "task", "queue", "state", "attempt", "max_attempts", "args", "errors"}
    assert contract | {"created_at", "run_at", "finished_at"} <= columns
