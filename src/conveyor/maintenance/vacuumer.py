"""TableVacuumer: vacuums the hot table and the history when dead rows pile up, whatever
autovacuum does.

Every job leaves dead rows and dead index entries in conveyor.job; claims and completions
step over them until a vacuum clears them. Pruning leaves dead rows in conveyor.job_done, whose
space is reused only after a vacuum (which also summarizes the BRIN index the pruner reads).
Autovacuum may be off (it is on some managed and test servers) or lag behind a busy queue, so
the leader checks and vacuums itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor._store.protocol import Store, TableName
from conveyor.maintenance.service import PeriodicService


@dataclass(frozen=True)
class Vacuumed:
    """The tables this pass vacuumed, and the dead rows it saw per table."""

    tables: tuple[TableName, ...]
    dead_rows: dict[str, int] = field(default_factory=dict)


class TableVacuumer(PeriodicService):
    """Vacuums a table when its dead rows exceed `min_dead` and a fifth of its live rows."""

    TABLES: tuple[TableName, ...] = ("job", "job_done")

    def __init__(self, store: Store, *, interval: float = 10.0, min_dead: int = 20_000) -> None:
        super().__init__(interval)
        self._store = store
        self._min_dead = min_dead

    async def run_once(self) -> Vacuumed:
        """Vacuum what needs it; report what was seen."""
        stats = await self._store.table_dead_tuples()
        vacuumed: list[TableName] = []
        for table in self.TABLES:
            dead, live = stats.get(table, (0, 0))
            if dead >= self._min_dead and dead >= live // 5:
                await self._store.table_vacuum(table)
                vacuumed.append(table)
        return Vacuumed(tuple(vacuumed), {name: dead for name, (dead, _) in stats.items()})
