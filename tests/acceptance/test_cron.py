"""Cron with real `conveyor worker` processes: four workers race for every time of a one-minute
schedule over ten simulated minutes (60x faster than real time) and exactly ten jobs result;
`conveyor cron list` shows each schedule's last and next run."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from conveyor.cli import cli
from tests.acceptance import cron_app
from tests.acceptance.conftest import WorkerProcess, scalar, wait_for_workers
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

APP = "tests.acceptance.cron_app:app"
SCHEDULE = "acceptance.every_minute"
WORKERS = 4
SPEED = 60

Run = Callable[..., Result]


@pytest.fixture
def run(db: str) -> Iterator[Run]:
    """Run `conveyor ARGS...` in this process against the test database."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), env={"CONVEYOR_DATABASE_URL": db})

    yield run
    cron_app.app.close()


def _start_of_next_minute() -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)


def _completed_results(db: str) -> list[str]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT result FROM conveyor.jobs WHERE state = 'completed' ORDER BY result"
        ).fetchall()
    return [row[0] for row in rows]


def test_four_workers_and_a_one_minute_schedule_over_ten_simulated_minutes_give_ten_jobs(
    db: str, tmp_path: Path, run: Run
) -> None:
    start = _start_of_next_minute()
    end = start + timedelta(minutes=10) - timedelta(microseconds=1)
    go = tmp_path / "go"
    env = {
        "CRON_SIM_START": start.isoformat(),
        "CRON_SIM_END": end.isoformat(),
        "CRON_SIM_GO": str(go),
        "CRON_SIM_SPEED": str(SPEED),
    }
    # A lease longer than the simulated run, so the rescuer (on the same fast clock) leaves
    # running jobs alone; a short cron interval, so every simulated minute is seen on time.
    args = ("--lease", "900", "--cron-interval", "0.1", "--concurrency", "2")
    workers = [
        WorkerProcess(db, args, tmp_path / f"cron-worker-{n}.log", app=APP, env=env)
        for n in range(WORKERS)
    ]
    try:
        wait_for_workers(db, WORKERS, timeout=30)
        (tmp_path / "go.tmp").write_text(repr(time.time()))
        os.replace(tmp_path / "go.tmp", go)  # simulated time starts flowing for everyone
        wait_until(lambda: len(_completed_results(db)) >= 10, timeout=10 * 60 / SPEED + 20)
        for worker in workers:
            worker.send(signal.SIGTERM)
        assert [worker.wait(timeout=30) for worker in workers] == [0] * WORKERS
    finally:
        for worker in workers:
            if worker.alive():
                worker.kill_all()
            print(f"--- cron worker {worker.pid}:\n{worker.log()}")

    expected = [(start + timedelta(minutes=m)).isoformat() for m in range(10)]
    assert scalar(db, "SELECT count(*) FROM conveyor.jobs") == 10
    assert scalar(db, "SELECT count(*) FROM conveyor.cron_slot") == 10
    assert _completed_results(db) == expected, "one job per simulated minute, each for its slot"

    listed = run("--app", APP, "cron", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (schedule,) = json.loads(listed.stdout)
    assert schedule["name"] == SCHEDULE
    assert schedule["last_slot"] == expected[-1]
    assert schedule["last_job_state"] == "completed"
    assert schedule["next_slot"] == (start + timedelta(minutes=10)).isoformat()
    assert (schedule["registered"], schedule["overdue"]) == (True, False)

    table = run("cron", "list")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["schedule", "task", "cron", "catch-up", "last", "run", "next", "run"]
    assert row.startswith(f"{SCHEDULE}  acceptance.tick  * * * * * UTC  skip")
    assert f"{start + timedelta(minutes=9):%Y-%m-%d %H:%M} UTC (job " in row
    assert row.endswith(f", completed)  {start + timedelta(minutes=10):%Y-%m-%d %H:%M} UTC")


def test_cron_list_says_when_there_are_no_schedules(run: Run) -> None:
    listed = run("cron", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.startswith("(no cron schedules")


def test_cron_list_with_app_shows_schedules_no_worker_has_started(run: Run) -> None:
    listed = run("--app", APP, "cron", "list")
    assert listed.exit_code == 0, listed.output
    row = listed.stdout.splitlines()[1]
    assert row.startswith(SCHEDULE)
    assert "never" in row
    assert row.endswith("UTC (no worker has started it yet)")


def test_cron_list_marks_a_schedule_no_worker_runs_as_overdue(run: Run, db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor.cron_schedule (name, task, cron, timezone, catch_up, next_slot)"
            " VALUES ('reports.nightly', 'reports.build', '30 2 * * *', 'Europe/Berlin', 'once',"
            " '2026-03-29 01:00+00')"
        )
    listed = run("cron", "list")
    assert listed.exit_code == 0, listed.output
    row = listed.stdout.splitlines()[1]
    assert "30 2 * * * Europe/Berlin  once" in row
    assert row.endswith("2026-03-29 03:00 CEST (overdue: no worker running it)")
    (schedule,) = json.loads(run("cron", "list", "--json").stdout)
    assert schedule["overdue"] is True
    assert schedule["next_slot"] == "2026-03-29T01:00:00+00:00"
