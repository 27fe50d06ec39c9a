"""Completer: outcomes recorded in batches; one the database refuses stalls nothing else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.postgres import PostgresStore
from conveyor.job import Job
from conveyor.worker.completer import Completer
from conveyor.worker.outcome import Failed, Outcome, Succeeded


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


async def _claim_all(store: PostgresStore) -> tuple[list[Job], uuid.UUID]:
    token = uuid.uuid4()
    jobs = await store.job_fetch_available(
        queue="default",
        tasks=["t"],
        task_max_attempts=[3],
        limit=10,
        lease_seconds=30,
        token=token,
        worker_id="w1",
        now=None,
    )
    return jobs, token


async def test_a_result_the_database_refuses_fails_only_its_own_job(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="t")
    def t(n: int) -> None:
        return None

    ids = [t.enqueue(n=n) for n in range(3)]
    jobs, token = await _claim_all(store)
    assert sorted(j.id for j in jobs) == ids
    recorded: list[tuple[int, bool]] = []

    def on_recorded(ended: list[tuple[Job, Outcome, bool]]) -> None:
        recorded.extend((job.id, done) for job, _, done in ended)

    completer = Completer(store, on_recorded)
    runner = asyncio.create_task(completer.run())
    # valid JSON for Python, refused by jsonb: "\u0000" has no place in Postgres text
    outcomes: list[Outcome] = [
        Succeeded('"fine"'),
        Succeeded('"nul \\u0000"'),
        Failed({"type": "E", "message": "boom", "traceback": None, "attempt": 1}, 60.0),
    ]
    for job, outcome in zip(sorted(jobs, key=lambda j: j.id), outcomes, strict=True):
        completer.submit(job, token, outcome)
    await asyncio.wait_for(completer.drain(), 10)
    runner.cancel()

    states = dict(conn.execute("SELECT id, state FROM conveyor.jobs").fetchall())
    assert states == {ids[0]: "completed", ids[1]: "failed", ids[2]: "retryable"}
    error = conn.execute("SELECT errors FROM conveyor.jobs WHERE id = %s", (ids[1],)).fetchone()
    assert error is not None
    assert error[0][0]["type"] == "ResultNotRecorded"
    assert sorted(recorded) == [(ids[0], True), (ids[1], True), (ids[2], True)]
