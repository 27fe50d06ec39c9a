"""One bad job never hurts the others: whatever a job contains or does, every other job still
runs and is recorded, the worker keeps running, and the bad job ends failed with an error that
says what was wrong (issue 11's hostile inputs, one test each)."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from typing import Any

import psycopg
import pytest
from prometheus_client import generate_latest

import conveyor
from conveyor import JobContext
from tests.helpers import eventually, fast_config, job_states, running_worker


def _state_and_errors(conn: psycopg.Connection[Any], job_id: int) -> tuple[str, list[Any]]:
    row = conn.execute(
        "SELECT state, errors FROM conveyor.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1] or []


def _register_ordinary(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="ordinary", max_attempts=1)
    def ordinary(n: int) -> int:
        return n

    return ordinary


def _assert_alive(worker: conveyor.Worker) -> None:
    assert not worker.broken, "a worker loop died"


async def test_an_idempotency_key_too_long_for_its_index_fails_only_its_job(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    ordinary = _register_ordinary(app)

    @app.task(name="huge_key", max_attempts=1)
    def huge_key(ctx: JobContext) -> str:
        return str(ctx.once(secrets.token_hex(4000), lambda: "sent"))

    bad = huge_key.enqueue()
    good = [ordinary.enqueue(n=n) for n in range(7)]
    async with running_worker(app, fast_config(concurrency=4, lease_seconds=5)) as worker:
        await eventually(lambda: job_states(conn) == {"completed": 7, "failed": 1}, timeout=30)
        _assert_alive(worker)
        assert worker.running_count == 0
    state, errors = _state_and_errors(conn, bad)
    assert state == "failed"
    assert "idempotency key" in errors[-1]["message"]
    assert "8,000" in errors[-1]["message"] or "8000" in errors[-1]["message"]
    assert all(_state_and_errors(conn, g)[0] == "completed" for g in good)


async def test_an_exception_whose_str_raises_is_recorded_and_frees_its_slot(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    ordinary = _register_ordinary(app)

    class Evil(Exception):  # noqa: N818
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

    @app.task(name="evil", max_attempts=1)
    def evil() -> None:
        raise Evil

    @app.task(name="aevil", max_attempts=1)
    async def aevil() -> None:
        raise Evil

    bad = [evil.enqueue(), aevil.enqueue()]
    for n in range(4):
        ordinary.enqueue(n=n)
    async with running_worker(app, fast_config(concurrency=2)) as worker:
        await eventually(lambda: job_states(conn) == {"completed": 4, "failed": 2}, timeout=30)
        _assert_alive(worker)
        assert worker.running_count == 0
    for job_id in bad:
        state, errors = _state_and_errors(conn, job_id)
        assert state == "failed"
        assert errors[-1]["type"].endswith("Evil")
        assert "str() raised RuntimeError" in errors[-1]["message"]


def _insert_raw(conn: psycopg.Connection[Any], args: str, run_at: str = "now") -> int:
    """A row as another language, an old version or a hand-written INSERT could leave it,
    bypassing every check of the enqueue paths."""
    row = conn.execute(
        "INSERT INTO conveyor.job (task, queue, args, state, run_at)"
        " VALUES ('ordinary', 'default', %s::jsonb, 'available', %s::timestamptz) RETURNING id",
        (args, run_at),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("args", "run_at", "why"),
    [
        ('{"n": 1}', "-infinity", "run_at"),
        ('{"n": 1}', "infinity", "run_at"),
        ('{"n": ' + "[" * 3000 + "1" + "]" * 3000 + "}", "now", "nested"),
        ('{"n": ' + "7" * 5000 + "}", "now", "digits"),
    ],
    ids=["minus-infinity", "infinity", "nested-3000", "int-5000-digits"],
)
async def test_a_row_that_cannot_be_decoded_fails_alone(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], args: str, run_at: str, why: str
) -> None:
    ordinary = _register_ordinary(app)
    good = [ordinary.enqueue(n=n) for n in range(3)]
    bad = _insert_raw(conn, args, run_at)
    async with running_worker(app, fast_config(batch_size=10)) as worker:
        await eventually(lambda: job_states(conn) == {"completed": 3, "failed": 1}, timeout=30)
        _assert_alive(worker)
    state, errors = _state_and_errors(conn, bad)
    assert state == "failed"
    assert errors[-1]["type"] == "UnreadableJob"
    assert why in errors[-1]["message"]
    assert all(_state_and_errors(conn, g)[0] == "completed" for g in good)


@pytest.mark.parametrize("kind", ["sync", "async", "async-timeout"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
async def test_a_base_exception_from_handler_code_fails_its_attempt_only(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], kind: str, exc: type[BaseException]
) -> None:
    ordinary = _register_ordinary(app)
    timeout = 30 if kind == "async-timeout" else None

    if kind == "sync":

        @app.task(name="interrupt", max_attempts=1)
        def interrupt() -> None:
            raise exc("from the handler")

    else:

        @app.task(name="interrupt", max_attempts=1, timeout=timeout)
        async def interrupt() -> None:
            raise exc("from the handler")

    release = threading.Event()

    @app.task(name="innocent", max_attempts=1)
    def innocent() -> str:
        release.wait(10)
        return "done"

    innocent_id = innocent.enqueue()
    bad = app.tasks["interrupt"].enqueue()
    ordinary.enqueue(n=1)
    async with running_worker(app, fast_config(concurrency=3)) as worker:
        await eventually(lambda: _state_and_errors(conn, bad)[0] == "failed", timeout=30)
        release.set()
        await eventually(lambda: job_states(conn) == {"completed": 2, "failed": 1}, timeout=30)
        _assert_alive(worker)
    assert _state_and_errors(conn, innocent_id)[0] == "completed"
    assert _state_and_errors(conn, bad)[1][-1]["type"] == exc.__name__


async def test_a_handler_that_raises_cancelled_error_itself_fails_its_attempt(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="cancels_itself", max_attempts=1)
    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    bad = cancels_itself.enqueue()
    async with running_worker(app) as worker:
        await eventually(lambda: _state_and_errors(conn, bad)[0] == "failed", timeout=30)
        _assert_alive(worker)
    assert _state_and_errors(conn, bad)[1][-1]["type"].endswith("CancelledError")


async def test_stuck_threads_count_against_capacity_and_no_queued_job_times_out(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    ordinary = _register_ordinary(app)
    release = threading.Event()

    @app.task(name="stuck", timeout=1, max_attempts=3, backoff=0.1)
    def stuck() -> str:
        release.wait(60)  # a blocking C call: the timeout cannot interrupt it
        return "unstuck"

    stuck_id = stuck.enqueue()
    config = fast_config(concurrency=2, lease_seconds=3)
    async with running_worker(app, config) as worker:
        # two attempts time out and leave their threads blocked: no capacity is left
        await eventually(lambda: len(_state_and_errors(conn, stuck_id)[1]) == 2, timeout=30)
        await eventually(lambda: worker.stuck_threads == 2, timeout=10)
        ids = [ordinary.enqueue(n=n) for n in range(3)]
        await asyncio.sleep(1.5)  # several polls: a worker with no free thread claims nothing
        states = conn.execute(
            "SELECT state, count(*) FROM conveyor.jobs WHERE id = ANY(%s) GROUP BY 1", (ids,)
        ).fetchall()
        assert states == [("available", 3)]
        assert _state_and_errors(conn, stuck_id)[0] == "available"
        assert "2 of 2 threads are stuck" in caplog.text
        metrics = generate_latest(worker.metrics.registry).decode()
        assert "conveyor_worker_stuck_threads 2.0" in metrics
        release.set()
        await eventually(lambda: job_states(conn) == {"completed": 4}, timeout=30)
        _assert_alive(worker)
        assert worker.stuck_threads == 0
    state, errors = _state_and_errors(conn, stuck_id)
    assert state == "completed"
    assert [e["type"].rsplit(".", 1)[-1] for e in errors] == ["JobTimeout"] * 2


async def test_the_heartbeat_registers_a_worker_whose_row_was_deleted(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    _register_ordinary(app)
    async with running_worker(app, fast_config(lease_seconds=1.5)) as worker:
        await eventually(lambda: conn.execute("SELECT count(*) FROM conveyor.worker").fetchone())
        conn.execute("DELETE FROM conveyor.worker")
        await eventually(
            lambda: conn.execute(
                "SELECT id FROM conveyor.worker WHERE id = %s", (worker.id,)
            ).fetchone(),
            timeout=10,
        )


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_enqueue_refuses_args_nested_too_deeply_naming_the_argument(
    app: conveyor.Conveyor,
) -> None:
    ordinary = _register_ordinary(app)
    with pytest.raises(conveyor.PayloadError, match=r"argument 'n' .*nested deeper than 100"):
        ordinary.enqueue(n=_nested(3000))
    ordinary.spec(n=_nested(99))  # within the limit


def test_enqueue_refuses_an_integer_too_long_for_json(app: conveyor.Conveyor) -> None:
    ordinary = _register_ordinary(app)
    with pytest.raises(conveyor.PayloadError, match=r"argument 'n' .*digits.*string"):
        ordinary.enqueue(n=7 * 10**5000)


@pytest.mark.parametrize("value", ["nested", "digits"])
async def test_a_result_json_cannot_hold_fails_at_once_without_retry(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], value: str
) -> None:
    @app.task(name="bad_result", max_attempts=3, backoff=0.05)
    def bad_result() -> Any:
        return _nested(3000) if value == "nested" else 7 * 10**5000

    job_id = bad_result.enqueue()
    async with running_worker(app):
        await eventually(lambda: _state_and_errors(conn, job_id)[0] == "failed", timeout=30)
    errors = _state_and_errors(conn, job_id)[1]
    assert len(errors) == 1, "a result that cannot be stored must not repeat side effects"
    assert errors[0]["type"] == "conveyor.errors.PayloadError"


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused(
    app: conveyor.Conveyor, timeout: float
) -> None:
    with pytest.raises(conveyor.ConfigError, match=r"timeout|duration"):

        @app.task(name="t", timeout=timeout)
        def t() -> None:
            return None

    ordinary = _register_ordinary(app)
    with pytest.raises(conveyor.ConfigError, match=r"timeout|duration"):
        ordinary.with_options(timeout=timeout)


@pytest.mark.parametrize(
    "options",
    [{"delay": 1e12}, {"delay": float("nan")}, {"delay": float("inf")}],
)
def test_a_run_time_past_year_9999_is_refused(
    app: conveyor.Conveyor, options: dict[str, Any]
) -> None:
    ordinary = _register_ordinary(app)
    with pytest.raises(conveyor.ConfigError, match=r"delay|duration|run_at"):
        ordinary.with_options(**options).enqueue(n=1)


@pytest.mark.parametrize("run_at", ["infinity", "-infinity", "10000-01-01", "20000-01-01 UTC"])
def test_the_sql_function_refuses_run_times_python_cannot_read(
    conn: psycopg.Connection[Any], run_at: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="run_at"):
        conn.execute("SELECT conveyor.enqueue('t', '{}', run_at => %s::timestamptz)", (run_at,))
    assert job_states(conn) == {}


def test_the_sql_function_refuses_args_nested_too_deeply(conn: psycopg.Connection[Any]) -> None:
    deep = '{"n": ' + "[" * 3000 + "1" + "]" * 3000 + "}"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="nested deeper than 100"):
        conn.execute("SELECT conveyor.enqueue('t', %s::jsonb)", (deep,))
    ok = json.dumps({"n": _nested(99)})
    conn.execute("SELECT conveyor.enqueue('t', %s::jsonb)", (ok,))
    assert job_states(conn) == {"available": 1}
