"""`api`: enqueue throughput over the REST API beside the direct SQL enqueue.

One `conveyor api` process (uvicorn, one event loop, the app's pool of 8 connections, no rate
limit) on the bench database; an enqueue token made for the run. The HTTP client is aiohttp
with keep-alive: 1 client sends its N requests one after another, 16 clients share the N
requests, each one after another on its own kept-alive connection. Beside them the same jobs
enqueued directly: `task.enqueue()` in a loop (1) and 16 asyncio tasks of `aenqueue()` (16).
Every job is `bench.noop` with `{"i": n}`; the tables are emptied before every run. The API
process's CPU per request is counted over each HTTP run.

    python -m bench api [--api-jobs 5000] [--reps 3]
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import aiohttp
import psutil

from bench.app import app, noop
from bench.common import connect, log, summarize, truncate

CLIENTS = (1, 16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiProcess:
    """`conveyor api` on a free loopback port, until stopped."""

    def __init__(self, url: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
        command = [sys.executable, "-m", "conveyor", "--log-level", "WARNING", "api"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), "--rate-limit", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/openapi.json", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("conveyor api exited at start") from None
                time.sleep(0.1)
        raise SystemExit("conveyor api did not answer within 30 s")

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


async def _http(base: str, token: str, n: int, clients: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as session:

        async def one(i: int) -> None:
            async with session.post("/v1/jobs", json={"task": "bench.noop", "args": {"i": i}}) as r:
                if r.status != 201:
                    raise SystemExit(f"POST /v1/jobs answered {r.status}: {await r.text()}")
                await r.read()

        for i in range(clients * 4):  # open the connections and the API's pool first
            await one(-i)

        async def client(k: int) -> None:
            for i in range(k, n, clients):
                await one(i)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        return time.perf_counter() - t0


def _sql(n: int, clients: int) -> float:
    if clients == 1:
        t0 = time.perf_counter()
        for i in range(n):
            noop.enqueue(i=i)
        return time.perf_counter() - t0

    async def go() -> float:
        for i in range(20):
            await noop.aenqueue(i=-i)

        async def client(k: int) -> None:
            for i in range(k, n, clients):
                await noop.aenqueue(i=i)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        seconds = time.perf_counter() - t0
        await app.aclose()
        return seconds

    return asyncio.run(go())


def run(url: str, *, n: int, reps: int) -> dict[str, Any]:
    """Jobs per second over HTTP (1 and 16 clients) and direct (1 and 16), median of reps."""
    client = app.client()
    token_name = f"bench-{int(time.time())}"
    _, token = client.create_token(token_name, ["enqueue"])
    api = ApiProcess(url)
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        with connect(url) as conn:
            for _ in range(50):
                noop.enqueue(i=-1)
            for rep in range(reps):
                for clients in CLIENTS:  # interleaved: load drift hits every mode alike
                    for mode in ("http", "sql"):
                        name = f"{mode}_{clients}"
                        truncate(conn)
                        c0 = api.cpu_seconds()
                        if mode == "http":
                            seconds = asyncio.run(_http(api.base, token, n, clients))
                            cpu.setdefault(name, []).append(1e6 * (api.cpu_seconds() - c0) / n)
                        else:
                            seconds = _sql(n, clients)
                        rates.setdefault(name, []).append(n / seconds)
                        log(f"api {name} rep {rep + 1}/{reps}: {n} jobs in {seconds:.2f}s"
                            f" = {n / seconds:,.0f}/s")  # fmt: skip
            truncate(conn)
    finally:
        api.stop()
        client.revoke_token(token_name)
        app.close()
    out: dict[str, Any] = {"jobs": n, "clients": list(CLIENTS)}
    for name, values in rates.items():
        extra = {}
        if name in cpu:
            extra["api_cpu_us_per_request"] = summarize(cpu[name], "us")["median"]
        out[name] = summarize(values, "jobs/s", **extra)
    return out
