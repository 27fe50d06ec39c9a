"""`python -m bench.dashboard [--jobs 1000000]`: the dashboard's reads at a million jobs.

Loads finished jobs into conveyor.job_done (a day of history, the last hour included) and some
unfinished ones into conveyor.job, then times every read the dashboard makes, through the
public Client (25 runs each, so psycopg's prepared statements and Postgres's generic plans are
exercised too) and whole pages through the ASGI app. `--explain` prints each list query's plan.
`--index-cost` also times inserting finished jobs with and without migration 0007's indexes.
Writes bench/results/dashboard-latest.json. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from psycopg.sql import SQL, Identifier

from bench.common import (
    RESULTS,
    connect,
    database_url,
    log,
    machine_facts,
    prepare_database,
    server_facts,
    truncate,
)

REPS = 25
INDEXES_0007 = (
    "job_done_queue_id_idx",
    "job_done_task_id_idx",
    "job_done_unsuccessful_idx",
    "job_done_unsuccessful_queue_idx",
    "job_done_unsuccessful_task_idx",
)

LOAD = """
INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                               errors, created_at, run_at, attempted_at, finished_at, result)
SELECT g, 'shop.task_' || (g %% 20), (ARRAY['default','emails','billing','reports'])[1 + g %% 4],
       CASE WHEN g %% 200 = 0 THEN 'failed' WHEN g %% 500 = 1 THEN 'cancelled'
            ELSE 'completed' END,
       0, 1, 5,
       jsonb_build_object('order_id', g, 'email', 'customer' || g || '@example.com'),
       CASE WHEN g %% 200 = 0 THEN '[{"attempt": 1, "type": "SMTPError", "message": "550",
                                     "traceback": "Traceback ..."}]'::jsonb
            ELSE '[]'::jsonb END,
       t, t, t, t + interval '150 ms', '"ok"'
  FROM generate_series(1, %(n)s) g,
       LATERAL (SELECT now() - make_interval(secs => (%(n)s - g) * 86400.0 / %(n)s)) x(t)
"""
# A queue and a task with few jobs, all old: without an index on (queue, id) a page of them
# reads the whole history backwards.
RARE = """
UPDATE conveyor.job_done SET queue = 'rare', task = 'shop.rare' WHERE id <= 100
"""
SKIP_IDS = "SELECT setval(pg_get_serial_sequence('conveyor.job', 'id'), %(n)s)"
ACTIVE = """
INSERT INTO conveyor.job (task, queue, state, args, run_at)
SELECT 'shop.task_' || (g %% 20), (ARRAY['default','emails','billing','reports'])[1 + g %% 4],
       CASE WHEN g %% 10 = 0 THEN 'scheduled' ELSE 'available' END,
       jsonb_build_object('order_id', g), now() + CASE WHEN g %% 10 = 0 THEN interval '1 h'
                                                     ELSE interval '0' END
  FROM generate_series(1, %(active)s) g
"""


def load(url: str, n: int, active: int) -> None:
    with connect(url) as conn:
        truncate(conn)
        started = time.perf_counter()
        conn.execute(LOAD, {"n": n})
        conn.execute(RARE)
        conn.execute(SKIP_IDS, {"n": n})
        conn.execute(ACTIVE, {"active": active})
        conn.execute("VACUUM ANALYZE conveyor.job_done")
        conn.execute("VACUUM ANALYZE conveyor.job")
        seconds = time.perf_counter() - started
        log(f"loaded {n:,} finished and {active:,} active jobs in {seconds:.1f}s")


def timed(fn: Callable[[], Any], reps: int = REPS) -> dict[str, float]:
    fn()  # warm the pool and the caches
    runs = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    runs.sort()
    return {
        "median_ms": round(statistics.median(runs), 2),
        "p95_ms": round(runs[int(0.95 * (len(runs) - 1))], 2),
        "max_ms": round(runs[-1], 2),
    }


def client_reads(app: Any, n: int) -> dict[str, dict[str, float]]:
    c = app.client()
    middle = n // 2
    cases: dict[str, Callable[[], Any]] = {
        "list: first page": lambda: c.page_jobs(),
        "list: page at the middle (before_id)": lambda: c.page_jobs(before_id=middle),
        "list: state=failed": lambda: c.page_jobs(state="failed"),
        "list: state=failed, deep page": lambda: c.page_jobs(state="failed", before_id=middle),
        "list: state=cancelled": lambda: c.page_jobs(state="cancelled"),
        "list: queue=emails": lambda: c.page_jobs(queue="emails"),
        "list: queue=emails, state=failed (none)": lambda: c.page_jobs(
            queue="emails", state="failed"
        ),
        "list: queue=default, state=failed": lambda: c.page_jobs(queue="default", state="failed"),
        "list: task=shop.task_3, state=cancelled": lambda: c.page_jobs(
            task="shop.task_3", state="cancelled"
        ),
        "list: task=shop.task_7": lambda: c.page_jobs(task="shop.task_7"),
        "list: queue=rare (100 old jobs)": lambda: c.page_jobs(queue="rare"),
        "list: task=shop.rare (100 old jobs)": lambda: c.page_jobs(task="shop.rare"),
        "list: queue=nosuch (no jobs)": lambda: c.page_jobs(queue="nosuch"),
        "search: match in the newest rows": lambda: c.page_jobs(search="customer99"),
        "search: no match (reads 20,000 rows)": lambda: c.page_jobs(search="no such text"),
        "search: within queue=billing": lambda: c.page_jobs(queue="billing", search="@example"),
        "job: get one": lambda: c.get_job(middle),
        "status: counts by queue and state": lambda: c.status(),
        "queues: controls and waiting counts": lambda: c.queues(),
        "throughput: per minute, last hour": lambda: c.throughput(),
        "failed by task": lambda: c.failed_by_task(),
    }
    results = {}
    for name, fn in cases.items():
        results[name] = timed(fn)
        log(f"{name}: {results[name]}")
    return results


def pages(app: Any, n: int) -> dict[str, dict[str, float]]:
    from starlette.testclient import TestClient

    from conveyor.dashboard import create_app

    results = {}
    with TestClient(create_app(app)) as web:
        for path in (
            "/",
            "/jobs",
            f"/jobs?before_id={n // 2}",
            "/jobs?state=failed",
            "/jobs?queue=rare",
            "/jobs?q=customer99",
            f"/jobs/{n // 2}",
        ):
            results[f"page GET {path}"] = timed(lambda p=path: web.get(p), reps=10)
            log(f"page GET {path}: {results[f'page GET {path}']}")
    return results


def explain(url: str, n: int) -> None:
    from conveyor._store.queries import sql as query

    base = {"state": None, "queue": None, "task": None, "before_id": None, "limit": 50}
    cases = {
        "first page": base,
        "state=failed": {**base, "state": "failed"},
        "queue=rare": {**base, "queue": "rare"},
        "task=shop.task_7 before_id middle": {**base, "task": "shop.task_7", "before_id": n // 2},
    }
    with connect(url) as conn:
        for name, params in cases.items():
            statement = SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) {}").format(
                SQL(query("job_list"))  # type: ignore[arg-type]
            )
            rows = conn.execute(statement, params).fetchall()
            print(f"-- {name}")
            for (line,) in rows:
                print("   " + line)


def index_cost(url: str, rows: int = 200_000) -> dict[str, float]:
    """Seconds to insert `rows` finished jobs with and without migration 0007's indexes."""
    from conveyor.migrate import migrations

    (migration,) = [m for m in migrations() if m.version == 7]
    out = {}
    with connect(url) as conn:
        for label, create in (("with_0007_indexes", True), ("without", False)):
            conn.execute("TRUNCATE conveyor.job_done")
            for name in INDEXES_0007:
                conn.execute(SQL("DROP INDEX IF EXISTS conveyor.{}").format(Identifier(name)))
            if create:
                conn.execute(migration.sql.encode())
            started = time.perf_counter()
            conn.execute(LOAD, {"n": rows})
            out[f"insert_{rows}_{label}_s"] = round(time.perf_counter() - started, 2)
            log(f"insert {rows:,} finished jobs {label}: {out[f'insert_{rows}_{label}_s']}s")
        conn.execute(migration.sql.encode())
        conn.execute("TRUNCATE conveyor.job_done")
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    p.add_argument("--jobs", type=int, default=1_000_000, help="finished jobs (1,000,000)")
    p.add_argument("--active", type=int, default=10_000, help="unfinished jobs (10,000)")
    p.add_argument("--explain", action="store_true", help="print the list queries' plans")
    p.add_argument("--index-cost", action="store_true", help="time inserts with/without 0007")
    p.add_argument("--force-database", action="store_true", help="allow a non-bench database")
    args = p.parse_args()

    import conveyor

    url = database_url()
    prepare_database(url, force=args.force_database)
    with connect(url) as conn:
        server = server_facts(conn)
    results: dict[str, Any] = {
        "meta": {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "jobs": args.jobs,
            "active": args.active,
            "machine": machine_facts(),
            "postgres": server,
        }
    }
    if args.index_cost:
        results["index_cost"] = index_cost(url)
    load(url, args.jobs, args.active)
    if args.explain:
        explain(url, args.jobs)
    app = conveyor.Conveyor(url, auto_migrate=False)
    try:
        results["client"] = client_reads(app, args.jobs)
        results["pages"] = pages(app, args.jobs)
    finally:
        app.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dashboard-latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"{'read':<48} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for section in ("client", "pages"):
        for name, figures in results[section].items():
            print(
                f"{name:<48} {figures['median_ms']:>10} {figures['p95_ms']:>8}"
                f" {figures['max_ms']:>8}"
            )


if __name__ == "__main__":
    main()
