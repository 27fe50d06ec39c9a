"""JobScheduler: makes scheduled and retryable jobs available when their run_at comes."""

from __future__ import annotations

from conveyor._store.protocol import Store
from conveyor.clock import Clock, SystemClock
from conveyor.maintenance.service import PeriodicService


class JobScheduler(PeriodicService):
    """Moves due scheduled/retryable jobs to available and wakes workers (every worker runs it:
    the query skips rows another worker holds, and a dead leader must not delay retries)."""

    leader_only = False

    def __init__(self, store: Store, *, interval: float = 1.0, clock: Clock | None = None) -> None:
        super().__init__(interval)
        self._store = store
        self._clock = clock or SystemClock()

    async def run_once(self) -> int:
        """Promote every due job; return how many."""
        total = 0
        while True:
            moved = await self._store.job_promote_due(limit=1000, now=self._clock.now())
            total += moved
            if moved < 1000:
                return total
