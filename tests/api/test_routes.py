"""Every route of the REST API against the test database: what it does, and its refusals."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql
from starlette.testclient import TestClient

import conveyor
from conveyor.api import create_app
from tests.api.conftest import LOOPBACK, Tokens, bearer
from tests.conftest import _with_dbname

PROBLEM = "application/problem+json"


def _enqueue(api: TestClient, secret: str, **body: Any) -> dict[str, Any]:
    answer = api.post(
        "/v1/jobs", json={"task": "shop.send_receipt", **body}, headers=bearer(secret)
    )
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


def test_enqueue_returns_201_and_the_job_is_stored(api: TestClient, tokens: Tokens) -> None:
    answer = api.post(
        "/v1/jobs",
        json={"task": "shop.send_receipt", "args": {"order": 7}, "queue": "mail", "priority": 3},
        headers=bearer(tokens.enqueue),
    )
    assert answer.status_code == 201
    assert answer.json()["created"] is True
    job = api.get(f"/v1/jobs/{answer.json()['id']}", headers=bearer(tokens.read)).json()
    assert (job["task"], job["queue"], job["priority"], job["args"]) == (
        "shop.send_receipt",
        "mail",
        3,
        {"order": 7},
    )
    assert job["state"] == "available"


def test_an_existing_unique_key_answers_200_with_created_false(
    api: TestClient, tokens: Tokens
) -> None:
    first = _enqueue(api, tokens.enqueue, unique_key="order-7")
    again = api.post(
        "/v1/jobs",
        json={"task": "shop.send_receipt", "unique_key": "order-7"},
        headers=bearer(tokens.enqueue),
    )
    assert again.status_code == 200
    assert again.json() == {"id": first["id"], "created": False}


def test_delay_schedules_the_job_and_run_at_with_delay_is_refused(
    api: TestClient, tokens: Tokens
) -> None:
    job = _enqueue(api, tokens.enqueue, delay=3600)
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(tokens.read)).json()["state"] == (
        "scheduled"
    )
    both = api.post(
        "/v1/jobs",
        json={"task": "t", "delay": 1, "run_at": "2030-01-01T00:00:00Z"},
        headers=bearer(tokens.enqueue),
    )
    assert both.status_code == 422
    assert "run_at or delay, not both" in both.json()["detail"]


def test_a_declared_task_gets_its_queue_and_argument_checks(
    app: conveyor.Conveyor, api: TestClient, tokens: Tokens
) -> None:
    @app.task(name="billing.charge", queue="billing")
    def charge(order: int) -> None: ...

    made = _enqueue(api, tokens.enqueue, task="billing.charge", args={"order": 1})
    assert api.get(f"/v1/jobs/{made['id']}", headers=bearer(tokens.read)).json()["queue"] == (
        "billing"
    )
    wrong = api.post(
        "/v1/jobs",
        json={"task": "billing.charge", "args": {"nope": 1}},
        headers=bearer(tokens.enqueue),
    )
    assert wrong.status_code == 422
    assert "nope" in wrong.json()["detail"]


def test_unknown_fields_are_refused_naming_them(api: TestClient, tokens: Tokens) -> None:
    answer = api.post(
        "/v1/jobs", json={"task": "t", "queu": "mail"}, headers=bearer(tokens.enqueue)
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"].endswith("/invalid-request")
    assert problem["errors"] == [
        {"location": "body.queu", "message": "Extra inputs are not permitted"}
    ]


def test_bad_json_and_a_missing_content_type_are_refused(api: TestClient, tokens: Tokens) -> None:
    broken = api.post(
        "/v1/jobs",
        content=b'{"task": ',
        headers={**bearer(tokens.enqueue), "content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["detail"]
    text = api.post("/v1/jobs", content=b"task=t", headers=bearer(tokens.enqueue))
    assert text.status_code == 415


def test_batch_is_all_or_nothing(
    api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any]
) -> None:
    good = api.post(
        "/v1/jobs/batch",
        json={"jobs": [{"task": "a", "args": {"n": 1}}, {"task": "b"}]},
        headers=bearer(tokens.enqueue),
    )
    assert good.status_code == 201
    assert [j["created"] for j in good.json()["jobs"]] == [True, True]
    bad = api.post(
        "/v1/jobs/batch",
        json={"jobs": [{"task": "c"}, {"task": "d", "args": {"s": "nul\u0000"}}]},
        headers=bearer(tokens.enqueue),
    )
    assert bad.status_code == 422
    assert "NUL" in bad.json()["detail"]
    assert conn.execute("SELECT count(*) FROM conveyor.job").fetchone() == (2,)


def test_list_pages_with_before_id_and_filters(api: TestClient, tokens: Tokens) -> None:
    ids = [_enqueue(api, tokens.enqueue, queue="q1" if n % 2 else "q2")["id"] for n in range(5)]
    first = api.get("/v1/jobs?limit=2", headers=bearer(tokens.read)).json()
    assert [j["id"] for j in first["jobs"]] == ids[:-3:-1]
    after = first["next_before_id"]
    rest = api.get(f"/v1/jobs?limit=10&before_id={after}", headers=bearer(tokens.read)).json()
    assert [j["id"] for j in rest["jobs"]] == ids[2::-1]
    assert rest["next_before_id"] is None
    q1 = api.get("/v1/jobs?queue=q1", headers=bearer(tokens.read)).json()["jobs"]
    assert {j["queue"] for j in q1} == {"q1"} and len(q1) == 2
    bad = api.get("/v1/jobs?state=lost", headers=bearer(tokens.read))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["location"] == "query.state"


def test_get_an_unknown_job_is_a_404_problem(api: TestClient, tokens: Tokens) -> None:
    answer = api.get("/v1/jobs/999999", headers=bearer(tokens.read))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM
    assert "no job with id 999999" in answer.json()["detail"]
    assert api.get("/v1/jobs/abc", headers=bearer(tokens.read)).status_code == 422


def test_cancel_then_retry(api: TestClient, tokens: Tokens) -> None:
    job = _enqueue(api, tokens.enqueue)
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.admin))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = api.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.admin))
    assert again.status_code == 409
    assert "has finished (cancelled)" in again.json()["detail"]
    retried = api.post(f"/v1/jobs/{job['id']}/retry", headers=bearer(tokens.admin))
    assert retried.status_code == 200 and retried.json()["state"] == "available"
    twice = api.post(f"/v1/jobs/{job['id']}/retry", headers=bearer(tokens.admin))
    assert twice.status_code == 409
    assert api.post("/v1/jobs/424242/retry", headers=bearer(tokens.admin)).status_code == 404


def test_queues_pause_and_resume(api: TestClient, tokens: Tokens) -> None:
    _enqueue(api, tokens.enqueue, queue="mail")
    paused = api.post("/v1/queues/mail/pause", headers=bearer(tokens.admin))
    assert paused.json() == {"name": "mail", "paused": True}
    queues = api.get("/v1/queues", headers=bearer(tokens.read)).json()["queues"]
    mail = next(q for q in queues if q["name"] == "mail")
    assert (mail["paused"], mail["waiting"]) == (True, 1)
    resumed = api.post("/v1/queues/mail/resume", headers=bearer(tokens.admin))
    assert resumed.json() == {"name": "mail", "paused": False}
    queues = api.get("/v1/queues", headers=bearer(tokens.read)).json()["queues"]
    assert next(q for q in queues if q["name"] == "mail")["paused"] is False


def test_endpoints_add_list_get_remove(api: TestClient, tokens: Tokens) -> None:
    body = {"name": "send-receipt", "url": "https://shop.example/hook", "secret": "env:HOOK_KEY"}
    added = api.post("/v1/endpoints", json=body, headers=bearer(tokens.admin))
    assert added.status_code == 201
    assert added.json()["secrets"] == ["env:HOOK_KEY"]
    assert api.post("/v1/endpoints", json=body, headers=bearer(tokens.admin)).status_code == 409
    listed = api.get("/v1/endpoints", headers=bearer(tokens.read)).json()["endpoints"]
    assert [e["name"] for e in listed] == ["send-receipt"]
    one = api.get("/v1/endpoints/send-receipt", headers=bearer(tokens.read)).json()
    assert one["url"] == "https://shop.example/hook"
    gone = api.delete("/v1/endpoints/send-receipt", headers=bearer(tokens.admin))
    assert gone.status_code == 204 and gone.content == b""
    assert api.get("/v1/endpoints/send-receipt", headers=bearer(tokens.read)).status_code == 404
    literal = {**body, "secret": "s3cret-value-long"}
    shown = api.post("/v1/endpoints", json=literal, headers=bearer(tokens.admin)).json()
    assert "s3cret-value-long" not in str(shown)


def test_workflow_runs_start_read_cancel_and_events(api: TestClient, tokens: Tokens) -> None:
    started = api.post(
        "/v1/workflows/checkout/runs",
        json={"args": {"order": 1}, "run_id": "order-1"},
        headers=bearer(tokens.enqueue),
    )
    assert started.status_code == 201 and started.json() == {"id": "order-1"}
    same = api.post(
        "/v1/workflows/checkout/runs",
        json={"args": {"order": 1}, "run_id": "order-1"},
        headers=bearer(tokens.enqueue),
    )
    assert same.json() == {"id": "order-1"}
    run = api.get("/v1/workflow-runs/order-1", headers=bearer(tokens.read)).json()
    assert (run["workflow"], run["state"], run["args"], run["steps"]) == (
        "checkout",
        "running",
        {"order": 1},
        [],
    )
    event = api.post(
        "/v1/events",
        json={"name": "approved", "key": "order-1", "payload": {"by": "ann"}},
        headers=bearer(tokens.enqueue),
    )
    assert event.status_code == 201 and event.json()["id"] > 0
    cancelled = api.post("/v1/workflow-runs/order-1/cancel", headers=bearer(tokens.admin))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = api.post("/v1/workflow-runs/order-1/cancel", headers=bearer(tokens.admin))
    assert again.status_code == 409
    missing = api.get("/v1/workflow-runs/nope", headers=bearer(tokens.read))
    assert missing.status_code == 404


def test_correlation_id_comes_from_x_request_id_or_traceparent(
    api: TestClient, tokens: Tokens
) -> None:
    made = api.post(
        "/v1/jobs", json={"task": "t"}, headers={**bearer(tokens.enqueue), "X-Request-Id": "req-42"}
    )
    assert made.headers["x-request-id"] == "req-42"
    job = api.get(f"/v1/jobs/{made.json()['id']}", headers=bearer(tokens.read)).json()
    assert job["correlation_id"] == "req-42"
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = api.post(
        "/v1/jobs",
        json={"task": "t"},
        headers={**bearer(tokens.enqueue), "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
    )
    job = api.get(f"/v1/jobs/{traced.json()['id']}", headers=bearer(tokens.read)).json()
    assert job["correlation_id"] == trace
    own = _enqueue(api, tokens.enqueue, correlation_id="mine")
    assert (
        api.get(f"/v1/jobs/{own['id']}", headers=bearer(tokens.read)).json()["correlation_id"]
        == "mine"
    )


def test_unknown_routes_and_methods_are_problems(api: TestClient, tokens: Tokens) -> None:
    missing = api.get("/v1/nothing", headers=bearer(tokens.read))
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    wrong = api.put("/v1/jobs", headers=bearer(tokens.read))
    assert (wrong.status_code, wrong.headers["content-type"]) == (405, PROBLEM)


def test_metrics_count_requests_by_route_and_status(api: TestClient, tokens: Tokens) -> None:
    _enqueue(api, tokens.enqueue)
    api.get("/v1/jobs/999999", headers=bearer(tokens.read))
    text = api.get("/metrics", headers=bearer(tokens.read)).text
    assert 'conveyor_api_requests_total{route="/v1/jobs",status="201"} 1.0' in text
    assert 'conveyor_api_requests_total{route="/v1/jobs/{id}",status="404"} 1.0' in text
    assert 'conveyor_api_request_duration_seconds_count{route="/v1/jobs"} 1.0' in text


def test_a_database_without_the_schema_answers_503_saying_to_migrate(admin_url: str) -> None:
    name = f"conveyor_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        app = conveyor.Conveyor(_with_dbname(admin_url, name), auto_migrate=False)
        with TestClient(create_app(app), **LOOPBACK) as api:  # type: ignore[arg-type]
            answer = api.get("/v1/queues")
        app.close()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    assert answer.status_code == 503
    assert answer.json()["type"].endswith("/schema-outdated")
    assert "conveyor migrate" in answer.json()["detail"]


def test_mounted_under_a_prefix_its_document_names_the_prefix(
    app: conveyor.Conveyor, tokens: Tokens
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    web = Starlette(routes=[Mount("/jobs-api", create_app(app, rate_limit=None))])
    with TestClient(web) as client:
        document = client.get("/jobs-api/openapi.json").json()
        assert document["servers"] == [{"url": "/jobs-api"}]
        made = client.post("/jobs-api/v1/jobs", json={"task": "t"}, headers=bearer(tokens.enqueue))
        assert made.status_code == 201
        job = client.get(f"/jobs-api/v1/jobs/{made.json()['id']}", headers=bearer(tokens.read))
        assert job.json()["task"] == "t"
