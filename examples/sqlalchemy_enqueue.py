"""Enqueue in a SQLAlchemy session's transaction: commit keeps the job, rollback drops it.

    pip install -e '.[sqlalchemy]'
    python examples/sqlalchemy_enqueue.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
SQLAlchemy must use the psycopg 3 driver (postgresql+psycopg://).
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import conveyor

app = conveyor.Conveyor()


@app.task(name="shop.send_receipt")
def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id} sent"


def main() -> None:
    app.migrate()
    url = app.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        session.execute(
            text("CREATE TABLE IF NOT EXISTS example_orders (id bigserial PRIMARY KEY, email text)")
        )

    with Session(engine) as session, session.begin():
        order_id = session.execute(
            text("INSERT INTO example_orders (email) VALUES ('ada@example.com') RETURNING id")
        ).scalar_one()
        kept = send_receipt.enqueue_tx(session, order_id=order_id)
    # Leaving the block committed the order and the job together.

    with Session(engine) as session:
        session.begin()
        dropped = send_receipt.enqueue_tx(session, order_id=0)
        session.rollback()

    client = app.client()
    print(f"committed: job {kept} is {client.get_job(kept).state}")
    try:
        client.get_job(dropped)
    except conveyor.JobNotFoundError:
        print(f"rolled back: job {dropped} does not exist")
    else:
        raise SystemExit(f"job {dropped} should have been rolled back")
    client.cancel(kept)  # no worker runs in this example; do not leave the job waiting
    engine.dispose()
    app.close()


if __name__ == "__main__":
    main()
