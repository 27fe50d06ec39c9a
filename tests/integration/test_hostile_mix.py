"""The rule, as a property: a worker over any mix of hostile and ordinary jobs runs every
ordinary job exactly once, ends every hostile job in a final state with an error that says
what was wrong, and keeps running."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conveyor
from conveyor import JobContext
from tests.helpers import clean_tables, eventually, fast_config, running_worker

#: Every hostile kind: how to enqueue it is in _enqueue_hostile.
HOSTILE = [
    "huge_idempotency_key",
    "str_raises",
    "run_at_minus_infinity",
    "run_at_year_20000",
    "args_nested_3000",
    "int_5000_digits",
    "nan_timeout",
    "args_not_in_signature",
    "keyboard_interrupt",
    "system_exit_async_with_timeout",
    "generator_exit",
    "own_cancelled_error",
    "stuck_thread",
    "result_not_json",
    "result_nested_3000",
    "result_with_nul",
    "huge_error_message",
    "retry_after_nan",
]
KINDS = st.lists(st.sampled_from([*HOSTILE, "ordinary", "ordinary", "ordinary"]), max_size=24)


class Evil(Exception):  # noqa: N818
    def __str__(self) -> str:
        raise RuntimeError("no str")


def _register(app: conveyor.Conveyor, runs: Counter[int], unblock: threading.Event) -> None:
    fast = conveyor.RetryPolicy(base=0.05, jitter=0)

    @app.task(name="ordinary", max_attempts=1)
    def ordinary(n: int) -> int:
        runs[n] += 1
        return n

    @app.task(name="hostile_sync", max_attempts=2, backoff=fast, timeout=0.5)
    def hostile_sync(kind: str, ctx: JobContext) -> Any:
        if kind == "huge_idempotency_key":
            return ctx.once("k" * 8000, lambda: "sent")
        if kind == "str_raises":
            raise Evil
        if kind == "keyboard_interrupt":
            raise KeyboardInterrupt
        if kind == "generator_exit":
            raise GeneratorExit
        if kind == "stuck_thread":
            unblock.wait(3)  # a blocking call the timeout cannot interrupt
            return "late"
        if kind == "result_not_json":
            return {1, 2}
        if kind == "result_nested_3000":
            value: Any = 1
            for _ in range(3000):
                value = [value]
            return value
        if kind == "result_with_nul":
            return "\x00"
        if kind == "huge_error_message":
            raise ValueError("x" * 10_000_000)
        if kind == "retry_after_nan":
            raise conveyor.Retry(after=float("nan"))
        raise AssertionError(f"unknown kind {kind}")

    @app.task(name="hostile_async", max_attempts=2, backoff=fast, timeout=5)
    async def hostile_async(kind: str) -> None:
        if kind == "system_exit_async_with_timeout":
            raise SystemExit(3)
        if kind == "own_cancelled_error":
            raise asyncio.CancelledError
        raise AssertionError(f"unknown kind {kind}")


_RAW = {
    # rows only a hand-written INSERT (or an old version) could leave: they bypass every check
    "run_at_minus_infinity": ("{}", "-infinity", None),
    "run_at_year_20000": ("{}", "20000-01-01", None),
    "args_nested_3000": ('{"n": ' + "[" * 3000 + "1" + "]" * 3000 + "}", "now", None),
    "int_5000_digits": ('{"n": ' + "7" * 5000 + "}", "now", None),
    "nan_timeout": ("{}", "now", "NaN"),
    "args_not_in_signature": ('{"nope": 1}', "now", None),
}


def _enqueue_hostile(app: conveyor.Conveyor, conn: psycopg.Connection[Any], kind: str) -> int:
    if kind in _RAW:
        args, run_at, timeout = _RAW[kind]
        row = conn.execute(
            "INSERT INTO conveyor.job (task, queue, args, state, run_at, timeout_seconds)"
            " VALUES ('ordinary', 'default', %s::jsonb, 'available', %s::timestamptz,"
            " %s::float8) RETURNING id",
            (args, run_at, timeout),
        ).fetchone()
        assert row is not None
        return int(row[0])
    task = (
        "hostile_async"
        if kind in ("system_exit_async_with_timeout", "own_cancelled_error")
        else "hostile_sync"
    )
    return app.tasks[task].enqueue(kind=kind)


async def _scenario(db: str, kinds: list[str]) -> None:
    clean_tables(db)
    app = conveyor.Conveyor(db)
    runs: Counter[int] = Counter()
    unblock = threading.Event()
    _register(app, runs, unblock)
    hostile: dict[int, str] = {}
    ordinary: list[int] = []
    with psycopg.connect(db, autocommit=True) as conn:
        for n, kind in enumerate(kinds):
            if kind == "ordinary":
                app.tasks["ordinary"].enqueue(n=n)
                ordinary.append(n)
            else:
                hostile[_enqueue_hostile(app, conn, kind)] = kind

        def settled() -> bool:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state IN ('completed', 'failed', 'cancelled')),"
                " count(*) FROM conveyor.jobs"
            ).fetchone()
            return row is not None and row[0] == row[1]

        config = fast_config(concurrency=4, lease_seconds=5)
        async with running_worker(app, config) as worker:
            await eventually(settled, timeout=90, interval=0.1)
            unblock.set()
            await eventually(lambda: worker.stuck_threads == 0, timeout=30)
            assert not worker.broken
            assert worker.running_count == 0
        rows = conn.execute("SELECT id, state, errors FROM conveyor.jobs").fetchall()
    app.close()
    assert runs == Counter(ordinary), "every ordinary job ran exactly once"
    for job_id, state, errors in rows:
        if job_id not in hostile:
            assert state == "completed"
            continue
        kind = hostile[job_id]
        assert state == "failed", (kind, state, errors)
        assert errors, kind
        last = errors[-1]
        assert last["type"] and last["message"], (kind, last)
        assert len(json.dumps(errors)) < 200_000, f"{kind}: errors are clipped"


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=KINDS)
def test_any_mix_of_hostile_jobs_leaves_the_others_and_the_worker_unharmed(
    database_url: str, kinds: list[str]
) -> None:
    started = time.monotonic()
    asyncio.run(_scenario(database_url, kinds))
    assert time.monotonic() - started < 120


def test_every_hostile_kind_at_once(database_url: str) -> None:
    asyncio.run(_scenario(database_url, [*HOSTILE, "ordinary", "ordinary"]))
