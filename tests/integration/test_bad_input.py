"""Bad input, fuzzed: the SQL function and the CLI take any text and any JSON, and either
store it exactly or refuse it with a clear error, writing nothing; and enqueue with the
database down raises DatabaseUnavailableError with nothing written."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conveyor
from conveyor.cli import cli
from tests.helpers import eventually, fast_config, job_states, running_worker

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Text Postgres can hold: no NUL, no lone surrogates.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone()
    return int(row[0]) if row else 0


@FUZZ
@given(task=TEXT, args=JSON, queue=st.none() | TEXT)
def test_sql_function_stores_any_input_exactly_or_refuses_it_cleanly(
    conn: psycopg.Connection[Any], task: str, args: Any, queue: str | None
) -> None:
    before = _count(conn)
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT conveyor.enqueue(%s, %s::jsonb, %s)", (task, json.dumps(args), queue)
            ).fetchone()
    except psycopg.errors.InvalidParameterValue as exc:  # args that are not an object
        assert not isinstance(args, dict)
        assert "args must be a JSON object" in str(exc)
        assert _count(conn) == before
        return
    except psycopg.errors.CheckViolation:  # empty or over-long task or queue names
        assert task == "" or len(task) > 200 or queue == "" or len(queue or "") > 100
        assert _count(conn) == before
        return
    assert isinstance(args, dict)
    assert row is not None
    stored = conn.execute(
        "SELECT task, queue, args FROM conveyor.jobs WHERE id = %s", (row[0],)
    ).fetchone()
    assert stored == (task, queue or "default", args)


@FUZZ
@given(task=TEXT.filter(lambda t: not t.startswith("-")), raw=TEXT)
def test_cli_enqueue_never_crashes_on_any_args_text(db: str, task: str, raw: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        before = _count(conn)
        result = CliRunner().invoke(
            cli, ["enqueue", task, "--args", raw], env={"CONVEYOR_DATABASE_URL": db}
        )
        after = _count(conn)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert after == before + 1
        assert isinstance(json.loads(raw), dict)
    else:
        assert after == before
        assert result.output.strip(), "a refusal says why"


@FUZZ
@given(argv=st.lists(st.sampled_from(["jobs", "list", "show", "retry", "cancel", "queue", "set",
                                       "status", "--json", "--limit", "0", "-1", "x", "--state",
                                       "bogus", "--all-failed", "99999999999999999999", "--"]),
                     max_size=5))  # fmt: skip
def test_cli_argument_parsing_never_crashes(db: str, argv: list[str]) -> None:
    result = CliRunner().invoke(cli, argv, env={"CONVEYOR_DATABASE_URL": db})
    assert result.exit_code in (0, 1, 2), (argv, result.output, result.exception)
    assert "Traceback" not in result.output


def test_enqueue_with_the_database_down_raises_and_writes_nothing(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="t")
    def t() -> None:
        return None

    down = conveyor.Conveyor("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    with pytest.raises(conveyor.DatabaseUnavailableError, match="database"):
        down.enqueue_many([t.spec()])
    down.close()
    assert _count(conn) == 0


@pytest.mark.parametrize("raw", ['{"a":', "{'a': 1}", "", "{]"])
def test_malformed_json_through_the_sql_function_is_refused_by_postgres(
    conn: psycopg.Connection[Any], raw: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="invalid input syntax"):
        conn.execute("SELECT conveyor.enqueue('t', %s::jsonb)", (raw,))
    conn.rollback()
    assert _count(conn) == 0


async def test_leases_and_run_times_come_from_the_database_clock(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    """Hosts with skewed clocks agree: the production clock gives no time of its own, and the
    lease a worker takes is measured from the database's now()."""
    assert conveyor.SystemClock().now() is None
    release = threading.Event()

    @app.task(name="held")
    def held() -> None:
        release.wait(10)

    before = conn.execute("SELECT now()").fetchone()
    held.enqueue()
    async with running_worker(app, fast_config(lease_seconds=30)):
        await eventually(lambda: job_states(conn) == {"running": 1})
        row = conn.execute(
            "SELECT created_at, attempted_at, lease_expires_at - attempted_at FROM conveyor.job"
        ).fetchone()
        after = conn.execute("SELECT clock_timestamp()").fetchone()
        release.set()
    assert row is not None and before is not None and after is not None
    assert before[0] <= row[0] <= row[1] <= after[0]
    assert row[2].total_seconds() == 30
