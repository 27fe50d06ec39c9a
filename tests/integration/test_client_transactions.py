"""Client.retry_tx and cancel_tx: the same retry and cancel, in the caller's transaction. A
commit applies them; a rollback leaves the job as it was."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import conveyor
from tests.integration.test_enqueue_transactions import (
    AsyncTransaction,
    SyncTransaction,
    async_transaction,
    sync_transaction,
)

__all__ = ["async_transaction", "sync_transaction"]  # fixtures shared with the enqueue tests


class _RollbackError(Exception):
    """Raised inside a transaction block to make it roll back."""


def _state(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("SELECT state FROM conveyor.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def _cancelled_job(app: conveyor.Conveyor) -> int:
    @app.task(name="stopped")
    def stopped() -> None: ...

    job_id = stopped.enqueue()
    app.client().cancel(job_id)
    return job_id


def test_cancel_tx_applies_on_commit(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], sync_transaction: SyncTransaction
) -> None:
    @app.task(name="later")
    def later() -> None: ...

    job_id = later.enqueue()
    with sync_transaction() as caller:
        assert app.client().cancel_tx(caller, job_id) == [job_id]
        assert _state(conn, job_id) == "available"  # not yet: the caller has not committed
    assert _state(conn, job_id) == "cancelled"


def test_cancel_tx_rolled_back_leaves_the_job_unchanged(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], sync_transaction: SyncTransaction
) -> None:
    @app.task(name="later")
    def later() -> None: ...

    job_id = later.enqueue()
    with pytest.raises(_RollbackError), sync_transaction() as caller:
        app.client().cancel_tx(caller, job_id)
        raise _RollbackError
    assert _state(conn, job_id) == "available"


def test_retry_tx_applies_on_commit_and_not_on_rollback(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], sync_transaction: SyncTransaction
) -> None:
    job_id = _cancelled_job(app)
    with pytest.raises(_RollbackError), sync_transaction() as caller:
        assert app.client().retry_tx(caller, job_id) == [job_id]
        raise _RollbackError
    assert _state(conn, job_id) == "cancelled"
    with sync_transaction() as caller:
        app.client().retry_tx(caller, job_id)
    assert _state(conn, job_id) == "available"


async def test_async_retry_tx_and_cancel_tx_follow_the_transaction(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    async_transaction: AsyncTransaction,
) -> None:
    client = app.async_client()
    job_id = _cancelled_job(app)
    with pytest.raises(_RollbackError):
        async with async_transaction() as caller:
            assert await client.retry_tx(caller, job_id) == [job_id]
            raise _RollbackError
    assert _state(conn, job_id) == "cancelled"
    async with async_transaction() as caller:
        await client.retry_tx(caller, job_id)
    assert _state(conn, job_id) == "available"
    with pytest.raises(_RollbackError):
        async with async_transaction() as caller:
            assert await client.cancel_tx(caller, job_id) == [job_id]
            raise _RollbackError
    assert _state(conn, job_id) == "available"
    async with async_transaction() as caller:
        await client.cancel_tx(caller, job_id)
    assert _state(conn, job_id) == "cancelled"
