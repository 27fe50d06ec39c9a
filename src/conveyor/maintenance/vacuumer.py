"""JobVacuumer: vacuums the hot table when dead rows pile up, whatever autovacuum does.

Every job leaves dead rows and dead index entries in conveyor.job; claims and completions
step over them until a vacuum clears them. Autovacuum may be off (it is on some managed and
test servers) or lag behind a busy queue, so the leader checks and vacuums itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor._store.protocol import Store
from conveyor.maintenance.service import PeriodicService


@dataclass(frozen=True)
class Vacuumed:
    """Whether this pass vacuumed, and the dead rows it saw."""

    vacuumed: bool
    dead_rows: int


class JobVacuumer(PeriodicService):
    """Vacuums conveyor.job when dead rows exceed `min_dead` and a fifth of the live rows."""

    def __init__(self, store: Store, *, interval: float = 10.0, min_dead: int = 20_000) -> None:
        super().__init__(interval)
        self._store = store
        self._min_dead = min_dead

    async def run_once(self) -> Vacuumed:
        """Vacuum if needed; report what was seen."""
        dead, live = await self._store.job_table_dead_tuples()
        if dead >= self._min_dead and dead >= live // 5:
            await self._store.job_table_vacuum()
            return Vacuumed(True, dead)
        return Vacuumed(False, dead)
