"""asyncpg against psycopg 3 on the worker's hot path (issue "Speed at scale", item 3).

The worker's cycle, reproduced with the very same SQL: claim up to 100 jobs
(`job_fetch_available`), then complete them (`job_complete_many`), until the queue is empty.
psycopg 3 runs it as the worker does (async connection in autocommit, dict rows, the named
queries from conveyor._store.queries); asyncpg runs the same text with `%(name)s` placeholders
turned into `$n` (prepared and cached, as asyncpg always does) and a jsonb codec so arguments
arrive parsed, as the worker needs them. Rows become Job objects in both.

    .venv/bin/python -m bench hotpath            (or: python -m bench.asyncpg_vs_psycopg)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.common import connect, database_url, log, prepare_database, summarize, truncate
from conveyor._store.queries import sql
from conveyor.job import Job

BATCH = 100
TASKS = ["bench.noop"]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def to_dollar(query: str) -> tuple[str, list[str]]:
    """`%(name)s` → `$n` (one number per distinct name, in order of first use)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match[1]
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, query), names


def _fetch_params(token: uuid.UUID) -> dict[str, Any]:
    return {
        "queue": "bench",
        "tasks": TASKS,
        "task_max_attempts": [5],
        "limit": BATCH,
        "lease_seconds": 30.0,
        "token": token,
        "worker_id": "bench-hotpath",
        "now": None,
        "relaxed": False,
    }


def _complete_params(jobs: list[Job], token: uuid.UUID) -> dict[str, Any]:
    return {
        "ids": [j.id for j in jobs],
        "tokens": [token] * len(jobs),
        "results": [None] * len(jobs),
        "now": None,
        "relaxed": False,
    }


WARM = 6  # psycopg prepares a statement on its 5th execution; asyncpg on its first


async def cycle_psycopg(url: str) -> tuple[int, float]:
    """Claim and complete until empty; return (jobs done, seconds) timed after warm-up."""
    fetch, complete = sql("job_fetch_available"), sql("job_complete_many")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

        async def claim(queue: str, token: uuid.UUID) -> list[Job]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(fetch, {**_fetch_params(token), "queue": queue})
                return [Job.from_row(r) for r in await cur.fetchall()]

        async def finish(jobs: list[Job], token: uuid.UUID) -> int:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(complete, _complete_params(jobs, token))
                return len(await cur.fetchall())

        return await _loop(claim, finish)


async def cycle_asyncpg(url: str) -> tuple[int, float]:
    import asyncpg

    fetch, fetch_names = to_dollar(sql("job_fetch_available"))
    complete, complete_names = to_dollar(sql("job_complete_many"))
    conn = await asyncpg.connect(url)
    try:
        for typ in ("json", "jsonb"):
            await conn.set_type_codec(
                typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

        async def claim(queue: str, token: uuid.UUID) -> list[Job]:
            p = {**_fetch_params(token), "queue": queue}
            rows = await conn.fetch(fetch, *(p[n] for n in fetch_names))
            return [Job.from_row(dict(r)) for r in rows]

        async def finish(jobs: list[Job], token: uuid.UUID) -> int:
            c = _complete_params(jobs, token)
            return len(await conn.fetch(complete, *(c[n] for n in complete_names)))

        return await _loop(claim, finish)
    finally:
        await conn.close()


async def _loop(claim: Any, finish: Any) -> tuple[int, float]:
    for _ in range(WARM):  # statements prepared, type info loaded: outside the clock
        token = uuid.uuid4()
        await claim("bench_empty", token)
        await finish([], token)
    done = 0
    t0 = time.perf_counter()
    while True:
        token = uuid.uuid4()
        jobs = await claim("bench", token)
        if not jobs:
            return done, time.perf_counter() - t0
        done += await finish(jobs, token)


DRIVERS = {"psycopg": cycle_psycopg, "asyncpg": cycle_asyncpg}


def _load(url: str, n: int) -> None:
    from bench.app import app, noop

    with connect(url) as conn:
        truncate(conn)
    with connect(url, autocommit=False) as tx:
        app.enqueue_many_tx(tx, [noop.spec(i=i) for i in range(n)])
        tx.commit()
    with connect(url) as conn:
        conn.execute("VACUUM (ANALYZE) conveyor.job")


def run(url: str, *, jobs: int, reps: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {d: [] for d in DRIVERS}
    cpu: dict[str, list[float]] = {d: [] for d in DRIVERS}
    for rep in range(reps):
        for name, cycle in DRIVERS.items():  # interleaved
            _load(url, jobs)
            c0 = time.process_time()
            done, seconds = asyncio.run(cycle(url))
            client_cpu = time.process_time() - c0
            if done != jobs:
                raise RuntimeError(f"{name}: completed {done} of {jobs}")
            rates[name].append(jobs / seconds)
            cpu[name].append(1e6 * client_cpu / jobs)
            log(
                f"hotpath {name} rep {rep + 1}/{reps}: {jobs / seconds:,.0f} jobs/s,"
                f" client cpu {1e6 * client_cpu / jobs:.0f} us/job"
            )
    with connect(url) as conn:
        truncate(conn)
    out: dict[str, Any] = {
        name: summarize(
            rates[name],
            "jobs/s",
            jobs=jobs,
            batch=BATCH,
            client_cpu_us_per_job=summarize(cpu[name], "us")["median"],
        )
        for name in DRIVERS
    }
    a, p = out["asyncpg"]["median"], out["psycopg"]["median"]
    out["asyncpg_over_psycopg"] = round(a / p, 3) if a and p else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    url = database_url()
    prepare_database(url)
    print(json.dumps(run(url, jobs=args.jobs, reps=args.reps), indent=2))


if __name__ == "__main__":
    main()
