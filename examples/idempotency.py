"""Idempotency: ctx.once() runs a side effect once per key, across duplicate jobs.

    python examples/idempotency.py

Part 1: a plain task. The key is stored when the job completes, so a later job with the same
key gets the stored result instead of running the side effect again.
Part 2: an atomic task. The key is claimed in the job's own transaction, so duplicates that run
at the same time wait for each other and the write happens once.

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg

import conveyor
from conveyor import JobContext

app = conveyor.Conveyor()
RUN = uuid.uuid4().hex[:8]  # keys live for 7 days: keep this run's keys apart from others
emails_sent: list[str] = []


def send_email(to: str) -> str:
    emails_sent.append(to)
    return f"message-{len(emails_sent)}"


@app.task(name="idempotency.welcome")
def welcome(user_id: int, ctx: JobContext) -> str:
    return ctx.once(f"{RUN}:welcome:{user_id}", send_email, f"user{user_id}@example.com")


@app.task(name="idempotency.record_payment", atomic=True)
async def record_payment(order_id: int, cents: int, ctx: JobContext) -> int:
    async def insert() -> int:
        cur = await ctx.conn.execute(
            "INSERT INTO example_payments (order_id, cents) VALUES (%s, %s) RETURNING id",
            (order_id, cents),
        )
        (payment_id,) = await cur.fetchone()
        return payment_id

    return await ctx.aonce(f"{RUN}:payment:{order_id}", insert)


async def run_worker_until_finished(job_ids: list[int]) -> None:
    """Run a worker in this process until every job in `job_ids` has finished."""
    worker = conveyor.Worker(app, conveyor.WorkerConfig(concurrency=4))
    running = asyncio.create_task(worker.run())
    client = app.async_client()
    try:
        async with asyncio.timeout(30):
            while not running.done() and not all(
                [(await client.get_job(i)).state.finished for i in job_ids]
            ):
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    client = app.async_client()

    # Part 1: the same welcome job enqueued twice, one after the other.
    first = await welcome.aenqueue(user_id=7)
    await run_worker_until_finished([first])
    second = await welcome.aenqueue(user_id=7)
    await run_worker_until_finished([second])
    results = [(await client.get_job(i)).result for i in (first, second)]
    print(f"welcome: 2 jobs, {len(emails_sent)} e-mail sent, results {results}")

    # Part 2: three copies of one payment job running at the same time.
    async with await psycopg.AsyncConnection.connect(app.database_url) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS example_payments"
            " (id bigserial PRIMARY KEY, order_id bigint, cents int)"
        )
        await conn.commit()
        order_id = uuid.uuid4().int % 1_000_000_000
        job_ids = await app.aenqueue_many_tx(
            conn, [record_payment.spec(order_id=order_id, cents=1250) for _ in range(3)]
        )
        await conn.commit()
        await run_worker_until_finished(job_ids)
        cur = await conn.execute(
            "SELECT count(*) FROM example_payments WHERE order_id = %s", (order_id,)
        )
        (rows,) = await cur.fetchone()
    results = [(await client.get_job(i)).result for i in job_ids]
    print(f"payment: 3 jobs, {rows} payment row written, results {results}")
    await app.aclose()
    if len(emails_sent) != 1 or rows != 1:
        raise SystemExit("a side effect ran more than once")


if __name__ == "__main__":
    asyncio.run(main())
