"""Who may call the API and how much: scopes, revocation, the loopback rule, body limits, the
per-token rate limit, and Idempotency-Key replays."""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.api import create_app, guard
from tests.api.conftest import Tokens, bearer
from tests.helpers import wait_until


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_enqueue_token_cannot_cancel_and_a_read_token_cannot_enqueue(
    api: TestClient, tokens: Tokens
) -> None:
    job = api.post("/v1/jobs", json={"task": "t"}, headers=bearer(tokens.enqueue)).json()
    refused = api.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens.enqueue))
    assert refused.status_code == 403
    assert "needs the 'admin' scope" in refused.json()["detail"]
    read = api.post("/v1/jobs", json={"task": "t"}, headers=bearer(tokens.read))
    assert read.status_code == 403
    assert "--scope enqueue" in read.json()["detail"]
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(tokens.enqueue)).status_code == 403
    # admin covers enqueue and read
    assert api.post("/v1/jobs", json={"task": "t"}, headers=bearer(tokens.admin)).status_code == 201
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(tokens.admin)).status_code == 200


def test_a_token_with_two_scopes_has_both(app: conveyor.Conveyor, api: TestClient) -> None:
    _, secret = app.client().create_token("app", ["enqueue", "read"])
    job = api.post("/v1/jobs", json={"task": "t"}, headers=bearer(secret)).json()
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(secret)).status_code == 200
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(secret)).status_code == 403


def test_a_revoked_token_fails_on_its_next_request(
    app: conveyor.Conveyor, api: TestClient, tokens: Tokens
) -> None:
    assert api.get("/v1/queues", headers=bearer(tokens.read)).status_code == 200
    assert app.client().revoke_token("reporting") is True
    refused = api.get("/v1/queues", headers=bearer(tokens.read))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="conveyor"'
    assert app.client().revoke_token("reporting") is False


def test_missing_malformed_and_unknown_tokens_are_401(api: TestClient, tokens: Tokens) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("cvk_not-a-token")):
        answer = api.get("/v1/queues", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["content-type"] == "application/problem+json"


def test_only_the_hash_is_stored_and_compared_in_constant_time(
    api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = conn.execute("SELECT prefix, hash FROM conveyor.api_token").fetchall()
    assert all(tokens.read not in str(row) for row in rows)
    compared: list[tuple[bytes, bytes]] = []
    real = guard.same_hash

    def spy(given: bytes, stored: bytes) -> bool:
        compared.append((given, stored))
        return real(given, stored)

    monkeypatch.setattr(guard, "same_hash", spy)
    assert api.get("/v1/queues", headers=bearer(tokens.read)).status_code == 200
    assert len(compared) == 1 and compared[0][0] == compared[0][1]


def test_without_any_token_only_loopback_callers_are_answered(
    app: conveyor.Conveyor, api: TestClient, local_api: TestClient
) -> None:
    assert local_api.get("/v1/queues").status_code == 200
    assert api.get("/v1/queues").status_code == 401  # from another address
    rebound = local_api.get("/v1/queues", headers={"host": "evil.example"})
    assert rebound.status_code == 401  # a page whose domain was rebound to 127.0.0.1
    app.client().create_token("ops", ["admin"])
    assert local_api.get("/v1/queues").status_code == 401  # once a token exists, always one


def test_a_body_over_the_limit_is_413(app: conveyor.Conveyor, tokens: Tokens) -> None:
    with TestClient(create_app(app, rate_limit=None, max_body_bytes=2000)) as api:
        big = {"task": "t", "args": {"text": "x" * 3000}}
        answer = api.post("/v1/jobs", json=big, headers=bearer(tokens.enqueue))
        assert answer.status_code == 413
        assert "over the 2,000-byte limit" in answer.json()["detail"]

        def chunks() -> Any:  # no Content-Length: counted while read
            yield b'{"task": "t", "args": {"text": "'
            yield b"y" * 3000
            yield b'"}}'

        streamed = api.post(
            "/v1/jobs",
            content=chunks(),
            headers={**bearer(tokens.enqueue), "content-type": "application/json"},
        )
        assert streamed.status_code == 413


def test_args_over_the_payload_limit_are_422_naming_it(api: TestClient, tokens: Tokens) -> None:
    big = {"task": "t", "args": {"text": "x" * 70_000}}
    answer = api.post("/v1/jobs", json=big, headers=bearer(tokens.enqueue))
    assert answer.status_code == 422
    assert "over the 65,536-byte limit" in answer.json()["detail"]


def test_rate_limit_per_token_answers_429_with_retry_after(
    app: conveyor.Conveyor, tokens: Tokens
) -> None:
    clock = Clock()
    with TestClient(create_app(app, rate_limit=2, clock=clock)) as api:
        for _ in range(2):
            assert api.get("/v1/queues", headers=bearer(tokens.read)).status_code == 200
        limited = api.get("/v1/queues", headers=bearer(tokens.read))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        # another token has its own bucket
        assert api.get("/v1/queues", headers=bearer(tokens.admin)).status_code == 200
        clock.now += 0.5  # one request's worth
        assert api.get("/v1/queues", headers=bearer(tokens.read)).status_code == 200
        assert api.get("/v1/queues", headers=bearer(tokens.read)).status_code == 429


def test_an_idempotency_key_replays_the_first_response(
    api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any]
) -> None:
    headers = {**bearer(tokens.enqueue), "Idempotency-Key": "order-7-receipt"}
    body = {"task": "shop.send_receipt", "args": {"order": 7}}
    first = api.post("/v1/jobs", json=body, headers=headers)
    again = api.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert (first.headers["idempotent-replayed"], again.headers["idempotent-replayed"]) == (
        "false",
        "true",
    )
    assert conn.execute("SELECT count(*) FROM conveyor.job").fetchone() == (1,)
    other = api.post("/v1/jobs", json={**body, "args": {"order": 8}}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    # keys are per token: another caller's same key is its own
    mine = api.post("/v1/jobs", json=body, headers={**headers, **bearer(tokens.admin)})
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]


def test_an_idempotency_key_past_24_hours_runs_again(
    api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any]
) -> None:
    headers = {**bearer(tokens.enqueue), "Idempotency-Key": "k1"}
    first = api.post("/v1/jobs", json={"task": "t"}, headers=headers).json()
    conn.execute("UPDATE conveyor.api_idempotency SET created_at = now() - interval '25 hours'")
    later = api.post("/v1/jobs", json={"task": "t"}, headers=headers)
    assert later.headers["idempotent-replayed"] == "false"
    assert later.json()["id"] != first["id"]


def test_a_refused_request_stores_nothing_under_its_key(
    api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any]
) -> None:
    headers = {**bearer(tokens.admin), "Idempotency-Key": "cancel-1"}
    assert api.post("/v1/jobs/999/cancel", headers=headers).status_code == 404
    assert conn.execute("SELECT count(*) FROM conveyor.api_idempotency").fetchone() == (0,)


def test_the_pruner_deletes_idempotency_records_past_24_hours(
    app: conveyor.Conveyor, api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any]
) -> None:
    from conveyor._store.api import idempotency_prune
    from conveyor._store.runner import run

    api.post(
        "/v1/jobs", json={"task": "t"}, headers={**bearer(tokens.enqueue), "Idempotency-Key": "a"}
    )
    assert run(conn, idempotency_prune(None)) == 0
    conn.execute("UPDATE conveyor.api_idempotency SET created_at = now() - interval '25 hours'")
    assert run(conn, idempotency_prune(None)) == 1


def test_one_json_log_line_per_request_with_its_correlation_id(
    api: TestClient, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="conveyor.api"):
        api.post(
            "/v1/jobs",
            json={"task": "t"},
            headers={**bearer(tokens.enqueue), "X-Request-Id": "r-9"},
        )
    (record,) = [r for r in caplog.records if r.name == "conveyor.api"]
    from conveyor.logs import JsonLineFormatter

    line = json.loads(JsonLineFormatter().format(record))
    assert {k: line[k] for k in ("route", "status", "correlation_id", "token", "method")} == {
        "route": "/v1/jobs",
        "status": 201,
        "correlation_id": "r-9",
        "token": "edge",
        "method": "POST",
    }
    assert line["duration_ms"] >= 0


def test_a_request_whose_key_is_in_flight_waits_and_gets_the_first_response(
    db: str, api: TestClient, tokens: Tokens, conn: psycopg.Connection[Any]
) -> None:
    row = conn.execute("SELECT id FROM conveyor.api_token WHERE name = 'edge'").fetchone()
    assert row is not None
    raw = b'{"task": "t"}'
    fingerprint = hashlib.sha256(b"POST /v1/jobs\n" + raw).digest()
    headers = {
        **bearer(tokens.enqueue),
        "Idempotency-Key": "k-1",
        "content-type": "application/json",
    }
    with psycopg.connect(db) as first:  # the first request: its claim is not committed yet
        first.execute(
            "INSERT INTO conveyor.api_idempotency (token_id, key, fingerprint) VALUES (%s, %s, %s)",
            (row[0], "k-1", fingerprint),
        )
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(api.post, "/v1/jobs", content=raw, headers=headers)
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            wait_until(lambda: conn.execute(waiting).fetchone() == (1,), timeout=10)
            first.execute(
                "UPDATE conveyor.api_idempotency SET status = 201, body = %s",
                ('{"id": 7, "created": true}',),
            )
            first.commit()
            answer = later.result(timeout=10)
    assert (answer.status_code, answer.json()) == (201, {"id": 7, "created": True})
    assert answer.headers["idempotent-replayed"] == "true"
    assert conn.execute("SELECT count(*) FROM conveyor.job").fetchone() == (0,)
