"""A flow across two real worker processes: the parent runs once, after every child."""

from __future__ import annotations

import conveyor
from tests.acceptance import shop_app
from tests.acceptance.conftest import StartWorker, scalar, wait_for_state, wait_for_workers


def test_parent_runs_once_after_children_spread_over_two_processes(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    for _ in range(2):
        start_worker("--concurrency", "8")
    wait_for_workers(db, 2)
    flow = shop.enqueue_flow(
        shop_app.summarize.spec(), [shop_app.record.spec(n=n) for n in range(200)]
    )
    wait_for_state(db, flow.parent_id, "completed", timeout=60)
    parent = shop.client().get_job(flow.parent_id)
    assert parent.result["sum"] == sum(range(200))
    assert parent.attempt == 1
    assert parent.progress is not None and parent.progress["message"] == "summed 200 children"
    # every child had finished when the parent started
    assert scalar(
        db,
        "SELECT max(finished_at) <= (SELECT attempted_at FROM conveyor.jobs WHERE id = %s)"
        " FROM conveyor.jobs WHERE id = ANY(%s)",
        flow.parent_id,
        flow.child_ids,
    )
    assert scalar(db, "SELECT count(*) FROM acceptance.executions") == 200
