"""Observability: a correlation id from a "request" follows its jobs into the logs, and the
worker's Prometheus metrics count what ran.

    python examples/observability.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request
import uuid

import conveyor
from conveyor import logs

app = conveyor.Conveyor()
log = logging.getLogger("shop.images")


@app.task(name="obs.resize")
def resize(image: str) -> str:
    log.info("resizing %s", image)  # a plain logger: the job's fields are added for us
    return f"{image} resized"


@app.task(name="obs.upload", max_attempts=2, backoff=0.05)
async def upload(image: str, ctx: conveyor.JobContext) -> None:
    if image == "broken.png":
        raise ConnectionError("storage unavailable")
    await resize.aenqueue(image=image)  # inherits this job's correlation id


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def main() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)  # what `conveyor worker` does off a terminal
    await asyncio.to_thread(app.migrate)

    # In a web app a middleware would do this with the request's id.
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    with conveyor.correlation_id(request_id):
        uploads = [await upload.aenqueue(image=i) for i in ("cat.png", "dog.png", "broken.png")]

    worker = conveyor.Worker(app, conveyor.WorkerConfig(metrics_port=0, concurrency=4))
    running = asyncio.create_task(worker.run())
    await worker.started.wait()
    client = app.async_client()
    async with asyncio.timeout(30):
        while True:
            jobs = [await client.get_job(i) for i in uploads]
            jobs += [
                j
                for j in await client.list_jobs(task="obs.resize", limit=20)
                if j.correlation_id == request_id
            ]
            if len(jobs) == 5 and all(j.state.finished for j in jobs):
                break
            await asyncio.sleep(0.05)
    assert worker.metrics_port is not None
    text = await asyncio.to_thread(scrape, worker.metrics_port)
    worker.stop()
    await running

    print("log lines of this request:")
    for line in stream.getvalue().splitlines():
        record = json.loads(line)
        if record.get("correlation_id") == request_id:
            fields = {k: record.get(k) for k in ("task", "job_id", "attempt", "outcome")}
            print(f"  {record['message']}  {fields}")
    print("metrics:")
    for line in text.splitlines():
        if line.startswith(("conveyor_jobs_completed_total", "conveyor_jobs_failed_total")):
            print(f"  {line}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
