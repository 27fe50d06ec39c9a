"""Bad jobs: whatever one job contains or does, the others run and the worker keeps going.

    python examples/bad_jobs.py

Enqueues ordinary jobs beside jobs that misbehave (an exception that cannot be printed, a
KeyboardInterrupt, a result JSON cannot hold, an idempotency key too long for its index, a
sync handler stuck in a call its timeout cannot interrupt) and a row written by hand with a
run time of 'infinity'. Every ordinary job completes once; every bad one ends `failed` with an
error saying why. Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/.
"""

from __future__ import annotations

import asyncio
import threading

import psycopg

import conveyor
from conveyor import JobContext

app = conveyor.Conveyor()
unblock = threading.Event()


class Unprintable(Exception):  # noqa: N818
    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


@app.task(name="bad.ordinary")
def ordinary(n: int) -> int:
    return n * n


@app.task(name="bad.unprintable", max_attempts=1)
def unprintable() -> None:
    raise Unprintable


@app.task(name="bad.interrupt", max_attempts=1)
def interrupt() -> None:
    raise KeyboardInterrupt  # fails this attempt; the worker goes on


@app.task(name="bad.result", max_attempts=3)
def bad_result() -> object:
    return {"a", "set"}  # not JSON: fails at once, the side effects are not repeated


@app.task(name="bad.key", max_attempts=1)
def long_key(ctx: JobContext) -> str:
    return str(ctx.once("k" * 5000, lambda: "sent"))


@app.task(name="bad.stuck", max_attempts=1, timeout=0.3)
def stuck() -> None:
    unblock.wait(2)  # a blocking call: the thread stays busy past the timeout


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    ids = await app.aenqueue_many(
        [
            unprintable.spec(),
            interrupt.spec(),
            bad_result.spec(),
            long_key.spec(),
            stuck.spec(),
            *[ordinary.spec(n=n) for n in range(5)],
        ]
    )
    async with await psycopg.AsyncConnection.connect(app.database_url, autocommit=True) as conn:
        # a row nobody could enqueue through Conveyor any more (every enqueue path refuses it)
        cur = await conn.execute(
            "INSERT INTO conveyor.job (task, args, state, run_at)"
            " VALUES ('bad.ordinary', '{\"n\": 1}', 'available', 'infinity') RETURNING id"
        )
        row = await cur.fetchone()
        assert row is not None
        ids.append(int(row[0]))
        worker = conveyor.Worker(app, conveyor.WorkerConfig(concurrency=4, poll_interval=0.2))
        running = asyncio.create_task(worker.run())
        query = (
            "SELECT id, task, state, errors -> -1 ->> 'type', errors -> -1 ->> 'message'"
            " FROM conveyor.jobs WHERE id = ANY(%s) ORDER BY id"
        )
        async with asyncio.timeout(60):
            while True:
                rows = await (await conn.execute(query, (ids,))).fetchall()
                if all(state in ("completed", "failed") for _, _, state, _, _ in rows):
                    break
                await asyncio.sleep(0.05)
        unblock.set()
        worker.stop()
        await running
    completed = 0
    for _, task, state, kind, message in rows:
        if state == "completed":
            completed += 1
        else:
            print(f"{task}: {state}: {kind.rsplit('.', 1)[-1]}: {message[:90]}")
    print(f"bad jobs: {completed} ordinary jobs completed, {len(ids) - completed} bad jobs failed")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
