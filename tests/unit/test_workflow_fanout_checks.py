"""The fan-out calls' checks, made before any database is touched, and where the position is
taken (a refused call takes none)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

import conveyor
from conveyor._store.workflows import Fence
from conveyor.job import Job, JobState

NOW = datetime(2026, 12, 6, tzinfo=UTC)


class _NoDatabase:
    """Fails the test if a check let the call reach the database."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used ({name})")


@pytest.fixture
def app() -> conveyor.Conveyor:
    return conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)


def context(is_async: bool = False) -> conveyor.WorkflowContext:
    job = Job(1, "wf", "default", JobState.RUNNING, 0, 1, 5, {"run_id": "r"}, [], None, None,
              NOW, NOW, NOW, None, None, "w")  # fmt: skip
    return conveyor.WorkflowContext(
        run_id="r",
        workflow="wf",
        job=job,
        fence=Fence(1, uuid.uuid4(), None),
        steps={},
        now=NOW,
        db=_NoDatabase(),
        is_async=is_async,
    )


def test_map_checks_its_options_and_items_before_taking_a_position(
    app: conveyor.Conveyor,
) -> None:
    @app.task(name="t.child")
    def child(i: int) -> int:
        return i

    ctx = context()
    with pytest.raises(conveyor.WorkflowError, match="on_failure must be 'fail' or 'return'"):
        ctx.map(child, [{"i": 1}], on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(conveyor.WorkflowError, match="concurrency must be >= 1"):
        ctx.map(child, [{"i": 1}], concurrency=0)
    with pytest.raises(conveyor.WorkflowError, match="a dict of one child's keyword arguments"):
        ctx.map(child, [1, 2])  # type: ignore[list-item]
    with pytest.raises(conveyor.WorkflowError, match="10,001 children, over the limit of 10,000"):
        ctx.map(child, [{"i": i} for i in range(10_001)])
    with pytest.raises(conveyor.WorkflowError, match="takes a task or a workflow"):
        ctx.map(lambda i: i, [{"i": 1}])
    with pytest.raises(conveyor.WorkflowError, match="run_workflow takes a workflow"):
        ctx.run_workflow(child, i=1)
    assert ctx.positions_used == 0


def test_a_sync_gather_returns_what_its_calls_already_returned() -> None:
    assert context().gather(1, "two", None) == [1, "two", None]
