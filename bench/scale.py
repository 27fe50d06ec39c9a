"""W4 is it flat? The W2 drain with 1,000,000 other jobs waiting in the hot table, and with
1,000,000 finished jobs in history, each compared with the drain on empty tables.

Filler is bulk loaded with INSERT ... SELECT generate_series, then VACUUM (ANALYZE), and removed
at the end. Between repetitions the run's own rows are deleted and the tables vacuumed, so each
repetition starts from the same state.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from bench.app import QUEUE
from bench.common import connect, log, summarize, truncate
from bench.drain import drain_once

# Waiting jobs of another queue: the claim index is per queue, so they should cost nothing.
_FILL_OTHER_QUEUE = """
INSERT INTO conveyor.job (task, queue, args, priority, state, run_at, created_at)
SELECT 'bench.noop', 'bench_backlog', jsonb_build_object('i', g), 0, 'available', now(), now()
  FROM generate_series(1, %(n)s) AS g
"""
# Waiting jobs of the same queue and task at a lower priority: claimed only after the run's own.
_FILL_LOWER_PRIORITY = """
INSERT INTO conveyor.job (task, queue, args, priority, state, run_at, created_at)
SELECT 'bench.noop', %(queue)s, jsonb_build_object('i', g), -1, 'available', now(), now()
  FROM generate_series(1, %(n)s) AS g
"""
# Finished jobs within retention (the pruner leaves them alone), finished_at in time order.
_FILL_HISTORY = """
INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                               errors, created_at, run_at, attempted_at, finished_at, result)
SELECT nextval('conveyor.job_id_seq'), 'bench.noop', %(queue)s, 'completed', 0, 1, 5,
       jsonb_build_object('i', g), '[]', t, t, t, t, NULL
  FROM generate_series(1, %(n)s) AS g,
       LATERAL (SELECT now() - interval '1 hour' + g * interval '1 millisecond') AS x(t)
"""

VARIANTS = {
    "hot_other_queue": ("job", _FILL_OTHER_QUEUE),
    "hot_lower_priority": ("job", _FILL_LOWER_PRIORITY),
    "history": ("job_done", _FILL_HISTORY),
}

_CLAIM = """
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH picked AS (
    SELECT j.id FROM conveyor.job j
     WHERE j.state = 'available' AND j.queue = %(queue)s AND j.task = ANY(%(tasks)s::text[])
     ORDER BY j.priority DESC, j.id LIMIT 100 FOR UPDATE SKIP LOCKED)
SELECT count(*) FROM picked
"""


def _vacuum(conn: psycopg.Connection[Any]) -> None:
    conn.execute("VACUUM (ANALYZE) conveyor.job")
    conn.execute("VACUUM (ANALYZE) conveyor.job_done")


def _load(conn: psycopg.Connection[Any], sql_text: str, n: int) -> float:
    t0 = time.perf_counter()
    conn.execute(sql_text, {"n": n, "queue": QUEUE})  # type: ignore[arg-type]
    _vacuum(conn)
    _settle(conn)
    return time.perf_counter() - t0


def _settle(conn: psycopg.Connection[Any]) -> None:
    """Write out the pages the filler (or its removal) dirtied before anything is timed: else
    the checkpointer writes them during the next drains, on the same two cores, and the drain
    measures that one-off cost instead of the filler's cost per job."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        log("W4: CHECKPOINT not allowed for this role; the drains may include the filler's writes")


def _sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    row = conn.execute(
        "SELECT pg_total_relation_size('conveyor.job'), pg_total_relation_size('conveyor.job_done')"
    ).fetchone()
    assert row is not None
    return {"job_bytes": int(row[0]), "job_done_bytes": int(row[1])}


def _explain_claim(conn: psycopg.Connection[Any]) -> str:
    """The claim's plan with n jobs of the run waiting (rolled back: nothing is claimed)."""
    with conn.transaction(force_rollback=True):
        rows = conn.execute(_CLAIM, {"queue": QUEUE, "tasks": ["bench.noop"]}).fetchall()
    return "\n".join(r[0] for r in rows)


def run(url: str, *, n: int, filler: int, reps: int, concurrency: int = 100) -> dict[str, Any]:
    out: dict[str, Any] = {"jobs": n, "filler": filler}
    base_runs = []
    with connect(url) as conn:
        for rep in range(reps):
            log(f"W4 empty tables rep {rep + 1}/{reps}")
            base_runs.append(drain_once(url, n, concurrency=concurrency, label="W4-empty"))
        base = summarize([r["rate"] for r in base_runs], "jobs/s")["median"]
        for name, (table, fill_sql) in VARIANTS.items():
            # an adjacent empty-table drain, so slow drift of the machine shows up as such
            log(f"W4 {name}: adjacent empty-table drain")
            local = drain_once(url, n, concurrency=concurrency, label="W4-empty")
            base_runs.append(local)
            truncate(conn)
            log(f"W4 {name}: loading {filler:,} filler rows into conveyor.{table}")
            load_s = _load(conn, fill_sql, filler)
            sizes = _sizes(conn)
            runs = []
            try:
                for rep in range(reps):
                    log(f"W4 {name} rep {rep + 1}/{reps}")
                    r = drain_once(url, n, concurrency=concurrency, clean=False, label=f"W4-{name}")
                    runs.append(r)
                    lo, hi = r["ids"]
                    conn.execute("DELETE FROM conveyor.job WHERE id BETWEEN %s AND %s", (lo, hi))
                    conn.execute(
                        "DELETE FROM conveyor.job_done WHERE id BETWEEN %s AND %s", (lo, hi)
                    )
                    _vacuum(conn)
                plan = _explain_plan_with_jobs(url, conn, n)
            finally:
                truncate(conn)  # remove the filler
                _settle(conn)
            # and one after, so that drift of the machine during the variant is bracketed
            log(f"W4 {name}: adjacent empty-table drain after")
            after = drain_once(url, n, concurrency=concurrency, label="W4-empty")
            base_runs.append(after)
            adjacent = (local["rate"] + after["rate"]) / 2
            fig = summarize([r["rate"] for r in runs], "jobs/s")
            fig.update(
                adjacent_empty_rate=round(adjacent, 1),
                adjacent_empty_rates=[round(local["rate"], 1), round(after["rate"], 1)],
                ratio_to_adjacent_empty=round(fig["median"] / adjacent, 3),
                **_cpu(runs),
                filler_table=f"conveyor.{table}",
                load_seconds=round(load_s, 1),
                **sizes,
                ratio_to_empty=round(fig["median"] / base, 3) if base and fig["median"] else None,
                claim_plan=plan,
            )
            out[name] = fig
            log(
                f"W4 {name}: {fig['median']:,.0f} jobs/s = {fig['ratio_to_adjacent_empty']}x"
                f" the adjacent empty drains ({fig['ratio_to_empty']}x all of them)"
            )
    # every empty-table drain (the first `reps` and one next to each variant) is the baseline
    out["empty"] = summarize([r["rate"] for r in base_runs], "jobs/s", **_cpu(base_runs))
    for name in VARIANTS:
        out[name]["ratio_to_empty"] = round(out[name]["median"] / out["empty"]["median"], 3)
    return out


def _cpu(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "worker_cpu_us_per_job": [round(1e6 * r["worker_cpu_s"] / r["jobs"], 1) for r in runs],
        "postgres_cpu_us_per_job": [round(1e6 * r["postgres_cpu_s"] / r["jobs"], 1) for r in runs],
        "machine_busy_pct": [r["machine_busy_pct"] for r in runs],
    }


def _explain_plan_with_jobs(url: str, conn: psycopg.Connection[Any], n: int) -> str:
    """EXPLAIN ANALYZE of the claim with the run's n jobs waiting on top of the filler."""
    from bench.app import app, noop

    with connect(url, autocommit=False) as tx:
        ids = app.enqueue_many_tx(tx, [noop.spec(i=i) for i in range(n)])
        tx.commit()
    conn.execute("ANALYZE conveyor.job")
    plan = _explain_claim(conn)
    conn.execute("DELETE FROM conveyor.job WHERE id BETWEEN %s AND %s", (min(ids), max(ids)))
    return plan
