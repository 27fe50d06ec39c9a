"""QueueGauges: reads queue depths and the oldest available job's age for the metrics, on the
elected leader only, so a sum over workers does not multiply them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor._store.protocol import QueueDepth, Store
from conveyor.clock import Clock, SystemClock
from conveyor.maintenance.service import PeriodicService

#: States counted by conveyor_queue_jobs (finished jobs are counted by the workers' counters).
STATES = ("scheduled", "available", "running", "retryable", "waiting")


class QueueGauges(PeriodicService, Collector):
    """Refreshes a snapshot every `interval` seconds while this worker leads; a scrape exports
    it while it is fresh. A worker that finds it lost the lead drops its snapshot at once (a
    host cut off while it led finds out when its link is back, possibly long after another
    was elected), and one that cannot find out stops refreshing, so its snapshot goes stale
    within `3 * interval`: at most one worker exports these."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 10.0,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self._snapshot: list[QueueDepth] = []
        self._taken_at: float | None = None

    async def run_once(self) -> list[QueueDepth]:
        """Read the depths; return them."""
        self._snapshot = await self._store.queue_depths(now=self._clock.now())
        self._taken_at = self._monotonic()
        return self._snapshot

    def not_leading(self) -> None:
        self._taken_at = None

    def fresh(self) -> bool:
        """True while the snapshot is recent enough to export."""
        taken = self._taken_at
        return taken is not None and self._monotonic() - taken < 3 * self.interval

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "conveyor_queue_jobs",
            "Unfinished jobs per queue and state (exported by the elected worker only).",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "conveyor_queue_oldest_available_age_seconds",
            "Age of the oldest available job per queue (exported by the elected worker only).",
            labels=["queue"],
        )
        if self.fresh():
            counts = {(d.queue, d.state): d for d in self._snapshot}
            for queue in sorted({d.queue for d in self._snapshot}):
                for state in STATES:
                    found = counts.get((queue, state))
                    depth.add_metric([queue, state], found.count if found else 0)
                available = counts.get((queue, "available"))
                age = available.oldest_seconds if available else None
                oldest.add_metric([queue], max(age, 0.0) if age is not None else 0.0)
        yield depth
        yield oldest

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
