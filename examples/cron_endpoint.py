"""Cron that calls a protected route: a schedule whose target is an HTTP endpoint.

    python examples/cron_endpoint.py

The same as `conveyor cron add tick.every5 "*/5 * * * *" --endpoint tick`, declared in Python
with app.add_schedule(endpoint=...). A frozen clock stands in for fifteen minutes; each time
POSTs one job to the route, signed (Standard Webhooks), and the route checks the signature with
the standard library. Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/
when it is unset.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import conveyor

SECRET = "whsec_" + base64.b64encode(b"an example key of 32 bytes......").decode()
clock = conveyor.FrozenClock(datetime(2026, 11, 28, 20, 0, 10, tzinfo=UTC))
app = conveyor.Conveyor(clock=clock)
calls: list[str] = []


class Route(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        signed = f"{self.headers['webhook-id']}.{self.headers['webhook-timestamp']}.".encode()
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        expected = (
            "v1," + base64.b64encode(hmac.new(key, signed + body, "sha256").digest()).decode()
        )
        ok = any(
            hmac.compare_digest(g, expected) for g in self.headers["webhook-signature"].split()
        )
        if ok:
            calls.append(json.loads(body)["args"]["kind"])
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Route)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/cron/tick"
    app.endpoint("tick", url=url, secret=SECRET)
    app.add_schedule(
        endpoint="tick", cron="*/5 * * * *", name="tick.every5", args={"kind": "sweep"}
    )
    config = conveyor.WorkerConfig(allow_networks=("127.0.0.0/8",), poll_interval=0.2)
    worker = conveyor.Worker(app, config)
    running = asyncio.create_task(worker.run())
    await worker.started.wait()
    try:
        async with asyncio.timeout(30):
            for expected in (1, 2, 3):  # 20:00, 20:05, 20:10
                while len(calls) < expected:
                    await asyncio.sleep(0.05)
                clock.advance(timedelta(minutes=5))
    finally:
        worker.stop()
        await running
        server.shutdown()
    print(f"cron endpoint: tick.every5 called the route {len(calls)} times, signed: {calls}")


if __name__ == "__main__":
    asyncio.run(main())
