"""Deliverer: the worker's pooled HTTP clients and endpoint registry; POSTs one job, signed.

One `aiohttp.ClientSession` per worker, made on the worker's loop at the first delivery:
HTTP/1.1 keep-alive connections up to the worker's concurrency, redirects never followed,
proxies from the environment ignored (a proxy would connect for us, past the address check),
and every connection checked by `GuardedResolver` and `guarded_socket`, which refuse private
addresses the allow-list does not name. aiohttp parses answers in C and hands a free
connection back in constant time, which is what makes a delivery cheap (docs/benchmarks.md).

`https` URLs go to `NegotiatedClient` (negotiated.py: httpcore2 offering h2 and http/1.1 by
ALPN, the same checks on its network backend) unless `http2=False`; both paths send the same
request under the same deadline and give `Decide` the same `Answer`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpcore2

from conveyor import codec
from conveyor.endpoints import Endpoint, resolve_secret
from conveyor.errors import ConfigError, EndpointSecretError, RefusedAddressError
from conveyor.job import Job
from conveyor.metrics import WorkerMetrics
from conveyor.retry import RetryPolicy
from conveyor.worker.delivery.answer import Answer, Decide
from conveyor.worker.delivery.negotiated import NegotiatedClient
from conveyor.worker.delivery.network import AllowList, GuardedResolver, guarded_socket
from conveyor.worker.delivery.signing import signature_header
from conveyor.worker.outcome import Outcome

log = logging.getLogger("conveyor.delivery")

USER_AGENT = "Conveyor-Delivery/1 (+https://standardwebhooks.com)"
#: A PEM file of CA certificates `https` deliveries trust besides the system's.
CA_FILE_ENV = "CONVEYOR_DELIVERY_CA_FILE"


def delivery_ssl_context(
    ca_file: str | None = None, environ: Mapping[str, str] | None = None
) -> ssl.SSLContext | None:
    """The system's trust store plus the CAs of `ca_file` (or CONVEYOR_DELIVERY_CA_FILE); None
    when neither names one (the system's alone). ConfigError when the file cannot be loaded."""
    path = ca_file or (os.environ if environ is None else environ).get(CA_FILE_ENV) or None
    if path is None:
        return None
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--ca-file / {CA_FILE_ENV}: cannot load CA certificates from {path!r}: {exc}"
        ) from None
    return context


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
        http2: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`http2`: send `https` URLs through the HTTP/2-capable client (else aiohttp's
        HTTP/1.1). `ssl_context`: the certificates trusted for `https` (default: the system's);
        the deliverer sets its ALPN protocols to those its client speaks."""
        self._endpoints: dict[str, Endpoint] = {}
        self._metrics = metrics
        self._environ = os.environ if environ is None else environ
        self._max_result = max_result_bytes
        self._decide = Decide(
            retry_policy or RetryPolicy(), rng or random.Random(), max_result_bytes
        )
        self._allow = allow or AllowList()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._http2 = http2
        self._ssl_context = ssl_context
        self._negotiated: NegotiatedClient | None = None

    def _client(self) -> aiohttp.ClientSession:
        # made on first use: aiohttp binds its session and resolver to the running loop
        if self._session is None:
            tls: ssl.SSLContext | bool = True  # aiohttp's default context, ALPN http/1.1
            if self._ssl_context is not None and not self._http2:
                self._ssl_context.set_alpn_protocols(["http/1.1"])
                tls = self._ssl_context
            connector = aiohttp.TCPConnector(
                ssl=tls,
                limit=self._max_connections,
                resolver=GuardedResolver(self._allow),
                socket_factory=guarded_socket(self._allow),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # no timer of aiohttp's: `_send`'s one deadline bounds the whole exchange
                timeout=aiohttp.ClientTimeout(),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    def _negotiating(self) -> NegotiatedClient:
        if self._negotiated is None:
            self._negotiated = NegotiatedClient(
                self._allow,
                self._ssl_context or ssl.create_default_context(),
                self._max_connections,
            )
        return self._negotiated

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
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._negotiated is not None:
            await self._negotiated.aclose()
            self._negotiated = None

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
            "user-agent": USER_AGENT,
            "accept": "*/*",
            "content-type": "application/json",
            # an uncompressed answer: only its first bytes are read, and no bomb can inflate
            "accept-encoding": "identity",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, message_id, timestamp, body),
        }
        return body, headers

    async def _send(self, endpoint: Endpoint, body: bytes, headers: dict[str, str]) -> Answer:
        # one deadline for the whole exchange, connection to last byte read, so a server that
        # drips its answer a byte at a time cannot hold the attempt past the timeout
        limit = max(self._max_result, 1024)
        if self._http2 and endpoint.url[:8].lower() == "https://":
            async with asyncio.timeout(endpoint.timeout):
                return await self._negotiating().post(endpoint.url, body, headers, limit)
        async with (
            asyncio.timeout(endpoint.timeout),
            self._client().post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as response,
        ):
            read = await _read_at_most(response.content, limit + 1)
            # leaving the block with the body unread closes the connection, not pools it
            return Answer(
                status=response.status,
                body=read[:limit],
                truncated=len(read) > limit,
                content_type=response.headers.get("content-type", ""),
                retry_after=response.headers.get("retry-after"),
                location=response.headers.get("location"),
            )


async def _read_at_most(stream: aiohttp.StreamReader, size: int) -> bytes:
    """The body's first `size` bytes, or all of it when shorter."""
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = await stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, RefusedAddressError
    ):  # refused by the resolver or the socket factory, wrapped by aiohttp
        return "RefusedAddress", str(exc.os_error), True
    if isinstance(exc, TimeoutError | httpcore2.TimeoutException):
        return "Timeout", f"no answer within the endpoint's {endpoint.timeout:g}s timeout", False
    if isinstance(
        exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError | httpcore2.UnsupportedProtocol
    ):
        return "BadURL", f"cannot POST to {endpoint.url!r}: {exc}", True
    if isinstance(
        exc, aiohttp.ClientError | OSError | httpcore2.NetworkError | httpcore2.ProtocolError
    ):
        what = type(exc).__name__
        return "ConnectionError", f"{what} with {endpoint.url}: {exc or 'connection lost'}", False
    return type(exc).__name__, f"{type(exc).__name__}: {exc}", False
