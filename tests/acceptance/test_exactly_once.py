"""Two worker processes share 5,000 jobs: each job runs exactly once when nothing fails, and
both processes do some of the work."""

from __future__ import annotations

import signal

import psycopg
import pytest

import conveyor
from tests.acceptance.conftest import StartWorker, scalar, wait_for_workers
from tests.acceptance.shop_app import record
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

JOBS = 5000


def _enqueue_records(shop: conveyor.Conveyor) -> set[int]:
    return set(shop.enqueue_many([record.spec(n=n) for n in range(JOBS)]))


def _wait_until_all_completed(db: str) -> None:
    wait_until(
        lambda: scalar(db, "SELECT count(*) FROM conveyor.jobs WHERE state = 'completed'") == JOBS,
        timeout=60,
        interval=0.2,
    )


def _executions(db: str) -> tuple[int, set[int], set[int]]:
    """(rows, distinct job ids, distinct pids) of the side table."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT job_id, pid FROM acceptance.executions").fetchall()
    return len(rows), {job_id for job_id, _ in rows}, {pid for _, pid in rows}


def test_two_processes_of_one_worker_command_run_each_job_exactly_once(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    ids = _enqueue_records(shop)
    supervisor = start_worker("--processes", "2", "--concurrency", "20")
    _wait_until_all_completed(db)
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0

    rows, job_ids, pids = _executions(db)
    assert rows == JOBS
    assert job_ids == ids
    assert len(pids) == 2, f"expected both child processes to work, got pids {pids}"
    assert supervisor.pid not in pids


def test_two_worker_commands_run_each_job_exactly_once(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    first = start_worker("--concurrency", "20")
    second = start_worker("--concurrency", "20")
    wait_for_workers(db, 2)
    ids = _enqueue_records(shop)
    _wait_until_all_completed(db)
    for worker in (first, second):
        worker.send(signal.SIGTERM)
    assert [first.wait(timeout=30), second.wait(timeout=30)] == [0, 0]

    rows, job_ids, pids = _executions(db)
    assert rows == JOBS
    assert job_ids == ids
    assert pids == {first.pid, second.pid}
