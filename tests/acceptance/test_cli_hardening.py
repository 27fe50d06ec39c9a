"""Bad input and bad rows: each gives one line that names the problem (and the fix), never a
traceback. The commands run in this process against the test database."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

import conveyor
from conveyor.cli import cli
from conveyor.migrate import Migrator, latest_version
from tests.acceptance.conftest import ROOT, StartWorker
from tests.conftest import _with_dbname
from tests.dashboard.conftest import insert_finished
from tests.helpers import wait_until
from tests.unreadable_rows import insert_unreadable_jobs

Run = Callable[..., Result]
#: More than any bigint: no job can have this id.
HUGE = "99999999999999999999"


@pytest.fixture
def run(db: str) -> Run:
    """Run `conveyor ARGS...` against the test database."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, list(args), env={"CONVEYOR_DATABASE_URL": db, **(env or {})})

    return run


def _ok(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    return result.stdout


def test_jobs_list_shows_rows_python_cannot_load_marked_with_why(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_unreadable_jobs(conn)
    lines = {int(line.split()[0]): line for line in _ok(run("jobs", "list")).splitlines()[1:]}
    assert set(lines) == set(ids.values())
    assert "unreadable" not in lines[ids["ordinary"]]
    assert "run_at out of range (infinity)" in lines[ids["infinite_run_at"]]
    assert "run_at out of range (-infinity)" in lines[ids["minus_infinite_run_at"]]
    assert "args too deeply nested to display" in lines[ids["deep_args"]]
    assert "finished_at out of range (12000-01-01" in lines[ids["far_finished"]]

    listed = json.loads(_ok(run("jobs", "list", "--json")))
    unreadable = {job["id"]: job["unreadable"] for job in listed}
    assert unreadable[ids["ordinary"]] == {}
    assert unreadable[ids["deep_args"]] == {"args": "args too deeply nested to display"}
    assert unreadable[ids["infinite_run_at"]] == {"run_at": "run_at out of range (infinity)"}


def test_jobs_show_prints_a_row_python_cannot_load_with_why(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_unreadable_jobs(conn)
    never = _ok(run("jobs", "show", str(ids["infinite_run_at"])))
    assert f"job {ids['infinite_run_at']}: t.never [scheduled]" in never
    assert "run at infinity (out of range)" in never
    deep = _ok(run("jobs", "show", str(ids["deep_args"])))
    assert "args (too deeply nested to display)" in deep
    far = _ok(run("jobs", "show", str(ids["far_finished"])))
    assert "finished 12000-01-01" in far
    for job_id in ids.values():
        shown = json.loads(_ok(run("jobs", "show", str(job_id), "--json")))
        assert shown["id"] == job_id


def test_status_survives_jobs_with_infinite_times(run: Run, conn: psycopg.Connection[Any]) -> None:
    insert_unreadable_jobs(conn)
    status = json.loads(_ok(run("status", "--json")))
    (default,) = status["queues"]
    assert default["counts"]["available"] == 3
    assert default["counts"]["scheduled"] == 1
    assert "default" in _ok(run("status"))


def _refused(result: Result) -> list[str]:
    """The lines of a refusal: status 1, no traceback, nothing on stdout."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return result.stderr.splitlines()


def test_retry_and_cancel_say_for_each_id_why_nothing_happened(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    completed = insert_finished(conn, state="completed")
    assert _refused(run("retry", "999")) == [
        "job 999: not retried, there is no such job (it may have been pruned); `conveyor jobs"
        " list` shows the jobs there are"
    ]
    assert _refused(run("retry", str(completed))) == [
        f"job {completed}: not retried, it is completed; only failed or cancelled jobs can be"
        " retried"
    ]
    assert _refused(run("cancel", "12345")) == [
        "job 12345: not cancelled, there is no such job (it may have been pruned); `conveyor"
        " jobs list` shows the jobs there are"
    ]
    assert _refused(run("cancel", str(completed))) == [
        f"job {completed}: not cancelled, it is completed; only unfinished jobs can be cancelled"
    ]


def test_retry_of_some_ids_retries_those_and_names_the_others(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    failed = insert_finished(conn, state="failed")
    result = run("retry", str(failed), "999")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"retried 1 job(s): {failed}\n"
    assert result.stderr.startswith("job 999: not retried, there is no such job")


@pytest.mark.parametrize("command", ["retry", "cancel"])
def test_an_id_beyond_any_job_is_not_found(run: Run, command: str) -> None:
    (line,) = _refused(run(command, HUGE))
    assert line.startswith(f"job {HUGE}: not ")
    assert "there is no such job" in line
    shown = run("jobs", "show", HUGE)
    assert shown.exit_code == 1
    assert shown.stderr == f"Error: no job with id {HUGE} (it may have been pruned)\n"
    assert _ok(run("jobs", "list", "--before-id", HUGE)) == "no jobs match\n"


def test_jobs_list_has_a_header_and_says_when_no_job_matches(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    assert _ok(run("jobs", "list")) == "no jobs match\n"
    job_id = insert_finished(conn, task="shop.send_receipt", state="failed", attempts=2)
    header, row = _ok(run("jobs", "list")).splitlines()
    assert header.split() == ["id", "state", "queue", "attempt", "task"]
    assert row.split() == [str(job_id), "failed", "default", "2/2", "shop.send_receipt"]
    assert _ok(run("jobs", "list", "--state", "completed")) == "no jobs match\n"


@pytest.fixture
def empty_database(admin_url: str) -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards."""
    name = f"conveyor_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_on_a_database_of_a_newer_conveyor_says_to_upgrade(
    run: Run, empty_database: str
) -> None:
    Migrator(empty_database).migrate()
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("INSERT INTO conveyor.schema_version (version, name) VALUES (999, 'future')")
    result = run("--database-url", empty_database, "migrate")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "Error: the database was migrated by a newer Conveyor: its schema is at version 999,"
        f" newer than this Conveyor knows (up to {latest_version()}); upgrade the conveyor"
        " package on this host to use it\n"
    )


APP = "tests.acceptance.shop_app:app"


def test_enqueue_with_an_app_refuses_a_task_it_does_not_have(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    result = run("--app", APP, "enqueue", "tenant_wrok", "--args", '{"tenant": "a"}')
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        "Error: no task named 'tenant_wrok' is registered; did you mean 'tenant_work'?"
    )
    assert len(result.stderr.splitlines()) == 1
    assert conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone() == (0,)


def test_enqueue_with_an_app_uses_the_tasks_queue_and_checks_its_arguments(
    run: Run, conn: psycopg.Connection[Any]
) -> None:
    args = '{"tenant": "a", "seconds": 0}'
    job_id = int(_ok(run("--app", APP, "enqueue", "tenant_work", "--args", args)))
    row = conn.execute("SELECT queue FROM conveyor.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row == ("tenants",)  # the task's queue, as task.enqueue() would use
    other = int(_ok(run("--app", APP, "enqueue", "tenant_work", "--args", args, "--queue", "x")))
    row = conn.execute("SELECT queue FROM conveyor.jobs WHERE id = %s", (other,)).fetchone()
    assert row == ("x",)
    missing = run("--app", APP, "enqueue", "tenant_work", "--args", '{"tenant": "a"}')
    assert missing.exit_code == 1, missing.output
    assert "seconds" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1


def test_an_unknown_log_level_is_refused_with_the_levels(run: Run) -> None:
    result = run("--log-level", "FOO", "status")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "invalid value for '--log-level': 'foo' is not one of 'debug'," in result.stderr.lower()
    assert run("--log-level", "debug", "jobs", "list").exit_code == 0


def _commands(
    group: click.Group = cli, path: str = "conveyor"
) -> Iterator[tuple[str, click.Command]]:
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in _commands()
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []


def test_help_names_only_options_the_command_takes() -> None:
    # a global option is named with the command that takes it: `conveyor --app ...`
    wrong = [
        f"{path}: {option}"
        for path, command in _commands()
        for before, option in re.findall(r"(conveyor )?(--[a-z][a-z-]*)", command.help or "")
        if not before and option not in {o for p in command.params for o in p.opts}
    ]
    assert wrong == []


@pytest.mark.slow
def test_the_embedded_default_says_one_line_about_itself_and_nothing_more() -> None:
    # Not pytest's tmp_path: pgserver runs initdb as its own user, which must reach the
    # directory, and a pytest session starting beside this one resets /tmp/pytest-of-<user> to
    # 0700 (initdb lost its directory mid-way once, with several suites on one machine).
    with tempfile.TemporaryDirectory(prefix="conveyor-embedded-") as where:
        _check_embedded_default_in(Path(where))


def _check_embedded_default_in(tmp_path: Path) -> None:
    hidden = ("CONVEYOR_DATABASE_URL", "XDG_RUNTIME_DIR")  # XDG: platformdirs would warn
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "jobs", "list"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no jobs match\n"
    assert done.stderr.splitlines() == [
        "conveyor: no CONVEYOR_DATABASE_URL set; using the embedded Postgres in"
        f" {tmp_path.resolve() / '.conveyor' / 'pgdata'} (set CONVEYOR_DATABASE_URL to use your"
        " own)"
    ]


@pytest.mark.slow
def test_a_worker_warns_of_its_tasks_jobs_waiting_in_a_queue_it_does_not_serve(
    shop: conveyor.Conveyor, conn: psycopg.Connection[Any], start_worker: StartWorker
) -> None:
    # the SQL function cannot know the task's queue: without queue => the job waits in default
    conn.execute("SELECT conveyor.enqueue('record', %s::jsonb)", ('{"n": 1}',))
    args = '{"tenant": "a", "seconds": 0}'
    conn.execute("SELECT conveyor.enqueue('tenant_work', %s::jsonb, queue => 'tenants')", (args,))
    worker = start_worker("--queues", "tenants")
    wait_until(lambda: "started" in worker.log())
    assert (
        "1 job(s) of task 'record' wait in queue 'default', which this worker does not serve"
        " (--queues tenants): a worker for that queue runs them"
    ) in worker.log()
    assert "task 'tenant_work' wait" not in worker.log()  # its queue is served


@pytest.mark.slow
def test_the_demos_closing_hint_runs_as_printed(db: str) -> None:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": db}
    demo = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--orders", "10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    hint = re.search(r"\(([^()]*? jobs show (\d+)); ", " ".join(demo.stdout.split()))
    assert hint, demo.stdout
    shown = subprocess.run(
        shlex.split(hint.group(1)),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"job {hint.group(2)}: demo.send_receipt [failed]" in shown.stdout
