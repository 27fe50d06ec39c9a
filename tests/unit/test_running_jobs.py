"""RunningJobs: one RunningJob per claim; settling one attempt never drops another, and a
stuck thread keeps its slot until it returns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from conveyor.job import Job, JobState
from conveyor.worker.running import RunningJobs


def _job(job_id: int, attempt: int = 1) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=job_id,
        task="t",
        queue="default",
        state=JobState.RUNNING,
        priority=0,
        attempt=attempt,
        max_attempts=3,
        args={},
        errors=[],
        unique_key=None,
        timeout_seconds=None,
        created_at=now,
        run_at=now,
        attempted_at=now,
        finished_at=None,
        result=None,
        worker_id="w",
    )


def test_take_settles_and_removes_only_the_matching_attempt() -> None:
    jobs = RunningJobs(concurrency=4)
    first = _job(7, attempt=1)
    retry = _job(7, attempt=2)
    jobs.add(first, uuid.uuid4())
    running_retry = jobs.add(retry, uuid.uuid4())
    taken = jobs.take(first)
    assert taken is not None and taken.job is first and taken.settled
    assert list(jobs) == [running_retry]
    assert jobs.current(7) is running_retry


def test_take_of_another_claim_with_the_same_attempt_number_removes_nothing() -> None:
    jobs = RunningJobs(concurrency=4)
    old = _job(3, attempt=1)
    # a snoozed job goes back without counting its attempt: its next claim has the same number
    new = _job(3, attempt=1)
    jobs.add(old, uuid.uuid4())
    current = jobs.add(new, uuid.uuid4())
    assert jobs.take(old) is None
    assert list(jobs) == [current]
    assert 3 in jobs


def test_take_of_an_unknown_job_returns_none() -> None:
    jobs = RunningJobs(concurrency=1)
    assert jobs.take(_job(1)) is None


def test_a_stuck_thread_keeps_its_slot_until_it_returns() -> None:
    jobs = RunningJobs(concurrency=2)
    job = _job(5)
    running = jobs.add(job, uuid.uuid4())
    running.started = True
    running.thread = 1234
    assert (jobs.free_slots(), jobs.running_count, jobs.stuck_threads) == (1, 1, 0)
    jobs.end(running)  # the attempt timed out; its thread cannot be interrupted
    assert (jobs.free_slots(), jobs.running_count, jobs.stuck_threads) == (1, 0, 1)
    jobs.take(job)  # its outcome is recorded
    assert 5 not in jobs
    assert jobs.held() == []
    assert (jobs.free_slots(), jobs.stuck_threads) == (1, 1)
    running.thread = None
    jobs.thread_returned(running)
    assert (jobs.free_slots(), jobs.stuck_threads) == (2, 0)
    assert list(jobs) == []


def test_a_thread_returning_before_its_outcome_is_recorded_leaves_the_claim() -> None:
    jobs = RunningJobs(concurrency=1)
    job = _job(9)
    running = jobs.add(job, uuid.uuid4())
    running.thread = 1
    running.thread = None
    jobs.thread_returned(running)
    assert list(jobs) == [running]
    assert jobs.take(job) is running
    assert list(jobs) == []


def test_held_lists_started_unsettled_claims_only() -> None:
    jobs = RunningJobs(concurrency=3)
    token = uuid.uuid4()
    started = jobs.add(_job(1), token)
    started.started = True
    jobs.add(_job(2), token)  # claimed, no thread took it yet: its lease may expire
    assert jobs.held() == [(1, token)]


def test_current_is_the_latest_unsettled_attempt() -> None:
    jobs = RunningJobs(concurrency=3)
    first, second = _job(4, 1), _job(4, 2)
    stuck = jobs.add(first, uuid.uuid4())
    stuck.thread = 99
    jobs.end(stuck)
    jobs.take(first)
    assert jobs.current(4) is None
    retry = jobs.add(second, uuid.uuid4())
    assert jobs.current(4) is retry
