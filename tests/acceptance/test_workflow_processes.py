"""A workflow run outlives its worker: stopped while the run sleeps, a new worker process
finishes it, and no step runs twice."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest

from tests.acceptance import workflow_app
from tests.acceptance.conftest import WorkerProcess
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

APP = "tests.acceptance.workflow_app:app"


def test_a_run_sleeping_when_its_worker_stops_is_finished_by_a_new_worker(
    db: str, tmp_path: Path
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(workflow_app.SCHEMA)
        conn.execute("TRUNCATE acceptance.workflow_effects")
    run_id = workflow_app.nap.start(seconds=4.0)
    workflow_app.app.close()
    client = workflow_app.app.client()
    first = WorkerProcess(db, (), tmp_path / "first.log", app=APP)
    second: WorkerProcess | None = None
    try:
        wait_until(lambda: client.get_workflow(run_id).state == "sleeping", timeout=30)
        first.send(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        run = client.get_workflow(run_id)
        assert run.state == "sleeping", "the sleep outlives the worker"
        assert client.get_job(run.job_id).state == "scheduled"
        second = WorkerProcess(db, (), tmp_path / "second.log", app=APP)
        wait_until(lambda: client.get_workflow(run_id).state == "completed", timeout=60)
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.kill_all()
                print(worker.log())
        workflow_app.app.close()
    run = client.get_workflow(run_id)
    assert run.result == {"before": first.pid, "after": second.pid}
    with psycopg.connect(db) as conn:
        steps = conn.execute(
            "SELECT step, count(*) FROM acceptance.workflow_effects GROUP BY step ORDER BY step"
        ).fetchall()
    assert steps == [("after", 1), ("before", 1)]
