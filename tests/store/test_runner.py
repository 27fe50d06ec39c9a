"""The two runners: one plan, written once, runs the same on a sync and an async connection of
every kind; a failing step rolls the plan back with the caller's transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from conveyor._store import admin
from conveyor._store.enqueue import insert_plan
from conveyor._store.ops import Call, Claim, Op, Plan, Rows, Savepoint, count
from conveyor._store.runner import arun, run
from conveyor.spec import JobSpec
from tests.integration.test_enqueue_transactions import (
    AsyncTransaction,
    SyncTransaction,
    async_transaction,
    sync_transaction,
)

__all__ = ["async_transaction", "sync_transaction"]  # fixtures shared with the enqueue tests


def _enqueue_two_cancel_one(conn: Any) -> Plan[tuple[int, bool, str]]:
    """Steps that depend on each other: the ids drawn by the insert are what is cancelled."""
    inserted = yield from insert_plan(conn, [JobSpec("a", "{}"), JobSpec("b", "{}")], None)
    cancelled = yield admin.cancel(inserted.ids[:1])
    other = yield admin.get(inserted.ids[1])
    return len(inserted.ids), cancelled == inserted.ids[:1], str(other.state)


def _then_fail(conn: Any) -> Plan[None]:
    yield from insert_plan(conn, [JobSpec("doomed", "{}")], None)
    yield Op("job_get", {"id": "not a number"}, Rows)  # bigint refuses it: the step fails


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone()
    assert row is not None
    return int(row[0])


async def test_sync_and_async_runners_run_the_same_plan(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        on_sync = run(conn, _enqueue_two_cancel_one(conn))
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as aconn:
        on_async = await arun(aconn, _enqueue_two_cancel_one(aconn))
    assert on_sync == on_async == (2, True, "available")
    with psycopg.connect(db, autocommit=True) as conn:
        states = conn.execute("SELECT state, count(*) FROM conveyor.jobs GROUP BY 1 ORDER BY 1")
        assert states.fetchall() == [("available", 2), ("cancelled", 2)]


def test_every_sync_caller_connection_runs_a_plan(
    sync_transaction: SyncTransaction, conn: psycopg.Connection[Any]
) -> None:
    with sync_transaction() as caller:
        assert run(caller, _enqueue_two_cancel_one(caller)) == (2, True, "available")
    assert _count(conn) == 2


async def test_every_async_caller_connection_runs_a_plan(
    async_transaction: AsyncTransaction, conn: psycopg.Connection[Any]
) -> None:
    async with async_transaction() as caller:
        assert await arun(caller, _enqueue_two_cancel_one(caller)) == (2, True, "available")
    assert _count(conn) == 2


def test_a_failing_step_rolls_back_the_whole_plan(
    sync_transaction: SyncTransaction, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(Exception, match="not a number"), sync_transaction() as caller:
        run(caller, _then_fail(caller))
    assert _count(conn) == 0


async def test_a_failing_step_rolls_back_the_whole_plan_async(
    async_transaction: AsyncTransaction, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(Exception, match="not a number"):
        async with async_transaction() as caller:
            await arun(caller, _then_fail(caller))
    assert _count(conn) == 0


def test_a_plan_sees_its_failing_step_and_may_go_on(db: str) -> None:
    def tolerant() -> Plan[str]:
        try:
            yield Op("job_get", {"id": "not a number"}, Rows)
        except psycopg.DataError as exc:
            assert "not a number" in str(exc)
        return str((yield Op("queue_counts", {}, len)))

    with psycopg.connect(db, autocommit=True) as conn:
        assert run(conn, tolerant()) == "0"


async def test_a_call_step_is_called_by_the_sync_runner_and_awaited_by_the_async_one() -> None:
    def plan(call: Call) -> Plan[int]:
        return int((yield call)) + 1

    async def two() -> int:
        return 2

    assert run(None, plan(Call(lambda: 1))) == 2
    assert await arun(None, plan(Call(two))) == 3


def test_copy_needs_a_psycopg_connection() -> None:
    from conveyor._store.caller import execute
    from conveyor._store.ops import Copy

    class NotPsycopg:
        pass

    with pytest.raises(TypeError, match="COPY needs a psycopg connection"):
        execute(NotPsycopg(), Copy("job_copy", []))


def test_count_reads_one_row() -> None:
    rows = Rows([{"count": 3}])
    assert count(rows) == 3


async def test_a_cancelled_step_is_thrown_into_its_plan_so_its_blocks_close() -> None:
    closed: list[type[BaseException] | None] = []

    async def cancelled() -> None:
        raise asyncio.CancelledError

    def plan() -> Plan[None]:
        try:
            yield Call(cancelled)
        except BaseException as exc:
            closed.append(type(exc))
            raise

    with pytest.raises(asyncio.CancelledError):
        await arun(None, plan())
    assert closed == [asyncio.CancelledError]


def test_a_failing_savepoint_leaves_the_steps_before_it_standing(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    def plan(caller: Any) -> Plan[str]:
        yield from insert_plan(caller, [JobSpec("kept", "{}")], None)
        try:
            yield Savepoint(Op("job_get", {"id": "not a number"}, Rows))
        except psycopg.DataError:
            return "refused"
        return "accepted"

    with psycopg.connect(db) as caller, caller.transaction():
        assert run(caller, plan(caller)) == "refused"
    assert _count(conn) == 1  # the transaction was not aborted: it committed the insert


def test_a_claim_needs_the_async_runner() -> None:
    def plan() -> Plan[None]:
        yield Claim("job_fetch_available", {})

    with pytest.raises(TypeError, match="a claim runs on the worker's async connection"):
        run(None, plan())
