"""End to end in headless Chromium: a real worker fails a job, an operator retries it from the
dashboard, and the page shows it completed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor.dashboard import create_app
from tests.acceptance.conftest import WorkerProcess, wait_for_state, wait_for_workers
from tests.dashboard.browser import chromium_path, serve
from tests.helpers import component_missing, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def chromium() -> str:
    """The system's Chromium; missing, the test fails under CI and is skipped elsewhere."""
    return chromium_path() or component_missing(
        "no chromium binary on PATH (Debian: apt-get install chromium)"
    )


@pytest.fixture
def worker(db: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(db, (), tmp_path / "worker.log", app="tests.dashboard.dash_app:app")
    try:
        wait_for_workers(db, 1)
        yield process
    finally:
        process.kill_all()
        print(f"--- worker log:\n{process.log()}")


def test_retry_a_failed_job_from_the_browser_and_see_it_complete(
    chromium: str, app: conveyor.Conveyor, db: str, worker: WorkerProcess
) -> None:
    from playwright.sync_api import sync_playwright

    (job_id,) = app.enqueue_many([conveyor.JobSpec(task="dash.flaky", args_json='{"order_id": 7}')])
    wait_for_state(db, job_id, "failed")

    with serve(create_app(app)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            assert page.title().startswith("Queues")
            page.click('a[href="/jobs?queue=default&state=failed"]')  # the failed count
            page.click(f'a[href="/jobs/{job_id}"]')
            assert page.text_content("#job-state") == "failed"
            assert "RuntimeError" in page.content()
            assert "receipt service rejected order 7" in (page.text_content("pre.tb") or "")

            page.click('button:has-text("Retry")')
            assert f"Job {job_id} retried." in (page.text_content("[role=status]") or "")

            def completed() -> bool:
                page.reload()
                return page.text_content("#job-state") == "completed"

            wait_until(completed, timeout=30, interval=0.2)
            assert "receipt for order 7 sent" in (page.text_content("#job-result") or "")
        finally:
            browser.close()
