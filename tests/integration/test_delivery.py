"""Delivery to a real local server: every answer ends the job in the state the contract says,
signatures verify with the Standard Webhooks reference library, private addresses are refused
unless allowed. Each test runs on both paths: `http://` through aiohttp (tests/delivery_server.py)
and `https://` through the HTTP/2 client to a Node server that negotiates h2 (tests/tls_server.py);
test_delivery_http2.py has what only the second path does."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from standardwebhooks import Webhook

import conveyor
from conveyor.endpoints import generate_secret
from tests.delivery_server import DeliveryServer, delivery_server
from tests.helpers import eventually, fast_config, running_worker
from tests.tls_server import TlsServer, tls_server

LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture(params=["http1", "h2"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DeliveryServer | TlsServer]:
    if request.param == "http1":
        async with delivery_server() as running:
            yield running
        return
    async with tls_server(tmp_path) as secure:
        # the workers of the test trust the server's test CA
        monkeypatch.setenv("CONVEYOR_DELIVERY_CA_FILE", secure.ca_file)
        yield secure


def _enqueue(conn: psycopg.Connection[Any], task: str, args: str = "{}") -> int:
    row = conn.execute("SELECT conveyor.enqueue(%s, %s::jsonb)", (task, args)).fetchone()
    assert row is not None
    return int(row[0])


async def _ends(app: conveyor.Conveyor, job_id: int, *states: str) -> conveyor.Job:
    client = app.async_client()

    async def settled() -> conveyor.Job | None:
        job = await client.get_job(job_id)
        # a retried job is available again at once: wait for its first attempt's error too
        return job if str(job.state) in states and (job.errors or "completed" in states) else None

    return await eventually(settled)


async def test_a_2xx_completes_with_the_json_answer_as_result_signed_for_every_secret(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: DeliveryServer | TlsServer
) -> None:
    first, second = generate_secret(), "a plain string secret"
    app.client().add_endpoint("receipt", server.url("/ok"), (first, second))
    job_id = _enqueue(conn, "receipt", '{"order_id": 42}')
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)) as worker:
        job = await _ends(app, job_id, "completed")
    assert job.result == {"received": True}
    registry = worker.metrics.registry
    labels = {"endpoint": "receipt", "status_class": "2xx"}
    assert registry.get_sample_value("conveyor_deliveries_total", labels) == 1
    count = registry.get_sample_value(
        "conveyor_delivery_duration_seconds_count", {"endpoint": "receipt"}
    )
    assert count == 1
    (request,) = server.bodies("/ok")
    # both secrets sign: the reference library accepts the request under either
    Webhook(first).verify(request.body, request.headers)
    Webhook(second.encode()).verify(request.body, request.headers)
    body = json.loads(request.body)
    assert body["id"] == job_id and body["task"] == "receipt" and body["attempt"] == 1
    assert body["args"] == {"order_id": 42} and body["queue"] == "default"
    assert body["max_attempts"] == 10 and body["correlation_id"] is None
    assert body["created_at"].startswith(str(job.created_at.year))
    assert request.headers["webhook-id"] == f"job_{job_id}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"
    assert "Conveyor" in request.headers["user-agent"]
    assert request.version == ("2.0" if isinstance(server, TlsServer) else "1.1")


async def test_a_500_is_retried_with_the_same_webhook_id_and_then_completes(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: DeliveryServer | TlsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.client().add_endpoint("flaky", server.url("/flaky"), "s")
    job_id = _enqueue(conn, "flaky")
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        job = await _ends(app, job_id, "completed")
    (retrying,) = [r for r in caplog.records if getattr(r, "outcome", None) == "retrying"]
    assert retrying.http_status == 500 and retrying.job_id == job_id  # type: ignore[attr-defined]
    (error,) = job.errors
    assert (error["status"], error["body"], error["attempt"]) == (500, "boom", 1)
    assert error["duration_ms"] >= 0 and "500" in error["message"]
    ids = {r.headers["webhook-id"] for r in server.bodies("/flaky")}
    assert ids == {f"job_{job_id}"} and len(server.bodies("/flaky")) == 2


async def test_a_429_is_retried_at_its_retry_after(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: DeliveryServer | TlsServer
) -> None:
    app.client().add_endpoint("busy", server.url("/busy"), "s")
    job_id = _enqueue(conn, "busy")
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        job = await _ends(app, job_id, "completed")
    (error,) = job.errors
    assert error["status"] == 429 and "Retry-After: 1" in error["message"]
    first, again = server.bodies("/busy")
    waited = int(again.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"])
    assert waited >= 1  # whole seconds: the second POST came at least 1 s after the first


@pytest.mark.parametrize(
    ("path", "state", "status", "words"),
    [
        ("/gone", "cancelled", 410, "410 Gone"),
        ("/missing", "failed", 404, "answered 404"),
        ("/redirect", "failed", 302, "https://example.com/new"),
    ],
)
async def test_410_cancels_other_4xx_and_redirects_fail_at_once(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: DeliveryServer | TlsServer,
    path: str,
    state: str,
    status: int,
    words: str,
) -> None:
    app.client().add_endpoint("e", server.url(path), "s")
    job_id = _enqueue(conn, "e")
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        job = await _ends(app, job_id, state)
    (error,) = job.errors
    assert error["status"] == status and words in error["message"]
    assert len(server.bodies(path)) == 1  # never followed, never retried


async def test_other_4xx_retry_when_the_endpoint_says_so(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: DeliveryServer | TlsServer
) -> None:
    app.client().add_endpoint("e", server.url("/missing"), "s", retry_4xx=True)
    job_id = _enqueue(conn, "e")
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        job = await _ends(app, job_id, "retryable", "available")
    assert job.errors[0]["status"] == 404


@pytest.mark.parametrize(
    ("path", "kind", "words"),
    [
        ("/slow", "Timeout", "0.5s timeout"),
        # aiohttp: ServerDisconnectedError; httpcore2: RemoteProtocolError (h2 GOAWAY)
        ("/close", "ConnectionError", "Error with https?://127.0.0.1:[0-9]+/close: "),
    ],
)
async def test_timeouts_and_closed_connections_are_retried(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: DeliveryServer | TlsServer,
    path: str,
    kind: str,
    words: str,
) -> None:
    app.client().add_endpoint("e", server.url(path), "s", timeout=0.5)
    job_id = _enqueue(conn, "e")
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        job = await _ends(app, job_id, "retryable", "available")
    error = job.errors[0]
    assert error["type"] == f"conveyor.delivery.{kind}" and re.search(words, error["message"])
    assert error["status"] is None


async def test_a_loopback_url_is_refused_without_the_allow_list_and_the_worker_goes_on(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: DeliveryServer | TlsServer
) -> None:
    app.client().add_endpoint("local", server.url("/ok"), "s")
    job_id = _enqueue(conn, "local")
    async with running_worker(app, fast_config()):
        job = await _ends(app, job_id, "failed")
        again = await _ends(app, _enqueue(conn, "local"), "failed")
    message = job.errors[0]["message"]
    assert "refused to connect to 127.0.0.1" in message and "loopback" in message
    assert "--allow-network 127.0.0.1/32" in message and "CONVEYOR_ALLOW_NETWORKS" in message
    assert again.errors and server.requests == []


async def test_a_name_reaches_only_its_allowed_addresses(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: DeliveryServer | TlsServer
) -> None:
    # localhost may resolve to ::1 too: only 127.0.0.1 is allowed, and the server is there
    url = server.url("/ok").replace("127.0.0.1", "localhost")
    app.client().add_endpoint("by-name", url, "s")
    refused_id = _enqueue(conn, "by-name")
    async with running_worker(app, fast_config()):
        refused = await _ends(app, refused_id, "failed")
    assert "localhost: refused to connect to" in refused.errors[0]["message"]
    assert server.requests == []
    async with running_worker(app, fast_config(allow_networks=("127.0.0.1/32",))):
        await _ends(app, _enqueue(conn, "by-name"), "completed")


async def test_hostile_endpoints_fail_alone_with_clear_errors(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: DeliveryServer | TlsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVEYOR_TEST_MISSING_SECRET", raising=False)
    client = app.client()
    client.add_endpoint("no-secret", server.url("/ok"), "env:CONVEYOR_TEST_MISSING_SECRET")
    client.add_endpoint("huge", server.url("/huge"), "s")
    client.add_endpoint("nowhere", "http://no-such-host.invalid/x", "s")
    client.add_endpoint("fine", server.url("/ok"), "s")
    conn.execute("UPDATE conveyor.endpoint SET url = 'http://[::1' WHERE name = 'fine'")
    client.add_endpoint("good", server.url("/ok"), "s")
    ids = {name: _enqueue(conn, name) for name in ("no-secret", "huge", "nowhere", "fine", "good")}
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        assert (await _ends(app, ids["good"], "completed")).result == {"received": True}
        missing = await _ends(app, ids["no-secret"], "failed")
        huge = await _ends(app, ids["huge"], "retryable", "available")
        nowhere = await _ends(app, ids["nowhere"], "retryable", "available")
        bad_url = await _ends(app, ids["fine"], "failed")
    assert "no environment variable CONVEYOR_TEST_MISSING_SECRET" in missing.errors[0]["message"]
    assert huge.errors[0]["status"] == 500 and len(huge.errors[0]["body"]) <= 1025
    assert "no-such-host.invalid" in nowhere.errors[0]["message"]
    assert bad_url.errors[0]["type"] == "conveyor.delivery.BadEndpoint"
    assert "http://[::1" in bad_url.errors[0]["message"]
