"""Screenshots of the dashboard for the docs: docs/img/dashboard-{queues,jobs,job-failed}.png.

    .venv/bin/python scripts/screenshots.py [--server postgresql://postgres@127.0.0.1:5432/postgres]

Creates a throwaway database on that server (dropped at the end), seeds an hour of history,
runs a real worker in this process so failed jobs carry real tracebacks, serves the dashboard
with uvicorn and photographs it in headless Chromium (the system's `chromium`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import _with_dbname  # noqa: E402
from tests.dashboard.browser import chromium_path, serve  # noqa: E402

import conveyor  # noqa: E402
from conveyor import JobContext, RetryPolicy  # noqa: E402
from conveyor.dashboard import create_app  # noqa: E402

OUT = ROOT / "docs" / "img"
app = conveyor.Conveyor()
quick = RetryPolicy(base=0.1, factor=2, jitter=0)


class SMTPError(ConnectionError):
    """What the mail provider answered."""


@app.task(name="shop.send_receipt", queue="emails", max_attempts=3, backoff=quick)
def send_receipt(order_id: int, email: str, ctx: JobContext) -> str:
    if email.endswith("@example.invalid"):
        raise SMTPError(f"550 5.1.1 <{email}>: recipient address rejected (attempt {ctx.attempt})")
    return f"receipt for order {order_id} sent to {email}"


@app.task(name="billing.charge_card", queue="billing", max_attempts=2, backoff=quick)
def charge_card(order_id: int, amount_cents: int, currency: str) -> dict[str, object]:
    if amount_cents > 100_000:
        raise ValueError(f"amount {amount_cents} {currency} is over the card's limit")
    return {"charge": f"ch_{order_id:06d}", "amount_cents": amount_cents}


HISTORY = [  # task, queue, args
    ("shop.send_receipt", "emails", lambda n: {"order_id": n, "email": f"customer{n}@example.com"}),
    (
        "billing.charge_card",
        "billing",
        lambda n: {"order_id": n, "amount_cents": 1999 + n % 5000, "currency": "EUR"},
    ),
    ("reports.build_daily", "reports", lambda n: {"tenant": f"acme-{n % 7}", "day": "2026-11-28"}),
    ("images.resize", "default", lambda n: {"path": f"uploads/{n}.jpg", "width": 640}),
]


def seed_history(url: str) -> None:
    """An hour of finished jobs, busier in the last twenty minutes, a few failed."""
    rng = random.Random(7)
    rows = []
    for minute in range(60):
        for _ in range(rng.randint(20, 45) + (40 if minute > 40 else 0)):
            task, queue, make = rng.choice(HISTORY)
            failed = rng.random() < 0.02 + (0.06 if 30 <= minute <= 34 else 0)
            ago = (60 - minute) * 60 - rng.randint(0, 59)
            rows.append(
                (
                    task,
                    queue,
                    "failed" if failed else "completed",
                    json.dumps(make(rng.randint(1000, 99999))),
                    ago,
                )
            )
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt,"
            " max_attempts, args, errors, created_at, run_at, attempted_at, finished_at)"
            " SELECT nextval(pg_get_serial_sequence('conveyor.job', 'id')), %s, %s, %s, 0, 1, 3,"
            " %s, '[]', t - interval '2 s', t - interval '2 s', t - interval '1 s', t"
            " FROM (SELECT now() - make_interval(secs => %s) AS t) x",
            rows,
        )


async def run_real_jobs() -> int:
    """Real failures with tracebacks, plus waiting and scheduled jobs; the failed job's id."""
    with conveyor.correlation_id("req-7f3a9c2e"):  # as a web request's middleware would
        ids = await app.aenqueue_many(
            [send_receipt.spec(order_id=4711, email="jo@example.invalid")]
            + [send_receipt.spec(order_id=n, email=f"c{n}@example.com") for n in range(5)]
            + [charge_card.spec(order_id=4712, amount_cents=250_000, currency="EUR")]
        )
    worker = conveyor.Worker(
        app,
        conveyor.WorkerConfig(
            queues=["emails", "billing"], promote_interval=0.05, poll_interval=0.1
        ),
    )
    running = asyncio.create_task(worker.run())
    client = app.async_client()
    async with asyncio.timeout(60):
        while not all([(await client.get_job(i)).state.finished for i in ids]):
            await asyncio.sleep(0.05)
    worker.stop()
    await running
    specs = [
        conveyor.JobSpec(task=t, args_json=json.dumps(a(n)), queue=q)
        for n in range(40)
        for t, q, a in HISTORY[2:]
    ]
    specs += [
        conveyor.JobSpec(
            task="shop.send_receipt",
            queue="emails",
            delay=600,
            args_json=json.dumps({"order_id": 9000 + n, "email": f"late{n}@example.com"}),
        )
        for n in range(12)
    ]
    await app.aenqueue_many(specs)
    await client.pause_queue("reports")
    return ids[0]


def photograph(failed_id: int) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")
    with serve(create_app(app)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, path in (
            ("dashboard-queues.png", "/"),
            ("dashboard-jobs.png", "/jobs?queue=emails"),
            ("dashboard-job-failed.png", f"/jobs/{failed_id}"),
        ):
            page.goto(base + path)
            page.screenshot(path=str(OUT / name), full_page=False)
            print(f"wrote docs/img/{name}")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    options = parser.parse_args()
    name = f"conveyor_screenshots_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(options.server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(options.server, name)
    try:
        app.set_default_database_url(url)
        app.migrate()
        seed_history(url)
        failed_id = asyncio.run(run_real_jobs())
        app.close()
        photograph(failed_id)
    finally:
        app.close()
        with psycopg.connect(options.server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
