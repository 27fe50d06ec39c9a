"""The TLS delivery server (tls_server.mjs, Node's http2 with allowHTTP1) for tests: offers h2
and http/1.1 by ALPN, with a certificate for 127.0.0.1 and localhost from a `trustme` test CA;
records what it received, the HTTP version included, like tests/delivery_server.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from tests.delivery_server import Received

SCRIPT = Path(__file__).with_name("tls_server.mjs")


@dataclass
class TlsServer:
    ca_file: str
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    connections: int = 0

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def take(self, line: bytes) -> None:
        event = json.loads(line)
        if "connection" in event:
            self.connections = int(event["connection"])
        else:
            body = base64.b64decode(event["body"])
            self.requests.append(Received(event["path"], event["headers"], body, event["version"]))


@contextlib.asynccontextmanager
async def tls_server(directory: Path) -> AsyncIterator[TlsServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    node = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), str(cert_file), str(key_file), stdout=asyncio.subprocess.PIPE
    )
    assert node.stdout is not None
    state = TlsServer(str(ca_file))
    state.port = int(await asyncio.wait_for(node.stdout.readline(), 10))

    async def read(stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            state.take(line)

    reader = asyncio.create_task(read(node.stdout))
    try:
        yield state
    finally:
        node.terminate()
        await node.wait()
        await reader
