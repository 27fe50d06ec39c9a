"""RunningJobs: every job a worker claimed, from its claim until its outcome is recorded and
its handler's thread (if it had one) has returned.

One RunningJob per claim holds all of that claim's runtime state: its asyncio task, whether
the handler started, the thread running a sync handler, why it was abandoned. The worker's
capacity is counted here too: a sync handler that outlived its attempt (a timeout or a cancel
that could not interrupt a blocking call) still holds a thread, so it holds a slot until it
returns, and its RunningJob is kept until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from conveyor.job import Job

#: One attempt of one job: (job id, attempt number).
Attempt = tuple[int, int]


@dataclass(eq=False)
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
    #: The outcome was recorded (or the attempt abandoned): nothing more is owed the database.
    settled: bool = False
    #: The thread running the sync handler (set and cleared by the executor under its lock).
    thread: int | None = None
    duration: float | None = None
    abandon_reason: str | None = None

    @property
    def attempt(self) -> Attempt:
        return (self.job.id, self.job.attempt)

    @property
    def stuck(self) -> bool:
        """The attempt ended, but its sync handler still holds a thread."""
        return self.ended and self.thread is not None

    def mark_started(self) -> None:
        # called from the handler's thread for sync jobs: a plain attribute store is atomic
        self.started = True


class RunningJobs:
    """The worker's claims by attempt, and what they leave free of its concurrency.

    Claims are keyed by attempt, so a job retried while an earlier attempt's thread is stuck
    has two entries; each is removed only through its own Job (take, thread_returned), never
    by job id, so the end of one attempt cannot drop another.
    """

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._claims: dict[Attempt, RunningJob] = {}
        # kept as they change, so free_slots() (asked on every job's end) need not scan
        self._unended = 0
        self._ended_in_thread: set[RunningJob] = set()

    def add(self, job: Job, token: UUID) -> RunningJob:
        running = RunningJob(job, token)
        self._claims[running.attempt] = running
        self._unended += 1
        return running

    def end(self, running: RunningJob) -> None:
        """The attempt of `running` ended (its outcome goes to the completer)."""
        if running.ended:
            return
        running.ended = True
        self._unended -= 1
        if running.thread is not None:
            self._ended_in_thread.add(running)

    def current(self, job_id: int) -> RunningJob | None:
        """The latest unsettled claim of `job_id` (what a cancel or a lost lease is about)."""
        claims = [r for r in self._claims.values() if r.job.id == job_id and not r.settled]
        return max(claims, key=lambda r: r.job.attempt, default=None)

    def take(self, job: Job) -> RunningJob | None:
        """Settle the claim of this very `job` (not another attempt of the same id) and return
        it; it stays counted while its thread still runs (thread_returned removes it then)."""
        running = self._claims.get((job.id, job.attempt))
        if running is None or running.job is not job:
            return None
        running.settled = True
        if running.thread is None:
            del self._claims[running.attempt]
        return running

    def thread_returned(self, running: RunningJob) -> None:
        """The thread of `running` returned: forget it if its outcome was settled before."""
        if running.settled and self._claims.get(running.attempt) is running:
            del self._claims[running.attempt]

    def __contains__(self, job_id: int) -> bool:
        """Some claim of `job_id` is still owed an outcome."""
        return any(r.job.id == job_id and not r.settled for r in self._claims.values())

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._claims.values()))

    @property
    def running_count(self) -> int:
        """Attempts under way (not yet ended)."""
        return self._unended

    @property
    def stuck_threads(self) -> int:
        """Threads still running a sync handler whose attempt already ended."""
        return sum(1 for r in self._claims.values() if r.stuck)

    def free_slots(self) -> int:
        """Jobs that can start now: a stuck thread counts against the concurrency as a
        running job does, so no claimed job waits for a thread."""
        stuck = 0
        if self._ended_in_thread:
            self._ended_in_thread = {r for r in self._ended_in_thread if r.thread is not None}
            stuck = len(self._ended_in_thread)
        return self._concurrency - self._unended - stuck

    def held(self) -> list[tuple[int, UUID]]:
        """(id, lease token) of every started job whose outcome is not recorded yet."""
        return [(r.job.id, r.token) for r in self._claims.values() if r.started and not r.settled]
