"""durable_transitions: the worker's own claims, completions, failures and lease renewals wait
for their WAL flush unless the worker is told otherwise; enqueues, maintenance and handlers'
transactions keep theirs either way.

Row triggers record synchronous_commit as each write's transaction sees it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor.errors import ConfigError
from conveyor.worker import WorkerConfig
from tests.helpers import eventually, fast_config, job_states, running_worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def seen(conn: psycopg.Connection[Any]) -> Iterator[None]:
    conn.execute("CREATE TABLE conveyor.test_seen (n serial, what text, setting text)")
    conn.execute(
        "CREATE FUNCTION conveyor.test_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO conveyor.test_seen (what, setting)"
        " VALUES (TG_TABLE_NAME || ' ' || lower(TG_OP) || ' ' || NEW.state || ' '"
        "         || (NEW.args ->> 'name'), current_setting('synchronous_commit'));"
        " RETURN NULL; END $$"
    )
    for table, ops in (("job", "INSERT OR UPDATE"), ("job_done", "INSERT")):
        conn.execute(
            f"CREATE TRIGGER test_seen AFTER {ops} ON conveyor.{table} FOR EACH ROW"
            " EXECUTE FUNCTION conveyor.test_seen()"
        )
    try:
        yield
    finally:
        for table in ("job", "job_done"):
            conn.execute(f"DROP TRIGGER test_seen ON conveyor.{table}")
        conn.execute("DROP FUNCTION conveyor.test_seen()")
        conn.execute("DROP TABLE conveyor.test_seen")


def _settings(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
    """Each kind of write (table, operation, new state, job name): the settings it saw."""
    out: dict[str, set[str]] = {}
    for what, setting in conn.execute("SELECT what, setting FROM conveyor.test_seen ORDER BY n"):
        out.setdefault(what, set()).add(setting)
    return out


async def _run_jobs(app: conveyor.Conveyor, conn: psycopg.Connection[Any], durable: bool) -> None:
    @app.task(name="plain")
    async def plain(name: str) -> None:
        pass

    @app.task(name="flaky", backoff=conveyor.RetryPolicy(base=0.05, jitter=0), max_attempts=2)
    async def flaky(ctx: conveyor.JobContext, name: str) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("down on the first attempt")

    @app.task(name="slow")
    async def slow(name: str) -> None:
        await asyncio.sleep(1.2)  # past a lease renewal (every 2 s / 3)

    @app.task(name="spawner")
    async def spawner(name: str) -> None:
        await plain.aenqueue(name="spawned")

    app.client().configure_queue("limited", concurrency=1)
    plain.enqueue(name="plain")
    flaky.enqueue(name="flaky")
    slow.enqueue(name="slow")
    spawner.enqueue(name="spawner")
    plain.with_options(queue="limited").enqueue(name="limited")
    config = fast_config(queues=("default", "limited"), durable_transitions=durable)
    async with running_worker(app, config):
        await eventually(lambda: job_states(conn).get("completed") == 6)


@pytest.mark.usefixtures("seen")
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "relaxed"])
async def test_the_worker_relaxes_only_its_own_transitions_when_told(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], durable: bool
) -> None:
    await _run_jobs(app, conn, durable)
    own = "on" if durable else "off"
    settings = _settings(conn)
    expected = {
        # enqueues (the test's and a handler's) keep the app's durable_enqueue
        **{f"job insert available {n}": {"on"} for n in ("plain", "flaky", "slow", "spawner")},
        "job insert available limited": {"on"},
        "job insert available spawned": {"on"},
        # claims (plain and limited queues) and lease renewals
        **{f"job update running {n}": {own} for n in ("plain", "flaky", "slow", "spawner")},
        "job update running limited": {own},
        "job update running spawned": {own},
        # a failed attempt, then the maintenance leader's promotion (its own statement)
        "job update retryable flaky": {own},
        "job update available flaky": {"on"},
        # completions
        **{
            f"job_done insert completed {n}": {own}
            for n in ("plain", "flaky", "slow", "spawner", "limited", "spawned")
        },
    }
    assert settings == expected


def test_the_environment_variable_is_a_yes_or_a_no(monkeypatch: pytest.MonkeyPatch) -> None:
    # what `conveyor worker` does without --durable-transitions / --relaxed-transitions
    def unset() -> bool:
        return WorkerConfig.from_options(durable_transitions=None).durable_transitions

    monkeypatch.delenv("CONVEYOR_RELAXED_TRANSITIONS", raising=False)
    assert unset() is True
    assert WorkerConfig().durable_transitions is True
    monkeypatch.setenv("CONVEYOR_RELAXED_TRANSITIONS", "1")
    assert unset() is False
    assert WorkerConfig.from_options(durable_transitions=True).durable_transitions is True
    monkeypatch.setenv("CONVEYOR_RELAXED_TRANSITIONS", "maybe")
    with pytest.raises(ConfigError, match="CONVEYOR_RELAXED_TRANSITIONS='maybe' is not a yes"):
        unset()


def test_a_bad_setting_stops_conveyor_worker_with_the_fix(db: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "tests.acceptance.bouncer_app:app"],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_DATABASE_URL": db, "CONVEYOR_RELAXED_TRANSITIONS": "maybe"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CONVEYOR_RELAXED_TRANSITIONS='maybe' is not a yes or no; set it to 1" in done.stderr
