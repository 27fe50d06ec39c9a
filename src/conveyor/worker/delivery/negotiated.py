"""The HTTP/2 path for `https` routes: httpcore2's connection pool offering `h2` and
`http/1.1` by ALPN, so the route's server picks; HTTP/2 multiplexes a worker's deliveries to one
host on one connection. Built only of httpcore2's public API: `AsyncConnectionPool(http2=True,
network_backend=GuardedBackend(...))`, `pool.stream(...)`, the response's `http_version` and
`network_stream` extensions.

`GuardedBackend` is the SSRF check of this path (the same `AllowList` and messages as aiohttp's
resolver and socket factory, network.py): it resolves the URL's host, keeps the addresses the
allow-list permits and connects to one of them by IP; httpcore2 then starts TLS on that socket
with the URL's host name for SNI and the certificate check.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import weakref
from collections.abc import AsyncIterator, Iterable

import httpcore2

from conveyor.worker.delivery.answer import Answer
from conveyor.worker.delivery.network import AllowList, is_ip

#: Truncated answers an HTTP/2 connection may carry before it is closed. A stream closed before
#: its end leaves up to one stream window (64 KiB) of the connection's receive window
#: unacknowledged (httpcore2 sends no RST_STREAM); at about 256 of them the connection's window
#: (16 MiB) would be spent and every later answer on it would stall.
MAX_TRUNCATED_PER_CONNECTION = 64


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """A network backend that connects only to addresses the allow-list permits."""

    def __init__(self, allow: AllowList, inner: httpcore2.AsyncNetworkBackend | None = None):
        self._allow = allow
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if is_ip(host):
            self._allow.check(host)
            addresses = [host]
        else:
            addresses = self._allow.permitted(host, await _resolve(host, port))
        failed: httpcore2.ConnectError | None = None
        for address in addresses:  # the first that answers, as aiohttp does
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore2.ConnectError as exc:
                failed = exc
        raise failed or httpcore2.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("deliveries do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in getaddrinfo's order, each once."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class NegotiatedClient:
    """POSTs to `https` URLs over HTTP/2 or HTTP/1.1, whichever the server picks."""

    def __init__(self, allow: AllowList, ssl_context: ssl.SSLContext, max_connections: int) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,  # httpcore2 sets its ALPN protocols to h2, http/1.1
            max_connections=max_connections,
            keepalive_expiry=15.0,  # aiohttp's default
            http1=True,
            http2=True,
            retries=0,
            network_backend=GuardedBackend(allow),
        )
        self._truncated: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    async def post(self, url: str, body: bytes, headers: dict[str, str], limit: int) -> Answer:
        """POST and read at most `limit` bytes of the answer (the caller bounds the time)."""
        async with self._pool.stream(
            "POST", url, headers=list(headers.items()), content=body
        ) as response:
            async with contextlib.aclosing(response.aiter_stream()) as chunks:
                read = await _read_at_most(chunks, limit + 1)
            truncated = len(read) > limit
            if truncated and response.extensions.get("http_version") == b"HTTP/2":
                await self._count_truncated(response.extensions.get("network_stream"))
            found = {k.lower(): v.decode("latin-1") for k, v in response.headers}
            # leaving the block closes the response: on HTTP/1.1 an unread rest closes the
            # connection, on HTTP/2 only the stream
            return Answer(
                status=response.status,
                body=read[:limit],
                truncated=truncated,
                content_type=found.get(b"content-type", ""),
                retry_after=found.get(b"retry-after"),
                location=found.get(b"location"),
            )

    async def _count_truncated(self, stream: httpcore2.AsyncNetworkStream | None) -> None:
        if stream is None:
            return
        count = self._truncated.get(stream, 0) + 1
        self._truncated[stream] = count
        if count >= MAX_TRUNCATED_PER_CONNECTION:
            # public API has no way to reset one stream or retire one connection: the
            # deliveries in flight on it and the next one sent on it fail (and are retried),
            # then the pool opens another and drops this one at its keep-alive expiry
            await stream.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()


async def _read_at_most(chunks: AsyncIterator[bytes], size: int) -> bytes:
    """The body's first `size` bytes (or a little more), or all of it when shorter."""
    read: list[bytes] = []
    left = size
    async for chunk in chunks:
        read.append(chunk)
        left -= len(chunk)
        if left <= 0:
            break
    return b"".join(read)
