"""Limits shared by several worker processes: a rate limit and a per-key concurrency limit."""

from __future__ import annotations

import psycopg

import conveyor
from tests.acceptance import shop_app
from tests.acceptance.conftest import StartWorker, scalar, wait_for_workers
from tests.helpers import wait_until

RATE = 20  # jobs per second
SPAN = 10  # seconds measured


def test_rate_limit_holds_across_three_worker_processes(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    shop.client().configure_queue("rated", rate_limit=f"{RATE}/s")
    shop.enqueue_many([shop_app.record.with_options(queue="rated").spec(n=n) for n in range(400)])
    for _ in range(3):
        start_worker("--queues", "rated", "--concurrency", "10")
    wait_for_workers(db, 3)
    wait_until(
        lambda: scalar(
            db,
            "SELECT clock_timestamp() > (SELECT min(at) FROM acceptance.executions)"
            " + make_interval(secs => %s)",
            SPAN + 1,
        ),
        timeout=SPAN + 30,
    )
    started = scalar(
        db,
        "SELECT count(*) FROM acceptance.executions"
        " WHERE at < (SELECT min(at) FROM acceptance.executions) + make_interval(secs => %s)",
        SPAN,
    )
    pids = scalar(db, "SELECT count(DISTINCT pid) FROM acceptance.executions")
    # Fixed windows of 1 s: SPAN seconds touch at most SPAN + 1 windows.
    assert RATE * (SPAN - 2) <= started <= RATE * (SPAN + 1), started
    assert pids >= 2, "the limit was shared, not held by one process alone"
    # Over the limit, jobs wait: none was failed or retried for it.
    assert scalar(db, "SELECT count(*) FROM conveyor.jobs WHERE attempt > 1") == 0


def test_per_key_concurrency_is_never_exceeded_under_load(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker
) -> None:
    shop.client().configure_queue("tenants", key="tenant", key_concurrency=2)
    specs = [
        shop_app.tenant_work.spec(tenant=tenant, seconds=0.05)
        for n in range(25)
        for tenant in ("a", "b", "c", "d")
    ]
    shop.enqueue_many(specs)
    for _ in range(3):
        start_worker("--queues", "tenants", "--concurrency", "10")
    wait_until(lambda: scalar(db, "SELECT count(*) FROM acceptance.spans") == 100, timeout=60)
    with psycopg.connect(db) as conn:
        events = conn.execute(
            "SELECT tenant, started, 1 FROM acceptance.spans"
            " UNION ALL SELECT tenant, finished, -1 FROM acceptance.spans"
            " ORDER BY 2, 3"  # at equal times, an end comes before a start
        ).fetchall()
    per_tenant: dict[str, int] = {}
    peak: dict[str, int] = {}
    overall = overall_peak = 0
    for tenant, _, step in events:
        per_tenant[tenant] = per_tenant.get(tenant, 0) + step
        peak[tenant] = max(peak.get(tenant, 0), per_tenant[tenant])
        overall += step
        overall_peak = max(overall_peak, overall)
    assert max(peak.values()) <= 2, peak
    assert overall_peak > 2, "tenants ran side by side"
