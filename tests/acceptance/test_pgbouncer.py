"""Real `conveyor worker` processes through a real PgBouncer in transaction mode, as a user runs
them behind the pooler they already have.

Before PgBouncer mode, two workers on 2,002 jobs enqueued with SQL failed claims with "bind
message supplies 8 parameters, but prepared statement "_pg3_2" requires 5", maintenance loops
with "prepared statement "_pg3_6" does not exist", and jobs ended failed or stuck.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import ROOT, WorkerProcess
from tests.helpers import wait_until
from tests.pgbouncer import Bouncer, pgbouncer

pytestmark = pytest.mark.slow

APP = "tests.acceptance.bouncer_app:app"
JOBS = 2002


@pytest.fixture
def bouncer(db: str) -> Iterator[Bouncer]:
    with pgbouncer(db) as running:
        yield running


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill_all()
        print(f"--- worker {worker.pid} {' '.join(worker.args)}:\n{worker.log()}")


def _states(db: str) -> dict[str, int]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT state, count(*) FROM conveyor.jobs GROUP BY state")
        return {state: count for state, count in rows}


def test_two_workers_drain_2002_sql_enqueued_jobs_through_pgbouncer(
    db: str, bouncer: Bouncer, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    with psycopg.connect(bouncer.url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(
            "SELECT count(conveyor.enqueue('touch', jsonb_build_object('n', n)))"
            " FROM generate_series(1, %s) AS n",
            (JOBS,),
        )
    env = {"CONVEYOR_PGBOUNCER": "1"}
    for n in range(2):
        workers.append(WorkerProcess(bouncer.url, (), tmp_path / f"w{n}.log", app=APP, env=env))
    try:
        wait_until(lambda: _states(db) == {"completed": JOBS}, timeout=90)
    except AssertionError:
        raise AssertionError(f"jobs by state after 90 s: {_states(db)}") from None
    logs = "".join(w.log() for w in workers)
    assert "prepared statement" not in logs
    assert logs.count("pickup: polling every 0.2s (PgBouncer transaction mode") == 2
    with psycopg.connect(db, autocommit=True) as conn:
        ran_in = conn.execute("SELECT count(DISTINCT worker_id) FROM conveyor.jobs").fetchone()
        assert ran_in == (2,), "both workers claimed"
        assert conn.execute("SELECT count(*) FROM conveyor.leader").fetchone() == (1,)


def test_with_a_listen_url_the_worker_listens_around_the_pooler(
    db: str, bouncer: Bouncer, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    args = ("--pgbouncer", "--listen-url", db)
    worker = WorkerProcess(bouncer.url, args, tmp_path / "w.log", app=APP)
    workers.append(worker)
    wait_until(lambda: "started: queues=default" in worker.log())
    assert "pickup: LISTEN on the direct listen URL (PgBouncer transaction mode" in worker.log()
    with psycopg.connect(db, autocommit=True) as conn:
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'conveyor-listener'"
                " AND query LIKE 'LISTEN%%'"
            ).fetchone()
        )
    with psycopg.connect(bouncer.url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SELECT conveyor.enqueue('touch', '{\"n\": 1}')")
    wait_until(lambda: _states(db) == {"completed": 1}, timeout=30)


def test_a_bad_pgbouncer_setting_is_refused_with_the_fix(db: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", APP],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_DATABASE_URL": db, "CONVEYOR_PGBOUNCER": "maybe"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CONVEYOR_PGBOUNCER='maybe' is not a yes or no; set it to 1" in done.stderr


def test_a_worker_not_told_of_pgbouncer_names_the_fix(
    db: str, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    # two server connections for the worker's four: statements prepared on one are soon
    # bound on the other
    with pgbouncer(db, pool_size=2) as small:
        worker = WorkerProcess(small.url, (), tmp_path / "w.log", app=APP)
        workers.append(worker)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "SELECT count(conveyor.enqueue('touch', jsonb_build_object('n', n)))"
                " FROM generate_series(1, 500) AS n"
            )
        wait_until(lambda: "set CONVEYOR_PGBOUNCER=1" in worker.log(), timeout=60)
    assert worker.log().count("looks like it goes through PgBouncer in transaction mode") == 1
