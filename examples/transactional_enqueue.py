"""Enqueue in your own psycopg transaction: commit keeps the job, rollback drops it.

    python examples/transactional_enqueue.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio

import psycopg

import conveyor

app = conveyor.Conveyor()


@app.task(name="shop.send_receipt")
def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id} sent"


def place_order(conn: psycopg.Connection, email: str, *, pay: bool) -> tuple[int, int]:
    """Insert an order and its receipt job in one transaction; roll back when `pay` fails."""
    try:
        with conn.transaction():
            (order_id,) = conn.execute(
                "INSERT INTO example_orders (email) VALUES (%s) RETURNING id", (email,)
            ).fetchone()
            job_id = send_receipt.enqueue_tx(conn, order_id=order_id)
            if not pay:
                raise PaymentDeclinedError(order_id, job_id)
    except PaymentDeclinedError as declined:
        return declined.order_id, declined.job_id
    return order_id, job_id


class PaymentDeclinedError(Exception):
    def __init__(self, order_id: int, job_id: int) -> None:
        super().__init__(f"payment for order {order_id} declined")
        self.order_id, self.job_id = order_id, job_id


def exists(client: conveyor.Client, job_id: int) -> bool:
    try:
        client.get_job(job_id)
    except conveyor.JobNotFoundError:
        return False
    return True


async def run_worker_until_finished(job_ids: list[int]) -> None:
    """Run a worker in this process until every job in `job_ids` has finished."""
    worker = conveyor.Worker(app)
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
        await app.aclose()


def main() -> None:
    app.migrate()
    client = app.client()
    with psycopg.connect(app.database_url) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS example_orders (id bigserial PRIMARY KEY, email text)"
        )
        conn.commit()
        kept_order, kept_job = place_order(conn, "ada@example.com", pay=True)
        lost_order, lost_job = place_order(conn, "bob@example.com", pay=False)
        (orders,) = conn.execute(
            "SELECT count(*) FROM example_orders WHERE id IN (%s, %s)", (kept_order, lost_order)
        ).fetchone()
    if not exists(client, kept_job) or exists(client, lost_job) or orders != 1:
        raise SystemExit("expected exactly the committed order and job to exist")
    print(f"committed: order {kept_order} and job {kept_job} exist")
    print(f"rolled back: order {lost_order} and job {lost_job} do not exist")
    asyncio.run(run_worker_until_finished([kept_job]))
    print(f"job {kept_job}: {client.get_job(kept_job).result}")
    app.close()


if __name__ == "__main__":
    main()
