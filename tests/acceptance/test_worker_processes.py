"""Real worker processes: exactly once without failures, rescue after SIGKILL, fencing after
SIGSTOP, graceful shutdown on SIGTERM, survival of lost connections."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
import pytest

import conveyor
from tests.acceptance.conftest import StartWorker, scalar
from tests.acceptance.shop_app import hold, record
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def _enqueue_records(db: str, count: int) -> None:
    app = conveyor.Conveyor(db)
    app.enqueue_many([record.spec(n=n) for n in range(count)])
    app.close()


def _wait_state(db: str, job_id: int, state: str, timeout: float = 30) -> None:
    wait_until(
        lambda: scalar(db, "SELECT state FROM conveyor.jobs WHERE id = %s", job_id) == state,
        timeout=timeout,
    )


def _check_exactly_once(db: str, count: int) -> set[int]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT job_id), count(DISTINCT n),"
            " array_agg(DISTINCT pid) FROM acceptance.executions"
        ).fetchone()
        assert rows is not None
        total, jobs, values, pids = rows
        completed = conn.execute(
            "SELECT count(*) FROM conveyor.jobs WHERE state = 'completed'"
        ).fetchone()
    assert (total, jobs, values) == (count, count, count)
    assert completed == (count,)
    return set(pids)


def test_two_processes_run_5000_jobs_each_exactly_once(
    side_effects: str, start_worker: StartWorker
) -> None:
    _enqueue_records(side_effects, 5000)
    supervisor = start_worker("--processes", "2", "--concurrency", "20")
    wait_until(
        lambda: scalar(side_effects, "SELECT count(*) FROM acceptance.executions") >= 5000,
        timeout=90,
    )
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert len(_check_exactly_once(side_effects, 5000)) == 2, "both processes did some work"


def test_two_independent_workers_share_5000_jobs_exactly_once(
    side_effects: str, start_worker: StartWorker
) -> None:
    first = start_worker("--concurrency", "20")
    second = start_worker("--concurrency", "20")
    wait_until(lambda: scalar(side_effects, "SELECT count(*) FROM conveyor.worker") == 2)
    _enqueue_records(side_effects, 5000)
    wait_until(
        lambda: scalar(side_effects, "SELECT count(*) FROM acceptance.executions") >= 5000,
        timeout=90,
    )
    for worker in (first, second):
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert len(_check_exactly_once(side_effects, 5000)) == 2


def test_job_of_a_killed_worker_is_completed_by_another_after_its_lease(
    side_effects: str, start_worker: StartWorker
) -> None:
    app = conveyor.Conveyor(side_effects)
    job_id = hold.enqueue(seconds=3)
    doomed = start_worker("--lease", "2")
    _wait_state(side_effects, job_id, "running")
    wait_until(lambda: scalar(side_effects, "SELECT count(*) FROM acceptance.executions") == 1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    survivor = start_worker("--lease", "2")
    _wait_state(side_effects, job_id, "completed", timeout=60)
    job = app.client().get_job(job_id)
    assert job.attempt == 2
    assert [e["type"] for e in job.errors] == ["LeaseExpired"]
    assert job.result == survivor.pid
    assert scalar(side_effects, "SELECT count(*) FROM acceptance.executions") == 2
    app.close()


def test_stale_worker_resumed_after_its_lease_cannot_complete_the_job(
    side_effects: str, start_worker: StartWorker
) -> None:
    app = conveyor.Conveyor(side_effects)
    job_id = hold.enqueue(seconds=2)
    stale = start_worker("--lease", "2")
    _wait_state(side_effects, job_id, "running")
    wait_until(lambda: scalar(side_effects, "SELECT count(*) FROM acceptance.executions") == 1)
    stale.send_signal(signal.SIGSTOP)
    other = start_worker("--lease", "2")
    wait_until(
        lambda: scalar(side_effects, "SELECT count(*) FROM acceptance.executions") == 2,
        timeout=30,
    )
    stale.send_signal(signal.SIGCONT)
    _wait_state(side_effects, job_id, "completed", timeout=30)
    time.sleep(3)  # give the resumed worker time to try (and fail) to complete it too
    job = app.client().get_job(job_id)
    assert job.attempt == 2 and job.result == other.pid
    assert stale.poll() is None, "the stale worker keeps running"
    later = record.enqueue(n=1)
    _wait_state(side_effects, later, "completed")
    app.close()


def test_sigterm_lets_a_running_job_finish_within_the_grace(
    side_effects: str, start_worker: StartWorker
) -> None:
    job_id = hold.enqueue(seconds=1)
    worker = start_worker("--shutdown-grace", "5")
    _wait_state(side_effects, job_id, "running")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert scalar(side_effects, "SELECT state FROM conveyor.jobs WHERE id = %s", job_id) == (
        "completed"
    )


def test_sigterm_puts_a_job_back_when_the_grace_runs_out(
    side_effects: str, start_worker: StartWorker
) -> None:
    app = conveyor.Conveyor(side_effects)
    job_id = hold.enqueue(seconds=30)
    worker = start_worker("--shutdown-grace", "1")
    _wait_state(side_effects, job_id, "running")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    job = app.client().get_job(job_id)
    assert (job.state, job.attempt, job.errors) == ("available", 0, [])
    app.close()


def test_second_sigterm_exits_at_once(side_effects: str, start_worker: StartWorker) -> None:
    job_id = hold.enqueue(seconds=30)
    worker = start_worker("--shutdown-grace", "60")
    _wait_state(side_effects, job_id, "running")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) != 0
    assert time.monotonic() - started < 5


def test_worker_survives_losing_its_database_connections(
    side_effects: str, start_worker: StartWorker
) -> None:
    start_worker("--concurrency", "4")
    wait_until(lambda: scalar(side_effects, "SELECT count(*) FROM conveyor.worker") == 1)
    with psycopg.connect(side_effects, autocommit=True) as conn:
        killed: Any = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'conveyor%' AND datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed[0] >= 2
    job_id = record.enqueue(n=99)
    _wait_state(side_effects, job_id, "completed", timeout=30)
