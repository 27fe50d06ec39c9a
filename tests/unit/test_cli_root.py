"""The root group is the one place where an error a command did not handle becomes one line and
exit status 1; any other error is left to click (and to the person reading the traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import psycopg
import pytest
from click.testing import CliRunner

from conveyor import database
from conveyor.cli.root import ConveyorGroup
from conveyor.errors import DatabaseUnavailableError, JobNotFoundError

LOST = 'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'


def _unavailable() -> DatabaseUnavailableError:
    """As the app's pool raises it: the connection error that says why is its cause."""
    error = DatabaseUnavailableError("cannot reach the database to enqueue; nothing was written")
    error.__cause__ = psycopg.OperationalError(LOST)
    return error


def _run(error: BaseException) -> tuple[int, str, BaseException | None]:
    @click.group(cls=ConveyorGroup)
    def root() -> None:
        pass

    @root.group()
    def nested() -> None:
        pass

    @nested.command()
    def fails() -> None:
        raise error

    result = CliRunner().invoke(root, ["nested", "fails"])
    return result.exit_code, result.output, result.exception


def test_a_conveyor_error_in_a_nested_command_is_one_line_and_status_1() -> None:
    code, output, _ = _run(JobNotFoundError("no job with id 9 (it may have been pruned)"))
    assert (code, output) == (1, "Error: no job with id 9 (it may have been pruned)\n")


def test_a_missing_table_says_to_migrate() -> None:
    code, output, _ = _run(
        psycopg.errors.UndefinedTable('relation "conveyor.job" does not exist\nLINE 1: ...')
    )
    assert code == 1
    assert output == (
        'Error: the database does not have this Conveyor\'s schema (relation "conveyor.job"'
        " does not exist); run `conveyor migrate`\n"
    )


@pytest.mark.parametrize("lost", [psycopg.OperationalError(LOST), _unavailable()])
def test_a_database_lost_mid_command_is_named_with_the_fix(lost: BaseException) -> None:
    code, output, _ = _run(lost)
    assert code == 1
    assert output.startswith("Error: cannot use the database: no Postgres server answers (")
    assert output.count("\n") == 1 and "start Postgres" in output


def test_a_usage_error_keeps_clicks_status_2() -> None:
    code, output, _ = _run(click.UsageError("give at least one limit to set"))
    assert code == 2 and "Error: give at least one limit to set" in output


def test_any_other_error_is_not_hidden() -> None:
    code, _, exception = _run(KeyError("a bug"))
    assert code == 1 and isinstance(exception, KeyError)


def test_describe_is_none_for_an_error_not_about_the_database() -> None:
    assert database.describe(ValueError("no")) is None
    assert database.describe(psycopg.errors.UniqueViolation("dup")) is None


def test_the_command_loads_no_worker_runtime_or_extra_until_a_command_needs_it() -> None:
    # Relative to `import conveyor`, so this holds whatever the package itself loads.
    program = (
        "import json, sys, conveyor; before = set(sys.modules); import conveyor.cli;"
        " print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    added = json.loads(done.stdout)
    heavy = ("conveyor.worker", "conveyor.maintenance", "conveyor.demo", "prometheus_client")
    extras = ("rich", "uvicorn", "starlette", "conveyor.dashboard")
    assert [m for m in added if m.startswith(heavy + extras)] == []
