"""Delivery: a job whose task is an HTTP endpoint is POSTed to it, signed (Standard Webhooks).

    python examples/delivery.py

The receiver here stands in for a Next.js route: it checks the signature with nothing but the
standard library, does the work, and answers 200 with JSON (kept as the job's result). The job
is enqueued with plain SQL, as any language can. Uses CONVEYOR_DATABASE_URL, or the embedded
Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

import conveyor

SECRET = "whsec_" + base64.b64encode(b"an example key of 32 bytes......").decode()
app = conveyor.Conveyor()
receipts: list[int] = []


class Receiver(BaseHTTPRequestHandler):
    """The route: verify, then work. A real one also refuses old timestamps (5 minutes)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        signed = f"{self.headers['webhook-id']}.{self.headers['webhook-timestamp']}.".encode()
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        mac = hmac.new(key, signed + body, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        given = self.headers["webhook-signature"].split(" ")
        if not any(hmac.compare_digest(g.encode(), expected.encode()) for g in given):
            self.send_response(401)
            self.end_headers()
            return
        job = json.loads(body)
        receipts.append(job["args"]["order_id"])  # the work: send the receipt
        answer = json.dumps({"receipt": "sent", "order_id": job["args"]["order_id"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/jobs/send-receipt"
    # Declared in code, written by the worker at start (or: conveyor endpoint add ...).
    app.endpoint("send-receipt", url=url, secret=SECRET, timeout=10)
    # Loopback is refused unless allowed: a delivery worker must not reach internal services.
    config = conveyor.WorkerConfig(allow_networks=("127.0.0.0/8",), poll_interval=0.2)
    worker = conveyor.Worker(app, config)
    running = asyncio.create_task(worker.run())
    await worker.started.wait()
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT conveyor.enqueue('send-receipt', '{\"order_id\": 42}')")
        job_id = row.fetchone()[0]  # type: ignore[index]
    client = app.async_client()
    try:
        async with asyncio.timeout(30):
            while not (job := await client.get_job(job_id)).state.finished:
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running
        server.shutdown()
    print(f"delivery: {job.task} {job.state} on attempt {job.attempt}, result {job.result}")
    print(f"receipts sent for orders {receipts}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
