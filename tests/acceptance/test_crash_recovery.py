"""A worker killed, frozen or crashed mid-job: another worker finishes the job once its lease
expires, and a worker that comes back too late cannot complete it a second time."""

from __future__ import annotations

import signal

import psycopg
import pytest

import conveyor
from tests.acceptance.conftest import (
    StartWorker,
    executions,
    open_gate,
    scalar,
    wait_for_lease_to_expire,
    wait_for_state,
    wait_for_workers,
)
from tests.acceptance.shop_app import crash_once, record, sleepy, sleepy_sync
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def test_job_of_a_killed_worker_is_completed_by_another_after_its_lease_expires(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    long_job = sleepy.enqueue(seconds=60, gate="after-crash")
    quick_jobs = shop.enqueue_many([record.spec(n=n) for n in range(10)])
    doomed = start_worker()
    wait_until(lambda: executions(db, long_job) == [(1, doomed.pid)])
    for job_id in quick_jobs:
        wait_for_state(db, job_id, "completed")

    doomed.send(signal.SIGKILL)
    doomed.wait(timeout=10)
    open_gate(db, "after-crash")  # the next run of the long job returns at once
    wait_for_lease_to_expire(db, long_job)
    survivor = start_worker()
    wait_for_state(db, long_job, "completed")

    job = shop.client().get_job(long_job)
    assert job.attempt == 2
    assert [e["type"] for e in job.errors] == ["LeaseExpired"]
    assert job.result == survivor.pid
    assert executions(db, long_job) == [(1, doomed.pid), (2, survivor.pid)]
    with psycopg.connect(db, autocommit=True) as conn:
        runs: dict[int, int] = dict(
            conn.execute("SELECT job_id, count(*) FROM acceptance.executions GROUP BY job_id")
        )
    assert runs == {long_job: 2, **dict.fromkeys(quick_jobs, 1)}


def test_worker_resumed_after_its_lease_expired_cannot_complete_the_job_again(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    job_id = sleepy_sync.enqueue(seconds=3)
    stale = start_worker()
    wait_until(lambda: executions(db, job_id) == [(1, stale.pid)])

    stale.send(signal.SIGSTOP)
    wait_for_lease_to_expire(db, job_id)
    other = start_worker()
    wait_for_state(db, job_id, "completed")
    completed = shop.client().get_job(job_id)

    stale.send(signal.SIGCONT)
    # Its handler returns at once (its sleep ran out while it was stopped), and the worker
    # learns, from its refused completion or its next lease renewal, that the job is gone.
    wait_until(
        lambda: (
            f"job {job_id} (sleepy_sync): outcome refused" in stale.log()
            or f"job {job_id} (sleepy_sync) stopped: its lease was lost" in stale.log()
        )
    )
    assert shop.client().get_job(job_id) == completed
    assert scalar(db, "SELECT count(*) FROM conveyor.jobs WHERE id = %s", job_id) == 1
    assert (completed.state, completed.attempt, completed.result) == ("completed", 2, other.pid)
    assert [e["type"] for e in completed.errors] == ["LeaseExpired"]
    assert executions(db, job_id) == [(1, stale.pid), (2, other.pid)]

    # The stale worker keeps running and goes on to complete new jobs.
    other.send(signal.SIGTERM)
    assert other.wait(timeout=15) == 0
    assert stale.alive()
    later = record.enqueue(n=1)
    wait_for_state(db, later, "completed")
    assert executions(db, later) == [(1, stale.pid)]


def test_job_that_kills_its_worker_process_is_finished_once_the_supervisor_replaces_it(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    supervisor = start_worker("--processes", "2")
    wait_for_workers(db, 2)
    job_id = crash_once.enqueue()
    wait_for_state(db, job_id, "completed", timeout=30)

    job = shop.client().get_job(job_id)
    assert job.attempt == 2
    assert [e["type"] for e in job.errors] == ["LeaseExpired"]
    (_, crashed), (_, finisher) = executions(db, job_id)
    assert finisher == job.result != crashed
    replaced = f"worker process {crashed} exited (-9); starting another"
    wait_until(lambda: replaced in supervisor.log())
    wait_for_workers(db, 3)  # the crashed one never deregistered; its replacement did register
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
