"""Declaring workflows and starting runs: the checks made before any database is touched."""

from __future__ import annotations

from typing import Any

import pytest

import conveyor


@pytest.fixture
def app() -> conveyor.Conveyor:
    return conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)


class _NoConnection:
    """Fails the test if a check let the start reach the database."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used ({name})")


def test_workflow_needs_a_parameter_for_its_context(app: conveyor.Conveyor) -> None:
    def no_context(*, order_id: int) -> None: ...

    with pytest.raises(conveyor.ConfigError, match="first parameter receives the WorkflowContext"):
        app.workflow(name="wf.bad")(no_context)


def test_workflow_registers_the_task_that_drives_its_runs(app: conveyor.Conveyor) -> None:
    @app.workflow(name="wf.ok", queue="orders", max_attempts=7)
    def ok(ctx: conveyor.WorkflowContext, order_id: int) -> None: ...

    task = app.tasks["wf.ok"]
    assert task.workflow is ok and task.queue == "orders" and task.max_attempts == 7
    assert app.workflows == {"wf.ok": ok}
    with pytest.raises(conveyor.ConfigError, match="already registered"):

        @app.task(name="wf.ok")
        def clash() -> None: ...


def test_start_checks_arguments_and_run_id_before_the_database(app: conveyor.Conveyor) -> None:
    @app.workflow(name="wf.args")
    def args(ctx: conveyor.WorkflowContext, order_id: int, note: str = "") -> None: ...

    conn = _NoConnection()
    with pytest.raises(conveyor.PayloadError, match=r"missing argument\(s\) order_id"):
        args.start_tx(conn)
    with pytest.raises(conveyor.PayloadError, match=r"unexpected argument\(s\) color"):
        args.start_tx(conn, order_id=1, color="red")
    with pytest.raises(conveyor.PayloadError, match="1 to 200 bytes"):
        args.start_tx(conn, order_id=1, run_id="r" * 201)
    with pytest.raises(conveyor.PayloadError, match="which JSON cannot hold"):
        args.start_tx(conn, order_id=object())


def test_event_payloads_and_names_are_checked_before_the_database(
    app: conveyor.Conveyor,
) -> None:
    conn = _NoConnection()
    with pytest.raises(conveyor.ConfigError, match="needs a name"):
        app.send_event_tx(conn, "")
    with pytest.raises(conveyor.PayloadError, match="65,536-byte limit"):
        app.send_event_tx(conn, "e", payload="x" * 70_000)
    with pytest.raises(conveyor.PayloadError, match="1,000 bytes"):
        app.send_event_tx(conn, "e", key="k" * 1001)
