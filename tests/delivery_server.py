"""A small HTTP/1.1 server on 127.0.0.1 for delivery tests: each path answers one way, and
every request is recorded (headers, raw body) for signature checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: The HTTP version the request came in ("1.1", "2.0").
    version: str = "1.1"


@dataclass
class DeliveryServer:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    connections: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Received(path, headers, body))
        self.hits[path] += 1
        n = self.hits[path]
        if path == "/close":
            return False
        if path == "/slow":
            await asyncio.sleep(10)
        if path == "/huge":
            writer.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 50000000\r\n\r\n")
            for _ in range(1000):
                writer.write(b"x" * 50_000)
                await writer.drain()
            return False
        status, extra, text = {
            "/ok": (200, "content-type: application/json\r\n", b'{"received": true}'),
            "/flaky": (500, "", b"boom") if n == 1 else (200, "", b"fine"),
            "/busy": (429, "retry-after: 1\r\n", b"slow down") if n == 1 else (204, "", b""),
            "/gone": (410, "", b"gone"),
            "/missing": (404, "", b"no such route"),
            "/redirect": (302, "location: https://example.com/new\r\n", b""),
        }.get(path, (404, "", b"unknown path"))
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: {len(text)}\r\n{extra}\r\n".encode() + text
        )
        await writer.drain()
        return True


@contextlib.asynccontextmanager
async def delivery_server() -> AsyncIterator[DeliveryServer]:
    state = DeliveryServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await server.wait_closed()
