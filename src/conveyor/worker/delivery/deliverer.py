"""Deliverer: the worker's pooled HTTP client and endpoint registry; POSTs one job, signed.

One `httpx2.AsyncClient` per worker: HTTP/1.1 keep-alive (HTTP/2 when the `h2` package is
installed and the server offers it), redirects never followed, proxies from the environment
ignored (a proxy would connect for us, past the address check), and every connection made
through `GuardedBackend`, which refuses private addresses the allow-list does not name.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx2

from conveyor import codec
from conveyor.endpoints import Endpoint, resolve_secret
from conveyor.errors import EndpointSecretError, RefusedAddressError
from conveyor.job import Job
from conveyor.metrics import WorkerMetrics
from conveyor.retry import RetryPolicy
from conveyor.worker.delivery.answer import Answer, Decide
from conveyor.worker.delivery.network import AllowList, GuardedBackend
from conveyor.worker.delivery.signing import signature_header
from conveyor.worker.outcome import Outcome

log = logging.getLogger("conveyor.delivery")

USER_AGENT = "Conveyor-Delivery/1 (+https://standardwebhooks.com)"


class Deliverer:
    """Delivers jobs whose task names an endpoint it knows; `update()` replaces the registry
    (the worker re-reads `conveyor.endpoint` with the queue controls)."""

    def __init__(
        self,
        *,
        allow: AllowList | None = None,
        metrics: WorkerMetrics | None = None,
        max_connections: int = 100,
        retry_policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        max_result_bytes: int = codec.DEFAULT_MAX_PAYLOAD_BYTES,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._metrics = metrics
        self._environ = os.environ if environ is None else environ
        self._max_result = max_result_bytes
        self._decide = Decide(
            retry_policy or RetryPolicy(), rng or random.Random(), max_result_bytes
        )
        http2 = importlib.util.find_spec("h2") is not None
        limits = httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        transport = httpx2.AsyncHTTPTransport(http2=http2, limits=limits, trust_env=False)
        # The pool hands its network backend to every connection it opens; ours checks the
        # address it connects to (httpx2 has no public setting for the backend).
        pool = transport._pool
        assert hasattr(pool, "_network_backend"), "httpcore2's pool layout changed"
        pool._network_backend = GuardedBackend(allow or AllowList())
        self._client = httpx2.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )

    @property
    def names(self) -> list[str]:
        """The endpoints this deliverer knows, by name."""
        return sorted(self._endpoints)

    def update(self, endpoints: Sequence[Endpoint]) -> bool:
        """Replace the registry; True when the set of names changed."""
        before = set(self._endpoints)
        self._endpoints = {e.name: e for e in endpoints}
        return before != set(self._endpoints)

    def serves(self, task: str) -> bool:
        """Whether jobs of `task` are deliveries."""
        return task in self._endpoints

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def deliver(self, job: Job) -> Outcome:
        """POST the job to its endpoint once; never raises (but for cancellation)."""
        endpoint = self._endpoints.get(job.task)
        started = time.monotonic()
        if endpoint is None:  # removed between the claim and now
            message = f"endpoint {job.task!r} was removed before the job could be delivered"
            return self._decide.failed(job, "UnknownEndpoint", message, 0.0, final=True)
        status: int | None = None
        try:
            if endpoint.problem is not None:
                raise BadEndpointError(
                    f"endpoint {endpoint.name!r} is unusable: {endpoint.problem}; fix it with"
                    f" `conveyor endpoint set {endpoint.name} ...`"
                )
            request = self._request(job, endpoint)
            answer = await self._send(endpoint, *request)
            status = answer.status
            return self._decide.answered(job, endpoint, answer, time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome
            kind, message, final = _failure(exc, endpoint)
            return self._decide.failed(job, kind, message, time.monotonic() - started, final=final)
        finally:
            if self._metrics is not None:
                self._metrics.delivered(endpoint.name, status, time.monotonic() - started)

    def _request(self, job: Job, endpoint: Endpoint) -> tuple[bytes, dict[str, str]]:
        keys = [resolve_secret(s, self._environ) for s in endpoint.secrets]
        body = delivery_body(job)
        message_id = f"job_{job.id}"
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            # an uncompressed answer: only its first bytes are read, and no bomb can inflate
            "accept-encoding": "identity",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, message_id, timestamp, body),
        }
        return body, headers

    async def _send(self, endpoint: Endpoint, body: bytes, headers: dict[str, str]) -> Answer:
        # httpx2's timeout bounds each step; this one bounds the whole exchange, so a server
        # that drips its answer a byte at a time cannot hold the attempt past the timeout
        async with asyncio.timeout(endpoint.timeout):
            request = self._client.build_request(
                "POST", endpoint.url, content=body, headers=headers, timeout=endpoint.timeout
            )
            response = await self._client.send(request, stream=True)
            try:
                limit = max(self._max_result, 1024)
                read = bytearray()
                truncated = False
                async for chunk in response.aiter_raw():
                    read += chunk
                    if len(read) > limit:
                        truncated = True
                        break
                return Answer(
                    status=response.status_code,
                    body=bytes(read[:limit]),
                    truncated=truncated,
                    content_type=response.headers.get("content-type", ""),
                    retry_after=response.headers.get("retry-after"),
                    location=response.headers.get("location"),
                )
            finally:
                await response.aclose()


class BadEndpointError(Exception):
    """A stored endpoint fails the checks (a row written by hand)."""


def delivery_body(job: Job) -> bytes:
    """The JSON body of a delivery of `job` (the TypeScript client's `DeliveryBody`)."""
    body: dict[str, Any] = {
        "id": job.id,
        "task": job.task,
        "args": job.args,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "queue": job.queue,
        "correlation_id": job.correlation_id,
        "created_at": job.created_at.isoformat(),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _failure(exc: Exception, endpoint: Endpoint) -> tuple[str, str, bool]:
    """The kind and message of a delivery that got no answer, and whether it is final (no
    retry can fix it without a person)."""
    if isinstance(exc, RefusedAddressError):
        return "RefusedAddress", str(exc), True
    if isinstance(exc, BadEndpointError):
        return "BadEndpoint", str(exc), True
    if isinstance(exc, EndpointSecretError):
        return "MissingSecret", str(exc), True
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return "Timeout", f"no answer within the endpoint's {endpoint.timeout:g}s timeout", False
    if isinstance(exc, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
        return "BadURL", f"cannot POST to {endpoint.url!r}: {exc}", True
    if isinstance(exc, httpx2.TransportError):
        what = type(exc).__name__
        return "ConnectionError", f"{what} with {endpoint.url}: {exc or 'connection lost'}", False
    return type(exc).__name__, f"{type(exc).__name__}: {exc}", False
