"""What only the HTTP/2 path does, against a Node TLS server that offers h2 and http/1.1 by
ALPN: `https` goes over HTTP/2 by default and over aiohttp's HTTP/1.1 with `http2=False`,
concurrent deliveries to one host share one connection, and a certificate the worker does not
trust fails the attempt like any connection error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from standardwebhooks import Webhook

import conveyor
from conveyor.endpoints import Endpoint, generate_secret
from conveyor.job import Job, JobState
from conveyor.worker.delivery import AllowList, Deliverer, negotiated
from conveyor.worker.outcome import Failed
from tests.helpers import eventually, fast_config, running_worker
from tests.integration.test_delivery import LOOPBACK, _ends, _enqueue
from tests.tls_server import TlsServer, tls_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    async with tls_server(tmp_path) as running:
        yield running


@pytest.mark.parametrize(("http2", "version"), [(True, "2.0"), (False, "1.1")])
async def test_https_goes_over_http2_when_offered_and_over_http11_when_turned_off(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: TlsServer,
    http2: bool,
    version: str,
) -> None:
    secret = generate_secret()
    app.client().add_endpoint("v", server.url("/version"), secret)
    job_id = _enqueue(conn, "v", '{"n": 1}')
    config = fast_config(allow_networks=LOOPBACK, ca_file=server.ca_file, http2=http2)
    async with running_worker(app, config):
        job = await _ends(app, job_id, "completed")
    assert job.result == {"http_version": version}
    (request,) = await eventually(lambda: server.bodies("/version") or None)
    assert request.version == version
    Webhook(secret).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == f"job_{job_id}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"
    assert "Conveyor" in request.headers["user-agent"]


async def test_concurrent_deliveries_to_one_host_share_one_http2_connection(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: TlsServer
) -> None:
    app.client().add_endpoint("ok", server.url("/ok"), "s")
    ids = [_enqueue(conn, "ok") for _ in range(40)]
    config = fast_config(allow_networks=LOOPBACK, ca_file=server.ca_file, concurrency=20)
    async with running_worker(app, config):
        for job_id in ids:
            await _ends(app, job_id, "completed")
    await eventually(lambda: len(server.requests) == 40 or None)
    assert {r.version for r in server.requests} == {"2.0"}
    assert server.connections == 1


async def test_a_certificate_the_worker_does_not_trust_is_a_retried_connection_error(
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: TlsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVEYOR_DELIVERY_CA_FILE", raising=False)
    app.client().add_endpoint("ok", server.url("/ok"), "s")
    job_id = _enqueue(conn, "ok")
    async with running_worker(app, fast_config(allow_networks=LOOPBACK)):
        job = await _ends(app, job_id, "retryable", "available")
    error = job.errors[0]
    assert error["type"] == "conveyor.delivery.ConnectionError"
    assert "CERTIFICATE_VERIFY_FAILED" in error["message"]
    await asyncio.sleep(0.1)
    assert server.requests == []


async def test_cut_off_http2_answers_retire_their_connection_before_it_stalls(
    server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(negotiated, "MAX_TRUNCATED_PER_CONNECTION", 2)
    deliverer = Deliverer(
        allow=AllowList.parse(LOOPBACK, environ={}), ssl_context=server.ssl_context()
    )
    outcomes: list[tuple[str, str]] = []
    try:
        for path in ["/huge", "/huge", "/ok", "/ok", "/huge", "/huge", "/ok", "/ok"]:
            deliverer.update([Endpoint("e", server.url(path), ("s",), timeout=5)])
            outcome = await deliverer.deliver(_job())
            kind = outcome.error["type"] if isinstance(outcome, Failed) else "completed"
            outcomes.append((path, kind.removeprefix("conveyor.delivery.")))
    finally:
        await deliverer.aclose()
    # every cut-off answer is still a 500 with its first bytes; after each second one the
    # connection is closed: the next delivery fails (retried), the one after gets a new one
    assert outcomes == [
        ("/huge", "HTTP500"),
        ("/huge", "HTTP500"),
        ("/ok", "ConnectionError"),
        ("/ok", "completed"),
        ("/huge", "HTTP500"),
        ("/huge", "HTTP500"),
        ("/ok", "ConnectionError"),
        ("/ok", "completed"),
    ]
    assert server.connections == 3


def _job() -> Job:
    now = datetime.now(UTC)
    return Job(
        id=1, task="e", queue="default", state=JobState("running"), priority=0, attempt=1,
        max_attempts=10, args={}, errors=[], unique_key=None, timeout_seconds=None,
        created_at=now, run_at=now, attempted_at=now, finished_at=None, result=None,
        worker_id=None,
    )  # fmt: skip
