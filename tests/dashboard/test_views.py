"""The pages show what the Client reads; the actions change the database."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import conveyor
from conveyor.dashboard import create_app
from tests.dashboard.conftest import (
    ORIGIN,
    TRACEBACK,
    csrf_token,
    insert_finished,
    state_of,
)


def _ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num"><a href="[^"]*/jobs/(\d+)">', html)]


def _enqueue(app: conveyor.Conveyor, n: int, **options: Any) -> list[int]:
    specs = [
        conveyor.JobSpec(
            task=options.get("task", "shop.work"),
            args_json=f'{{"n": {i}}}',
            queue=options.get("queue"),
        )
        for i in range(n)
    ]
    return app.enqueue_many(specs)


def test_queue_page_shows_counts_by_state_and_failed_tasks(
    app: conveyor.Conveyor, dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    _enqueue(app, 3, queue="emails")
    for _ in range(2):
        insert_finished(conn, queue="emails", task="shop.send_receipt", state="failed")
    insert_finished(conn, queue="emails", state="completed")
    html = dash.get("/").text
    assert '<a href="/jobs?queue=emails&amp;state=available">3</a>' in html
    assert '<a href="/jobs?queue=emails&amp;state=failed">2</a>' in html
    assert "Retry all 2" in html
    assert "completed per minute" in html and "<rect" in html  # the chart has a bar
    assert html.count('<svg class="spark"') == 1  # each queue's own sparkline


def test_pause_and_resume_a_queue(app: conveyor.Conveyor, dash: TestClient) -> None:
    _enqueue(app, 1, queue="emails")
    token = csrf_token(dash.get("/").text)
    page = dash.post("/queues/emails/pause", data={"csrf_token": token}, headers=ORIGIN).text
    assert "Queue emails paused" in page
    assert {q.name: q.paused for q in app.client().queues()}["emails"] is True
    page = dash.post("/queues/emails/resume", data={"csrf_token": token}, headers=ORIGIN).text
    assert "Queue emails resumed." in page
    assert {q.name: q.paused for q in app.client().queues()}["emails"] is False


def test_job_list_pages_newest_first_with_keyset_links(
    app: conveyor.Conveyor, dash: TestClient
) -> None:
    ids = sorted(_enqueue(app, 120), reverse=True)
    first = dash.get("/jobs").text
    assert _ids(first) == ids[:50]
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    second = dash.get(older.group(1).replace("&amp;", "&")).text
    assert _ids(second) == ids[50:100]
    third = dash.get(f"/jobs?before_id={ids[99]}").text
    assert _ids(third) == ids[100:]
    assert 'rel="next"' not in third


def test_job_list_filters_by_queue_task_state_and_text_in_args(
    app: conveyor.Conveyor, dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    mail = _enqueue(app, 2, queue="emails", task="shop.mail")
    report = _enqueue(app, 2, queue="reports", task="shop.report")
    failed = insert_finished(conn, queue="emails", args={"email": "ada@example.com"})
    assert sorted(_ids(dash.get("/jobs?queue=reports").text)) == sorted(report)
    assert sorted(_ids(dash.get("/jobs?task=shop.mail").text)) == sorted(mail)
    assert _ids(dash.get("/jobs?state=failed").text) == [failed]
    assert _ids(dash.get("/jobs?q=ADA@example").text) == [failed]
    assert _ids(dash.get("/jobs?q=ada%25").text) == []  # % is a character, not a wildcard
    assert _ids(dash.get("/jobs?queue=reports&q=ada").text) == []


def test_search_reads_a_bounded_stretch_and_continues_where_it_stopped(
    app: conveyor.Conveyor,
) -> None:
    (needle,) = app.enqueue_many([conveyor.JobSpec(task="shop.work", args_json='{"w": "Needle"}')])
    _enqueue(app, 30)
    client = app.client()
    page = client.page_jobs(search="needle", scan_limit=10, limit=5)
    assert (page.jobs, page.scanned) == ([], 10)
    pages = 1
    while not page.jobs and page.next_before_id is not None:
        page = client.page_jobs(
            search="needle", before_id=page.next_before_id, scan_limit=10, limit=5
        )
        pages += 1
    assert [j.id for j in page.jobs] == [needle]
    assert pages == 4  # 31 jobs, 10 read per page
    assert page.next_before_id is None
    assert client.list_jobs(search="nothing like this") == []


def test_job_page_shows_args_attempts_tracebacks_and_timeline(
    dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    job_id = insert_finished(conn, args={"order_id": 42, "email": "ada@example.com"}, attempts=3)
    html = dash.get(f"/jobs/{job_id}").text
    assert "&#34;order_id&#34;: 42" in html or '"order_id": 42' in html
    assert "3 of 3" in html
    assert html.count('<pre class="tb">') == 3  # every attempt's traceback
    assert TRACEBACK.splitlines()[1].strip().replace('"', "&#34;") in html
    assert "2026-11-28 10:01:00.000 UTC" in html  # each error's time
    assert "attempt 1 failed" in html and "attempt 3 failed" in html and ">failed<" in html
    assert "Retry" in html and "Delete" in html


def test_missing_job_is_a_404(dash: TestClient) -> None:
    response = dash.get("/jobs/987654321")
    assert response.status_code == 404
    assert "no job with id 987654321" in response.text


def test_cancel_delete_and_retry_all_failed_of_a_task(
    app: conveyor.Conveyor, dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    (waiting,) = _enqueue(app, 1)
    done = insert_finished(conn, state="completed")
    of_task = [insert_finished(conn, task="shop.charge") for _ in range(3)]
    other = insert_finished(conn, task="shop.refund")
    token = csrf_token(dash.get("/").text)

    page = dash.post(f"/jobs/{waiting}/cancel", data={"csrf_token": token}, headers=ORIGIN)
    assert f"Job {waiting} cancelled." in page.text
    assert state_of(conn, waiting) == "cancelled"

    page = dash.post(f"/jobs/{done}/delete", data={"csrf_token": token}, headers=ORIGIN)
    assert f"Job {done} deleted." in page.text
    assert state_of(conn, done) is None

    page = dash.post(
        "/jobs/retry-failed",
        data={"csrf_token": token, "task": "shop.charge", "queue": ""},
        headers=ORIGIN,
    )
    assert "Retried 3 failed job(s) of task shop.charge." in page.text
    assert [state_of(conn, i) for i in of_task] == ["available"] * 3
    assert state_of(conn, other) == "failed"


def test_a_refused_action_says_why(dash: TestClient, conn: psycopg.Connection[Any]) -> None:
    done = insert_finished(conn, state="completed")
    token = csrf_token(dash.get("/").text)
    page = dash.post(f"/jobs/{done}/cancel", data={"csrf_token": token}, headers=ORIGIN)
    assert f"Job {done} was not cancelled" in page.text
    assert state_of(conn, done) == "completed"


def test_mounted_under_a_prefix_every_link_and_redirect_keeps_it(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    failed = insert_finished(conn)
    host = Starlette(routes=[Mount("/admin/queue", create_app(app, token="t0ken"))])
    with TestClient(host) as client:
        to_login = client.get(
            "/admin/queue/jobs", headers={"accept": "text/html"}, follow_redirects=False
        )
        assert to_login.headers["location"] == "/admin/queue/login?next=%2Fjobs"
        signed_in = client.post(
            "/admin/queue/login",
            data={"token": "t0ken", "next": "/jobs"},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert signed_in.headers["location"] == "/admin/queue/jobs"
        assert "Path=/admin/queue" in signed_in.headers["set-cookie"]
        html = client.get("/admin/queue/jobs").text
        assert f'href="/admin/queue/jobs/{failed}"' in html
        assert 'href="/jobs' not in html
        token = csrf_token(client.get(f"/admin/queue/jobs/{failed}").text)
        retried = client.post(
            f"/admin/queue/jobs/{failed}/retry",
            data={"csrf_token": token},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert retried.headers["location"] == f"/admin/queue/jobs/{failed}"
    assert state_of(conn, failed) == "available"


def test_retry_all_failed_needs_a_task_or_a_queue(
    dash: TestClient, conn: psycopg.Connection[Any]
) -> None:
    failed = insert_finished(conn)
    token = csrf_token(dash.get("/").text)
    page = dash.post("/jobs/retry-failed", data={"csrf_token": token}, headers=ORIGIN)
    assert "nothing was retried" in page.text
    assert state_of(conn, failed) == "failed"


def test_job_page_shows_the_correlation_id(app: conveyor.Conveyor, dash: TestClient) -> None:
    (job_id,) = app.enqueue_many(
        [conveyor.JobSpec(task="shop.work", args_json='{"n": 1}', correlation_id="req-7f3a")]
    )
    assert '<code id="correlation-id">req-7f3a</code>' in dash.get(f"/jobs/{job_id}").text
    (found,) = app.client().page_jobs(search='"n": 1').jobs
    assert getattr(found, "correlation_id", None) == "req-7f3a"


def test_pause_a_queue_whose_name_holds_a_slash(app: conveyor.Conveyor, dash: TestClient) -> None:
    _enqueue(app, 1, queue="tenant/acme")
    html = dash.get("/").text
    token = csrf_token(html)
    action = re.search(r'action="([^"]*/pause)"', html)
    assert action is not None
    page = dash.post(action.group(1), data={"csrf_token": token}, headers=ORIGIN).text
    assert "Queue tenant/acme paused" in page
    assert {q.name: q.paused for q in app.client().queues()}["tenant/acme"] is True
