"""The `conveyor` command line, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import ROOT

pytestmark = pytest.mark.slow


def conveyor_cmd(
    db: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "CONVEYOR_DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_twice_says_up_to_date(db: str) -> None:
    result = conveyor_cmd(db, "migrate")
    assert result.returncode == 0
    assert "up to date" in result.stdout


def test_enqueue_prints_an_id_and_status_counts_it(db: str) -> None:
    result = conveyor_cmd(db, "enqueue", "mail.send", "--args", '{"to": "a@b.c"}')
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout.strip())
    status = json.loads(conveyor_cmd(db, "status", "--json").stdout)
    (queue,) = status["queues"]
    assert queue["queue"] == "default"
    assert queue["counts"]["available"] == 1
    assert queue["oldest_available_seconds"] >= 0
    assert status["orphaned_tasks"] == [{"queue": "default", "task": "mail.send", "count": 1}]
    human = conveyor_cmd(db, "status").stdout
    assert "no live has registered it" in human or "none live has registered it" in human
    shown = conveyor_cmd(db, "jobs", "show", str(job_id)).stdout
    assert "mail.send [available]" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{not json", "--args is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_enqueue_rejects_bad_args_clearly(db: str, args: str, message: str) -> None:
    result = conveyor_cmd(db, "enqueue", "mail.send", "--args", args)
    assert result.returncode != 0
    assert message in result.stderr


def test_failed_jobs_are_listed_shown_and_retried(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt,"
            " max_attempts, args, errors, created_at, run_at, finished_at)"
            " VALUES (9001, 'report', 'default', 'failed', 0, 2, 2, '{}',"
            ' \'[{"type": "ValueError", "message": "boom", "attempt": 2,'
            ' "traceback": "Traceback (most recent call last): ..."}]\', now(), now(), now())'
        )
    listed = conveyor_cmd(db, "jobs", "list", "--state", "failed")
    assert "9001" in listed.stdout and "report" in listed.stdout
    shown = conveyor_cmd(db, "jobs", "show", "9001").stdout
    assert "ValueError: boom" in shown and "Traceback" in shown
    retried = conveyor_cmd(db, "retry", "--all-failed", "--task", "report")
    assert "retried 1 job(s): 9001" in retried.stdout
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT state, max_attempts FROM conveyor.jobs WHERE id = 9001")
        assert row.fetchone() == ("available", 4)


def test_cancel_moves_a_waiting_job_to_cancelled(db: str) -> None:
    job_id = conveyor_cmd(db, "enqueue", "x").stdout.strip()
    assert f"cancelled 1 job(s): {job_id}" in conveyor_cmd(db, "cancel", job_id).stdout
    assert "[cancelled]" in conveyor_cmd(db, "jobs", "show", job_id).stdout
    retried = conveyor_cmd(db, "retry", job_id)
    assert f"retried 1 job(s): {job_id}" in retried.stdout


def test_unknown_app_and_job_give_clear_errors(db: str) -> None:
    result = conveyor_cmd(db, "worker", "no_such_module:app")
    assert result.returncode != 0 and "cannot import 'no_such_module'" in result.stderr
    result = conveyor_cmd(db, "worker", "nocolon")
    assert result.returncode != 0 and "expected MODULE:APP" in result.stderr
    result = conveyor_cmd(db, "jobs", "show", "424242")
    assert result.returncode != 0 and "no job with id 424242" in result.stderr


def test_demo_runs_to_completion_on_the_test_database(db: str) -> None:
    result = conveyor_cmd(db, "demo", "--orders", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done in" in result.stdout
    assert "1 failed for good" in result.stdout


def test_demo_runs_on_the_embedded_default_in_an_empty_folder(db: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--orders", "10"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "using the embedded Postgres" in result.stderr
    assert "done in" in result.stdout
