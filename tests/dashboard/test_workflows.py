"""The workflow pages show runs a real worker drove (steps, attempts, timings, results,
tracebacks, the current wait or sleep); cancel and retry act through the Client, CSRF-checked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.dashboard import create_app
from tests.dashboard.conftest import ORIGIN, csrf_token, state_of
from tests.helpers import eventually, fast_config, running_worker


@pytest.fixture
def web(db: str) -> Iterator[TestClient]:
    """The dashboard on an app of its own (its pool lives in the test client's event loop)."""
    with TestClient(create_app(conveyor.Conveyor(db))) as client:
        yield client


@pytest.fixture
async def runs(app: conveyor.Conveyor) -> AsyncIterator[dict[str, str]]:
    """Three runs left by a real worker: one waiting for an event after a step that needed two
    attempts, one failed with a traceback, one sleeping (its id holds '/' and a space)."""
    failures = {"charge": 0}

    def charge(order_id: int) -> dict[str, Any]:
        failures["charge"] += 1
        if failures["charge"] == 1:
            raise ConnectionError("card processor timed out")
        return {"charged": order_id * 10}

    def explode() -> None:
        raise RuntimeError("stock service said no")

    @app.workflow(name="dash.checkout")
    async def checkout(ctx: conveyor.WorkflowContext, order_id: int) -> None:
        await ctx.step("reserve", lambda: {"hold": f"H{order_id}"})
        await ctx.step("charge", charge, order_id, backoff=0.01)
        await ctx.wait_for_event("order.shipped", key=str(order_id), timeout=timedelta(days=7))

    @app.workflow(name="dash.broken")
    async def broken(ctx: conveyor.WorkflowContext) -> None:
        await ctx.step("reserve", explode, max_attempts=1)

    @app.workflow(name="dash.drip")
    async def drip(ctx: conveyor.WorkflowContext) -> None:
        await ctx.sleep(timedelta(days=3))

    ids = {
        "waiting": await checkout.astart(order_id=7, run_id="checkout-7"),
        "failed": await broken.astart(run_id="broken-1"),
        "sleeping": await drip.astart(run_id="drip/ann smith"),
    }
    client = app.async_client()
    async with running_worker(app, fast_config()):
        for state, run_id in ids.items():

            async def reached(run_id: str = run_id, state: str = state) -> bool:
                return (await client.get_workflow(run_id)).state == state

            await eventually(reached)
    yield ids


def test_runs_list_links_each_run_and_filters_by_state(
    runs: dict[str, str], web: TestClient
) -> None:
    html = web.get("/workflows").text
    assert 'href="/workflows" class="here">Workflows</a>' in html
    for run_id in ("checkout-7", "broken-1", "drip%2Fann%20smith"):
        assert f'href="/workflows/{run_id}"' in html
    assert "event <code>order.shipped</code> key <code>7</code>" in html
    failed = web.get("/workflows?state=failed").text
    assert re.findall(r'<tr class="run">', failed) == ['<tr class="run">']
    assert "broken-1" in failed and "checkout-7" not in failed
    assert "drip/ann smith" in web.get("/workflows?workflow=dash.drip").text


def test_run_page_shows_steps_attempts_results_and_the_event_wait(
    runs: dict[str, str], web: TestClient
) -> None:
    html = web.get("/workflows/checkout-7").text
    assert '<span class="state waiting" id="run-state">waiting</span>' in html
    steps = re.findall(
        r'<tr class="step">\s*<td class="num">(\d+)</td>\s*<td><code>([^<]+)</code></td>\s*'
        r"<td>(\w+)</td>\s*<td><span class=\"state \w+\">(\w+)</span></td>\s*"
        r'<td class="num">(\d+)</td>',
        html,
    )
    assert steps == [
        ("0", "reserve", "step", "completed", "1"),
        ("1", "charge", "step", "completed", "2"),
        ("2", "order.shipped", "wait", "waiting", "0"),
    ]
    assert "&#34;hold&#34;: &#34;H7&#34;" in html and "&#34;charged&#34;: 70" in html
    parked = re.search(r'<p class="flash" id="parked">(.*?)</p>', html, re.S)
    assert parked is not None
    assert "Waiting for event <code>order.shipped</code> with key <code>7</code> until" in parked[1]
    assert "in 7.0 d" in parked[1]
    assert ">Cancel</button>" in html and ">Retry</button>" not in html


def test_failed_run_shows_the_traceback_and_retry_resumes_it(
    app: conveyor.Conveyor, runs: dict[str, str], web: TestClient
) -> None:
    html = web.get("/workflows/broken-1").text
    assert '<span class="state failed" id="run-state">failed</span>' in html
    assert "stock service said no" in html
    assert '<pre class="tb">Traceback (most recent call last):' in html
    assert "in explode" in html
    old_job = app.client().get_workflow("broken-1").job_id
    page = web.post(
        "/workflows/broken-1/retry", data={"csrf_token": csrf_token(html)}, headers=ORIGIN
    ).text
    assert "Workflow run broken-1 retried from its failed step." in page
    run = app.client().get_workflow("broken-1")
    assert run.state == "running" and run.job_id not in (None, old_job)
    assert [s.name for s in run.steps] == []  # the failed step is forgotten, to run again
    again = web.post(
        "/workflows/broken-1/retry", data={"csrf_token": csrf_token(html)}, headers=ORIGIN
    ).text
    assert "was not retried (only a failed run can be retried)" in again


def test_cancel_a_sleeping_run_whose_id_holds_a_slash(
    app: conveyor.Conveyor, runs: dict[str, str], web: TestClient, conn: Any
) -> None:
    html = web.get("/workflows/drip%2Fann%20smith").text
    assert "Sleeping until <strong>" in html and "in 3.0 d" in html
    job_id = app.client().get_workflow("drip/ann smith").job_id
    assert job_id is not None
    page = web.post(
        "/workflows/drip%2Fann%20smith/cancel",
        data={"csrf_token": csrf_token(html)},
        headers=ORIGIN,
    ).text
    assert "Workflow run drip/ann smith cancelled." in page
    assert app.client().get_workflow("drip/ann smith").state == "cancelled"
    assert state_of(conn, job_id) == "cancelled"


def test_actions_need_the_csrf_token_and_unknown_runs_are_404(
    app: conveyor.Conveyor, runs: dict[str, str], web: TestClient
) -> None:
    refused = web.post("/workflows/checkout-7/cancel", data={}, headers=ORIGIN)
    assert refused.status_code == 403
    assert app.client().get_workflow("checkout-7").state == "waiting"
    token = csrf_token(web.get("/workflows/checkout-7").text)
    forged = web.post(
        "/workflows/checkout-7/cancel",
        data={"csrf_token": token},
        headers={"origin": "http://evil.example"},
    )
    assert forged.status_code == 403
    assert app.client().get_workflow("checkout-7").state == "waiting"
    assert web.get("/workflows/no-such-run").status_code == 404
    assert web.post("/workflows/checkout-7/delete", data={"csrf_token": token}).status_code == 404


async def test_run_page_shows_fan_outs_their_counts_and_children(
    app: conveyor.Conveyor, web: TestClient
) -> None:
    @app.task(name="dash.square")
    def square(n: int) -> int:
        if n == 3:
            raise ValueError("three is unlucky")
        return n * n

    @app.workflow(name="dash.child")
    async def child(ctx: conveyor.WorkflowContext, n: int) -> int:
        return n + 1

    @app.workflow(name="dash.report")
    async def report(ctx: conveyor.WorkflowContext) -> list[Any]:
        squares = await ctx.map(square, [{"n": n} for n in range(5)], on_failure="return")
        one = await ctx.run_workflow(child, n=41)
        return [len(squares), one]

    run_id = await report.astart(run_id="report-1")
    client = app.async_client()
    async with running_worker(app, fast_config()):

        async def done() -> bool:
            return (await client.get_workflow(run_id)).state == "completed"

        await eventually(done)
    kids = await client.workflow_children(run_id)
    assert [(f.kind, f.total, f.remaining, f.failed) for f in kids.fanouts] == [
        ("map", 5, 0, 1),
        ("child", 1, 0, 0),
    ]
    assert [(c.position, c.index, c.state) for c in kids.children] == [
        *[(0, n, "failed" if n == 3 else "completed") for n in range(5)],
        (1, 0, "completed"),
    ]
    child_run = kids.children[-1].run_id
    assert child_run is not None

    html = web.get("/workflows/report-1").text
    counts = re.findall(
        r'<tr class="fanout">\s*<td class="num">(\d+)</td><td><code>[^<]+</code></td>'
        r'<td>(\w+)</td>\s*<td class="num">(\d+)</td><td class="num">(\d+)</td>\s*'
        r'<td class="num">(\d+)</td>',
        html,
    )
    assert counts == [("0", "map", "5", "5", "1"), ("1", "child", "1", "1", "0")]
    assert len(re.findall(r'<tr class="child">', html)) == 6
    assert "<code>ValueError</code>: three is unlucky" in html
    assert f'href="/workflows/{child_run}"' in html
    assert f'href="/jobs/{kids.children[0].job_id}"' in html
