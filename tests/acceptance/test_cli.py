"""The `conveyor` command: migrate, enqueue, status, jobs list/show, retry and cancel, on the
test database with real worker processes making the jobs' history."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

import conveyor
from conveyor.cli import cli
from tests.acceptance.conftest import StartWorker, job_state, scalar, wait_for_state
from tests.acceptance.shop_app import fail, record
from tests.conftest import _with_dbname

pytestmark = pytest.mark.slow

Run = Callable[..., Result]


@pytest.fixture
def run(db: str) -> Run:
    """Run `conveyor ARGS...` in this process against the test database."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), env={"CONVEYOR_DATABASE_URL": db})

    return run


@pytest.fixture
def fresh_database(admin_url: str, database_url: str) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards."""
    name = f"conveyor_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(database_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _enqueued_id(result: Result) -> int:
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip())


def test_migrate_applies_the_schema_once_then_says_it_is_up_to_date(
    run: Run, fresh_database: str
) -> None:
    first = run("--database-url", fresh_database, "migrate")
    assert first.exit_code == 0, first.output
    assert "applied 0001_initial" in first.stdout
    again = run("--database-url", fresh_database, "migrate")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "schema is up to date"


def test_enqueue_prints_the_id_of_the_new_job(run: Run, shop: conveyor.Conveyor) -> None:
    job_id = _enqueued_id(run("enqueue", "record", "--args", '{"n": 7}'))
    job = shop.client().get_job(job_id)
    assert (job.task, job.state, job.args) == ("record", "available", {"n": 7})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{n: 7}", "--args is not valid JSON"),
        ("[7]", "--args must be a JSON object of keyword arguments"),
        ('"seven"', "got str"),
    ],
)
def test_enqueue_refuses_args_that_are_not_a_json_object(
    run: Run, db: str, args: str, message: str
) -> None:
    result = run("enqueue", "record", "--args", args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert scalar(db, "SELECT count(*) FROM conveyor.jobs") == 0


def test_status_counts_jobs_per_queue_and_state_and_warns_of_tasks_no_live_worker_knows(
    run: Run, shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    worker = start_worker()
    wait_for_state(db, record.enqueue(n=1), "completed")
    wait_for_state(db, fail.enqueue(message="card declined"), "failed")
    _enqueued_id(run("enqueue", "ghost.task"))  # no worker has this task
    _enqueued_id(run("enqueue", "record", "--args", '{"n": 2}', "--queue", "other"))

    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    counts = {q["queue"]: {s: n for s, n in q["counts"].items() if n} for q in status["queues"]}
    assert counts == {
        "default": {"available": 1, "completed": 1, "failed": 1},
        "other": {"available": 1},
    }
    assert all(q["oldest_available_seconds"] >= 0 for q in status["queues"])
    assert status["orphaned_tasks"] == [
        {"queue": "default", "task": "ghost.task", "count": 1},
        {"queue": "other", "task": "record", "count": 1},
    ]
    assert [w["pid"] for w in status["live_workers"]] == [worker.pid]

    text = run("status")
    assert text.exit_code == 0, text.output
    assert "live workers: 1" in text.stdout
    assert "warning: 1 job(s) of task 'ghost.task' in queue 'default'" in text.stdout


def test_failed_jobs_are_listed_shown_retried_and_cancelled(
    run: Run, shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    worker = start_worker()
    declined = [fail.enqueue(message=f"card {n} declined") for n in range(2)]
    misfit = _enqueued_id(
        run("enqueue", "record", "--args", "{}", "--correlation-id", "req-cli-1")
    )  # misses its argument n
    for job_id in [*declined, misfit]:
        wait_for_state(db, job_id, "failed")
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0

    listed = run("jobs", "list", "--state", "failed")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "state", "queue", "attempt", "task"]
    assert [int(line.split()[0]) for line in rows] == sorted([*declined, misfit], reverse=True)
    shown = run("jobs", "show", str(declined[0]))
    assert shown.exit_code == 0, shown.output
    assert f"job {declined[0]}: fail [failed]" in shown.stdout
    assert "ValueError: card 0 declined" in shown.stdout
    assert "Traceback (most recent call last)" in shown.stdout
    assert "correlation id req-cli-1" in run("jobs", "show", str(misfit)).stdout
    missing = run("jobs", "show", "999999")
    assert missing.exit_code == 1
    assert "no job with id 999999" in missing.stderr

    by_task = run("retry", "--all-failed", "--task", "fail")
    assert by_task.stdout.strip() == f"retried 2 job(s): {declined[0]}, {declined[1]}"
    assert [job_state(db, job_id) for job_id in declined] == ["available", "available"]
    assert job_state(db, misfit) == "failed"  # another task's failure stays put
    retried = shop.client().get_job(declined[0])
    # a fresh round of attempts; the history stays
    assert (retried.attempt, retried.max_attempts, len(retried.errors)) == (1, 2, 1)
    one = run("retry", str(misfit))
    assert one.stdout.strip() == f"retried 1 job(s): {misfit}"
    assert job_state(db, misfit) == "available"
    assert run("retry").exit_code == 2

    cancelled = run("cancel", str(misfit))
    assert cancelled.stdout.strip() == f"cancelled 1 job(s): {misfit}"
    assert job_state(db, misfit) == "cancelled"
    assert run("retry", str(misfit)).stdout.strip() == f"retried 1 job(s): {misfit}"
    assert job_state(db, misfit) == "available"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:app", "cannot import 'no_such_module'"),
        ("tests.acceptance.shop_app:nothing", "is not a conveyor.Conveyor app"),
        ("tests.acceptance.shop_app", "expected MODULE:APP"),
    ],
)
def test_worker_with_an_unknown_app_says_what_is_wrong(run: Run, target: str, message: str) -> None:
    result = run("worker", target)
    assert result.exit_code == 2
    assert message in result.stderr
