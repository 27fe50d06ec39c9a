"""SIGTERM lets running jobs finish within the grace period and puts the rest back untouched;
a second SIGTERM exits at once; a worker outlives the loss of its database connections."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
import pytest

import conveyor
from tests.acceptance.conftest import (
    StartWorker,
    executions,
    job_state,
    open_gate,
    wait_for_state,
)
from tests.acceptance.shop_app import record, sleepy, sleepy_sync
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def test_sigterm_lets_a_running_job_finish_within_the_grace(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    job_id = sleepy.enqueue(seconds=1)
    worker = start_worker("--shutdown-grace", "5")
    wait_until(lambda: executions(db, job_id) == [(1, worker.pid)])

    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    job = shop.client().get_job(job_id)
    assert (job.state, job.attempt, job.result) == ("completed", 1, worker.pid)


@pytest.mark.parametrize("task", [sleepy, sleepy_sync], ids=["async", "sync"])
def test_sigterm_puts_a_job_back_uncounted_when_the_grace_runs_out(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker, task: conveyor.Task[Any]
) -> None:
    job_id = task.enqueue(seconds=30, gate="second-run")
    first = start_worker("--shutdown-grace", "1")
    wait_until(lambda: executions(db, job_id) == [(1, first.pid)])

    signalled = time.monotonic()
    first.send(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 5
    job = shop.client().get_job(job_id)
    assert (job.state, job.attempt, job.errors) == ("available", 0, [])

    open_gate(db, "second-run")
    second = start_worker()
    wait_for_state(db, job_id, "completed")
    job = shop.client().get_job(job_id)
    assert (job.attempt, job.errors, job.result) == (1, [], second.pid)
    assert executions(db, job_id) == [(1, first.pid), (1, second.pid)]


def test_sync_handler_stuck_in_a_blocking_call_does_not_hold_the_process_past_the_grace(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    job_id = sleepy_sync.enqueue(seconds=30)  # one time.sleep(30): nothing can interrupt it
    worker = start_worker("--shutdown-grace", "1")
    wait_until(lambda: executions(db, job_id) == [(1, worker.pid)])

    signalled = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, worker.log()
    assert time.monotonic() - signalled < 5, worker.log()
    assert "1 sync handler(s) still blocked after shutdown" in worker.log()
    assert job_state(db, job_id) == "available"


def test_second_sigterm_exits_at_once(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    job_id = sleepy.enqueue(seconds=30)
    worker = start_worker("--shutdown-grace", "60")
    wait_until(lambda: executions(db, job_id) == [(1, worker.pid)])

    worker.send(signal.SIGTERM)
    wait_until(lambda: "finishing running jobs" in worker.log())
    signalled = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=5) == 130
    assert time.monotonic() - signalled < 2
    # Nothing put it back: the job stays running until its lease expires and it is rescued.
    assert job_state(db, job_id) == "running"


def test_worker_survives_losing_its_database_connections(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    worker = start_worker("--concurrency", "4")
    before = record.enqueue(n=1)
    wait_for_state(db, before, "completed")

    # the leader lease is a row renewed through the worker's pool: no connection of its own
    own = {"conveyor-listener", f"conveyor-worker-{worker.pid}"}
    wait_until(lambda: own <= _connected_applications(db))

    with psycopg.connect(db, autocommit=True) as conn:
        cut = conn.execute(
            "SELECT pg_terminate_backend(pid), application_name, pid FROM pg_stat_activity"
            " WHERE application_name LIKE 'conveyor%' AND datname = current_database()"
        ).fetchall()
    assert own <= {name for terminated, name, _ in cut if terminated}
    # pg_terminate_backend only signals: wait until the backends are gone, as after a restart.
    # (The cut takes this process's enqueue pool too; its check sees the closed sockets only
    # once the backends have said goodbye. Enqueuing sooner raced them: seen once, AdminShutdown.)
    wait_until(lambda: not {pid for _, _, pid in cut} & _backend_pids(db))

    after = record.enqueue(n=2)
    wait_for_state(db, after, "completed")
    assert executions(db, after) == [(1, worker.pid)]
    assert "listener lost its connection" in worker.log()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0


def _connected_applications(db: str) -> set[str]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
    return {name for (name,) in rows}


def _backend_pids(db: str) -> set[int]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity").fetchall()
    return {pid for (pid,) in rows}
