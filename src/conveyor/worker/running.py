"""RunningJobs: every job a worker claimed, from its claim until its outcome is recorded.

One object per job holds its runtime state, and the worker's capacity is counted here: a
sync handler that outlived its attempt (a timeout or a cancel that could not interrupt a
blocking call) still holds a thread, so it holds a slot too until it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from uuid import UUID

from conveyor.job import Job

#: One attempt of one job: (job id, attempt number).
Attempt = tuple[int, int]


@dataclass
class RunningJob:
    """One claimed job's runtime state."""

    job: Job
    token: UUID
    task: asyncio.Task[None] | None = None
    #: The handler began (a sync one: a thread took it). Only started jobs' leases are
    #: renewed: a job no thread took must be free to expire and run elsewhere.
    started: bool = False
    #: The attempt ended; its outcome waits for the completer (its lease is still held).
    ended: bool = False
    duration: float | None = None
    abandon_reason: str | None = None

    @property
    def attempt(self) -> Attempt:
        return (self.job.id, self.job.attempt)

    def mark_started(self) -> None:
        # called from the handler's thread for sync jobs: a plain attribute store is atomic
        self.started = True


class RunningJobs:
    """The worker's claimed jobs by id, and what they leave free of its concurrency."""

    def __init__(
        self, concurrency: int, thread_jobs: Callable[[], frozenset[Attempt]] | None = None
    ) -> None:
        self._concurrency = concurrency
        self._by_id: dict[int, RunningJob] = {}
        self._thread_jobs = thread_jobs or frozenset

    def use_threads(self, thread_jobs: Callable[[], frozenset[Attempt]]) -> None:
        """Count the attempts that hold a thread (the executor knows them)."""
        self._thread_jobs = thread_jobs

    def add(self, job: Job, token: UUID) -> RunningJob:
        running = RunningJob(job, token)
        self._by_id[job.id] = running
        return running

    def get(self, job_id: int) -> RunningJob | None:
        return self._by_id.get(job_id)

    def pop(self, job_id: int) -> RunningJob | None:
        return self._by_id.pop(job_id, None)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._by_id

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._by_id.values()))

    def active(self) -> set[Attempt]:
        """Attempts under way (not yet ended)."""
        return {r.attempt for r in self._by_id.values() if not r.ended}

    @property
    def running_count(self) -> int:
        return sum(1 for r in self._by_id.values() if not r.ended)

    @property
    def stuck_threads(self) -> int:
        """Threads still running a sync handler whose attempt already ended."""
        return len(self._thread_jobs() - self.active())

    def free_slots(self) -> int:
        """Jobs that can start now: a stuck thread counts against the concurrency as a
        running job does, so no claimed job waits for a thread."""
        return self._concurrency - len(self.active() | self._thread_jobs())

    def holds_thread(self, attempt: Attempt) -> bool:
        return attempt in self._thread_jobs()

    def held(self) -> list[tuple[int, UUID]]:
        """(id, lease token) of every started job whose outcome is not recorded yet."""
        return [(job_id, r.token) for job_id, r in self._by_id.items() if r.started]
