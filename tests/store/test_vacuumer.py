"""TableVacuumer: vacuums the hot table and the history once dead rows pile up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from conveyor._store.postgres import PostgresStore
from conveyor.maintenance.vacuumer import TableVacuumer
from tests.helpers import eventually


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


def _vacuum_count(db: str, table: str) -> int:
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables"
            " WHERE schemaname = 'conveyor' AND relname = %s",
            (table,),
        ).fetchone()
        return int(row[0]) if row else 0


def _pruned_history(db: str, rows: int) -> None:
    """Insert finished jobs into the history and delete them, as the pruner would."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, args,"
            " errors, created_at, run_at, finished_at) SELECT g, 't', 'default', 'completed',"
            " 0, 1, '{}', '[]', now(), now(), now() FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("DELETE FROM conveyor.job_done")


async def test_vacuums_history_whose_dead_rows_pile_up(db: str, store: PostgresStore) -> None:
    before = _vacuum_count(db, "job_done")
    _pruned_history(db, 500)
    vacuumer = TableVacuumer(store, min_dead=100)

    # statistics reach pg_stat_user_tables asynchronously: poll until the dead rows show
    async def vacuumed() -> bool:
        return "job_done" in (await vacuumer.run_once()).tables

    await eventually(vacuumed, timeout=10)
    # the vacuum counter reaches the statistics asynchronously too
    await eventually(lambda: _vacuum_count(db, "job_done") > before, timeout=10)


async def test_leaves_tables_with_few_dead_rows_alone(db: str, store: PostgresStore) -> None:
    _pruned_history(db, 50)
    result = await TableVacuumer(store, min_dead=100).run_once()
    assert result.tables == ()
