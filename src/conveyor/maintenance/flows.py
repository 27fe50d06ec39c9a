"""FlowAdvancer: makes waiting parents available once their children have finished, or fails
them at once when a child failed and the flow's policy is 'fail'."""

from __future__ import annotations

from conveyor._store.flows import Advanced
from conveyor._store.protocol import Store
from conveyor.clock import Clock, SystemClock
from conveyor.maintenance.service import PeriodicService


class FlowAdvancer(PeriodicService):
    """Runs on every worker; the statement's SKIP LOCKED hands each parent to one of them."""

    leader_only = False

    def __init__(self, store: Store, *, interval: float = 0.5, clock: Clock | None = None) -> None:
        super().__init__(interval)
        self._store = store
        self._clock = clock or SystemClock()

    async def run_once(self) -> Advanced:
        """Advance every parent whose children allow it; report how many moved."""
        return await self._store.flow_advance(now=self._clock.now())
