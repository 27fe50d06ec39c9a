"""JobPruner: deletes finished jobs past their retention, and forgotten workers."""

from __future__ import annotations

from datetime import timedelta

from conveyor._store.protocol import Pruned, Store
from conveyor.clock import Clock, SystemClock
from conveyor.maintenance.service import PeriodicService

STALE_WORKER = timedelta(hours=1)


class JobPruner(PeriodicService):
    """Completed and cancelled jobs go after 24 h, failed ones after 14 days by default
    (see Retention); idempotency keys after 7 days; records of enqueued cron slots after 14
    days (each schedule's latest is kept). Finished workflow runs (with their steps) follow
    the jobs' retention; workflow events go when they expire."""

    def __init__(
        self,
        store: Store,
        *,
        completed: timedelta,
        cancelled: timedelta,
        failed: timedelta,
        idempotency_keys: timedelta,
        cron_slots: timedelta = timedelta(days=14),
        interval: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._ages = (completed, cancelled, failed, idempotency_keys)
        self._cron_slots = cron_slots
        self._clock = clock or SystemClock()

    async def run_once(self) -> Pruned:
        """Prune in chunks until nothing is left past retention; return the totals."""
        completed, cancelled, failed, keys = (age.total_seconds() for age in self._ages)
        jobs = idempotency = 0
        while True:
            pruned = await self._store.job_prune_done(
                completed_seconds=completed,
                cancelled_seconds=cancelled,
                failed_seconds=failed,
                idempotency_seconds=keys,
                limit=10_000,
                now=self._clock.now(),
            )
            jobs += pruned.jobs
            idempotency += pruned.idempotency_keys
            if pruned.jobs < 10_000:
                break
        slots = await self._store.cron_slot_prune(
            self._cron_slots.total_seconds(), now=self._clock.now()
        )
        await self._store.worker_prune_stale(STALE_WORKER.total_seconds(), now=self._clock.now())
        if jobs:
            await self._store.flow_prune()  # links of parents that were just pruned
        runs, events = await self._store.workflow_prune(
            completed_seconds=completed,
            cancelled_seconds=cancelled,
            failed_seconds=failed,
            limit=10_000,
            now=self._clock.now(),
        )
        return Pruned(
            jobs=jobs,
            idempotency_keys=idempotency,
            cron_slots=slots,
            workflow_runs=runs,
            workflow_events=events,
        )
