"""`conveyor demo`: a small shop whose orders enqueue receipt e-mails in their own transaction.

Some payments are declined (the order's transaction rolls back and takes its job with it), the
"e-mail provider" fails now and then (those jobs are retried with backoff), one address is
invalid (that job fails at once and stays in `failed` for a person), and a worker drains it all
while a live table shows the jobs moving through their states.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.context import JobContext
from conveyor.outcome import FailNow
from conveyor.worker import Worker, WorkerConfig

_SETUP = """
CREATE SCHEMA IF NOT EXISTS conveyor_demo;
CREATE TABLE IF NOT EXISTS conveyor_demo.orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    total_cents integer NOT NULL,
    receipt_sent_at timestamptz
);
"""
_STATES = ("available", "scheduled", "running", "retryable", "completed", "failed")


def build_app(fail_rate: float, seed: int) -> tuple[Conveyor, Any]:
    """The demo's app and its one task."""
    app = Conveyor()
    rng = random.Random(seed)

    @app.task(name="demo.send_receipt", max_attempts=4, backoff=0.3, atomic=True)
    async def send_receipt(order_id: int, email: str, ctx: JobContext) -> str:
        await asyncio.sleep(0.02 + rng.random() * 0.05)  # talking to the e-mail provider
        if email.endswith("@invalid"):
            raise FailNow(f"{email} is not a deliverable address")
        if ctx.attempt == 1 and rng.random() < fail_rate:
            raise ConnectionError("e-mail provider timed out")
        await ctx.conn.execute(
            "UPDATE conveyor_demo.orders SET receipt_sent_at = now() WHERE id = %s", (order_id,)
        )
        return f"receipt for order {order_id} sent to {email}"

    return app, send_receipt


def place_orders(app: Conveyor, send_receipt: Any, orders: int, stats: dict[str, Any]) -> None:
    """The shop: each order and its receipt job commit together, or not at all."""
    with psycopg.connect(app.database_url) as conn:
        conn.execute(_SETUP)
        conn.commit()
        for n in range(1, orders + 1):
            declined = n % 10 == 0
            email = "bounce@invalid" if n == 7 else f"customer{n}@example.com"
            try:
                with conn.transaction():
                    row = conn.execute(
                        "INSERT INTO conveyor_demo.orders (customer, total_cents)"
                        " VALUES (%s, %s) RETURNING id",
                        (email, 1000 + n),
                    ).fetchone()
                    assert row is not None
                    job_id = send_receipt.enqueue_tx(conn, order_id=row[0], email=email)
                    if declined:
                        raise _DeclinedError
                stats["placed"] += 1
                stats["job_ids"].append(job_id)
            except _DeclinedError:
                stats["rolled_back"] += 1
            time.sleep(0.01)


class _DeclinedError(Exception):
    pass


def _counts(app: Conveyor, job_ids: list[int]) -> dict[str, int]:
    counts = dict.fromkeys(_STATES, 0)
    if not job_ids:
        return counts
    with psycopg.connect(app.database_url) as conn:
        for state, count in conn.execute(
            "SELECT state, count(*) FROM conveyor.jobs WHERE id = ANY(%s) GROUP BY state",
            (job_ids,),
        ):
            counts[state] = count
    return counts


def _table(counts: dict[str, int], stats: dict[str, Any], elapsed: float) -> Table:
    table = Table(title=f"receipts for a small shop, {elapsed:.1f}s")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("", min_width=30)
    total = max(len(stats["job_ids"]), 1)
    table.add_row("orders placed", str(stats["placed"]), "")
    table.add_row("payments declined (rolled back)", str(stats["rolled_back"]), "")
    for state in _STATES:
        bar = "█" * round(30 * counts[state] / total)
        table.add_row(f"jobs {state}", str(counts[state]), bar)
    return table


async def _drive(orders: int, fail_rate: float, console: Console) -> int:
    app, send_receipt = build_app(fail_rate, seed=7)
    await asyncio.to_thread(app.migrate)
    worker = Worker(app, WorkerConfig(concurrency=8, promote_interval=0.2, poll_interval=0.5))
    stats: dict[str, Any] = {"placed": 0, "rolled_back": 0, "job_ids": []}
    running = asyncio.create_task(worker.run())
    shop = asyncio.create_task(asyncio.to_thread(place_orders, app, send_receipt, orders, stats))
    started = time.monotonic()
    counts = dict.fromkeys(_STATES, 0)
    with Live(console=console, refresh_per_second=8) as live:
        while time.monotonic() - started < 120:
            counts = await asyncio.to_thread(_counts, app, list(stats["job_ids"]))
            live.update(_table(counts, stats, time.monotonic() - started))
            finished = counts["completed"] + counts["failed"]
            if shop.done() and finished == len(stats["job_ids"]):
                break
            await asyncio.sleep(0.15)
    await shop
    worker.stop()
    await running
    return _summary(app, counts, stats, time.monotonic() - started, console)


def _summary(
    app: Conveyor, counts: dict[str, int], stats: dict[str, Any], elapsed: float, console: Console
) -> int:
    jobs = [app.client().get_job(i) for i in stats["job_ids"]]
    retried = sum(1 for j in jobs if j.attempt > 1)
    failed = [j for j in jobs if j.state == "failed"]
    ok = counts["completed"] + counts["failed"] == len(jobs)
    console.print(
        f"\n[bold]{'done' if ok else 'NOT DONE'}[/bold] in {elapsed:.1f}s:"
        f" {stats['placed']} orders placed, {stats['rolled_back']} rolled back (no job left"
        f" behind), {counts['completed']} receipts sent, {retried} of them after a retry,"
        f" {len(failed)} failed for good."
    )
    conveyor = command_name()
    for job in failed:
        last = job.errors[-1] if job.errors else {}
        console.print(
            f"  job {job.id} is in [red]failed[/red] for a person to look at:"
            f" {last.get('type')}: {last.get('message')}"
            f"  ({conveyor} jobs show {job.id}; {conveyor} retry {job.id})",
            highlight=False,
        )
    app.close()
    return 0 if ok else 1


def command_name() -> str:
    """How to run `conveyor` from this shell: the bare name when PATH finds this environment's
    own, else its path (`.venv/bin/conveyor` when the venv is not activated)."""
    script = Path(sys.executable).with_name("conveyor")
    on_path = shutil.which("conveyor")
    if script.is_file() and on_path and os.path.samefile(on_path, script):
        return "conveyor"
    if script.is_file():
        return _short(script)
    return f"{_short(Path(sys.executable))} -m conveyor"


def _short(path: Path) -> str:
    """`path` relative to the current directory when it is inside it."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def run_demo(orders: int = 40, fail_rate: float = 0.3) -> int:
    """Run the demo; return the process exit code."""
    # The live table tells the story; keep per-job log lines out of its way.
    logging.getLogger("conveyor").setLevel(logging.ERROR)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    console = Console()
    return asyncio.run(_drive(orders, fail_rate, console))
