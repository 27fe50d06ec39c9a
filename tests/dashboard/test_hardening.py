"""The dashboard survives rows Python cannot load and ids no job can have: every list and page
answers, marking what it cannot show and why, never a 500."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from starlette.testclient import TestClient

from tests.dashboard.conftest import insert_finished
from tests.unreadable_rows import insert_unreadable_jobs

#: More than any bigint: no job can have this id.
HUGE = "99999999999999999999"


def _row(html: str, job_id: int) -> str:
    found = re.search(rf'<tr>\s*<td class="num"><a href="[^"]*/jobs/{job_id}">.*?</tr>', html, re.S)
    assert found, f"job {job_id} is not listed"
    return found.group(0)


def test_job_lists_show_rows_python_cannot_load_marked_with_why(
    dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_unreadable_jobs(conn)
    for query in ("", "?state=available", "?q=a"):  # the plain list and the text search
        page = dash.get("/jobs" + query)
        assert page.status_code == 200, page.text
    html = dash.get("/jobs").text
    assert "unreadable" not in _row(html, ids["ordinary"])
    assert "run_at out of range (infinity)" in _row(html, ids["infinite_run_at"])
    assert "args too deeply nested to display" in _row(html, ids["deep_args"])
    assert "finished_at out of range (12000-01-01" in _row(html, ids["far_finished"])
    found = dash.get("/jobs?q=a").text
    assert "args too deeply nested to display" in _row(found, ids["deep_args"])


def test_job_pages_show_rows_python_cannot_load_with_why(
    dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_unreadable_jobs(conn)
    for job_id in ids.values():
        page = dash.get(f"/jobs/{job_id}")
        assert page.status_code == 200, page.text
    never = dash.get(f"/jobs/{ids['infinite_run_at']}").text
    assert "run_at out of range (infinity)" in never
    assert "infinity (out of range)" in never
    deep = dash.get(f"/jobs/{ids['deep_args']}").text
    assert "args too deeply nested to display" in deep


def test_queue_page_survives_jobs_with_infinite_and_far_times(
    dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    insert_unreadable_jobs(conn)
    page = dash.get("/")
    assert page.status_code == 200, page.text
    assert '<a href="/jobs?queue=default&amp;state=available">3</a>' in page.text


def test_ids_beyond_any_job_are_out_of_range_not_errors(
    dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_finished(conn)
    older = dash.get(f"/jobs?before_id={HUGE}")
    assert older.status_code == 200, older.text
    _row(older.text, job_id)  # every job is older than that
    assert dash.get(f"/jobs?before_id=-{HUGE}").status_code == 200
    missing = dash.get(f"/jobs/{HUGE}")
    assert missing.status_code == 404
    assert f"no job with id {HUGE}" in missing.text
