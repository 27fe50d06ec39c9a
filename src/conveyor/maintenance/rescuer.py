"""JobRescuer: moves running jobs whose lease expired back to available, or to failed when out
of attempts."""

from __future__ import annotations

from conveyor._store.protocol import Rescued, Store
from conveyor.clock import Clock, SystemClock
from conveyor.maintenance.service import PeriodicService


class JobRescuer(PeriodicService):
    """A lease expires when its worker died, hung or was cut off; the lost attempt counts and is
    recorded as a LeaseExpired error. The old worker can no longer complete the job.

    Every worker runs it (the query skips rows another rescuer holds): a leader that hangs
    (SIGSTOP, a frozen VM) keeps its advisory lock, and must not keep crashed jobs stuck.
    """

    leader_only = False

    def __init__(self, store: Store, *, interval: float = 5.0, clock: Clock | None = None) -> None:
        super().__init__(interval)
        self._store = store
        self._clock = clock or SystemClock()

    async def run_once(self) -> Rescued:
        """Rescue every expired job; return how many were retried and failed."""
        retried = failed = 0
        while True:
            result = await self._store.job_rescue_expired(limit=1000, now=self._clock.now())
            retried += result.retried
            failed += result.failed
            if result.retried + result.failed < 1000:
                return Rescued(retried=retried, failed=failed)
