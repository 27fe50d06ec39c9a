"""Workflows: what a durable step costs (docs/benchmarks.md, "Workflows").

- per step: runs of 10 no-op steps (bench.app:steps) started one at a time on an idle worker
  process; each run returns the seconds between consecutive step returns, measured in the
  worker (a step's whole cost there: the call, its record in Postgres, the code between). The
  first gap of a run (from the function's start) is left out. Also the run's latency, start
  commit to finish, by the database's clock.
- throughput: N runs of 10 no-op steps started in one transaction, drained by one worker
  process (--workflow-concurrency), then by `--processes 2` (when --processes lists 2); steps/s from
  the commit until every run is completed.
- fan-out: a workflow whose one step is ctx.map over 1,000 no-op child jobs
  (bench.workflow_app:fanout), with no bound and with concurrency=100 and 10, started one at a
  time on the same worker process(es): time from the start's commit until the parent run is
  completed (client clock, polled every 2 ms), children/s, and from the database's timestamps
  where the time went: the children's creation, the first child's claim, the last child's end
  (conveyor.job_done.finished_at) and the parent's own overhead after it (the run's
  finished_at minus the last child's finished_at: the wake-up, claim, replay that reads the
  1,000 results and completion of the parent's job).
- DBOS Transact (if installed by bench/peers/setup_dbos.sh): the same 10-step workflow, per step
  and throughput (as many runs at once as the worker's --workflow-concurrency), and the fan-out
  (a workflow that enqueues 1,000 no-op child workflows on a DBOS queue and waits for their
  results, no limit and worker_concurrency=100), in one process on the same Postgres
  (bench/peers/dbos_run.py).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.common import ROOT, CpuMeter, backend_pids, connect, log, percentile, truncate
from bench.workers import WorkerGroup
from bench.workflow_app import fanout, steps

STEPS = 10
FANOUT_CHILDREN = 1_000
#: ctx.map's `concurrency` for the fan-out: None (all children let go at once), then bounds.
FANOUT_BOUNDS: tuple[int | None, ...] = (None, 100, 10)
DBOS_PYTHON = ROOT / "bench" / ".peers" / "dbos-venv" / "bin" / "python"
DBOS_RUNNER = ROOT / "bench" / "peers" / "dbos_run.py"


def run(
    url: str,
    *,
    runs: int,
    sequential: int,
    reps: int,
    concurrency: int,
    processes: tuple[int, ...] = (1,),
    dbos: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {"steps_per_run": STEPS}
    with connect(url) as mon:
        for count in sorted(set(processes) | {1}):
            _clear(mon)
            label = f"workflows-{count}p"
            workers = _Workers(url, processes=count, concurrency=concurrency, label=label)
            workers.start()
            try:
                pids = workers.wait_ready(mon)
                if count == 1:
                    out["per_step"] = _per_step(url, mon, sequential)
                key = "throughput" if count == 1 else f"throughput_{count}p"
                out[key] = _throughput(url, mon, pids, runs, reps, tag=f"{count}p")
                out[key]["processes"] = count
                fkey = "fanout" if count == 1 else f"fanout_{count}p"
                out[fkey] = _fanout(url, mon, pids, FANOUT_CHILDREN, reps, tag=f"{count}p")
                out[fkey]["processes"] = count
            finally:
                workers.stop()
        _clear(mon)
    out["concurrency"] = concurrency
    out["dbos"] = (
        _dbos(url, runs=runs, sequential=sequential, reps=reps, concurrency=concurrency)
        if dbos
        else None
    )
    return out


class _Workers(WorkerGroup):
    """`conveyor worker bench.workflow_app:app`."""

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("bench.app:app")] = "bench.workflow_app:app"
        return cmd


def _per_step(url: str, mon: psycopg.Connection[Any], n: int) -> dict[str, Any]:
    """Runs one at a time: the step gaps the runs report, and start-to-finish latency."""
    gaps: list[float] = []
    latencies: list[float] = []
    for i in range(n):
        run_id = steps.start(run_id=f"seq-{i}", n=STEPS)
        row = _wait_finished(mon, run_id, timeout=30)
        result, latency = row
        gaps.extend(list(result)[1:])
        latencies.append(latency)
    gaps_ms = sorted(1000 * g for g in gaps)
    lat_ms = sorted(1000 * s for s in latencies)
    figure = {
        "runs": n,
        "step_ms_median": round(statistics.median(gaps_ms), 3),
        "step_ms_p95": round(percentile(gaps_ms, 95) or 0, 3),
        "step_ms_p99": round(percentile(gaps_ms, 99) or 0, 3),
        "run_latency_ms_median": round(statistics.median(lat_ms), 2),
        "run_latency_ms_p95": round(percentile(lat_ms, 95) or 0, 2),
    }
    log(
        f"workflows per step ({n} runs one at a time): median {figure['step_ms_median']} ms,"
        f" p95 {figure['step_ms_p95']} ms; run of {STEPS} steps: median"
        f" {figure['run_latency_ms_median']} ms"
    )
    return figure


def _wait_finished(
    mon: psycopg.Connection[Any], run_id: str, *, timeout: float
) -> tuple[Any, float]:
    """Poll (every 2 ms) until the run is completed: its result and its latency (created_at
    to finished_at, by the database's clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = mon.execute(
            "SELECT state, result, extract(epoch FROM finished_at - created_at)"
            "  FROM conveyor.workflow_runs WHERE id = %s",
            (run_id,),
        ).fetchone()
        if row and row[0] == "completed":
            return row[1], float(row[2])
        if row and row[0] in ("failed", "cancelled"):
            raise RuntimeError(f"run {run_id} ended {row[0]}")
        time.sleep(0.002)
    raise RuntimeError(f"run {run_id} did not finish within {timeout:.0f}s")


def _throughput(
    url: str, mon: psycopg.Connection[Any], pids: list[int], runs: int, reps: int, *, tag: str
) -> dict[str, Any]:
    rates, cpu_per_step, pg_per_step, seconds = [], [], [], []
    for rep in range(reps):
        with psycopg.connect(url) as tx:
            for i in range(runs):
                steps.start_tx(tx, run_id=f"tp-{tag}-{rep}-{i}", n=STEPS)
            tx.commit()
            t0 = time.perf_counter()
        worker_cpu = CpuMeter(pids)
        worker_cpu.begin()
        db_cpu = CpuMeter(backend_pids(mon))
        db_cpu.begin()
        deadline = time.monotonic() + 120 + runs / 10
        while True:
            row = mon.execute(
                "SELECT count(*) FROM conveyor.workflow_runs"
                " WHERE id LIKE %s AND state = 'completed'",
                (f"tp-{tag}-{rep}-%",),
            ).fetchone()
            if row and row[0] == runs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{runs} runs did not finish; {row[0] if row else 0} did")
            time.sleep(0.05)
        took = time.perf_counter() - t0
        wcpu = worker_cpu.end()
        dcpu = db_cpu.end(backend_pids(mon))
        total = runs * STEPS
        rates.append(total / took)
        seconds.append(took)
        cpu_per_step.append(1000 * wcpu["cpu_s"] / total)
        pg_per_step.append(1000 * dcpu["cpu_s"] / total)
        log(
            f"workflows throughput {tag} rep {rep + 1}/{reps}: {runs} runs x {STEPS} steps in"
            f" {took:.2f}s = {total / took:,.0f} steps/s (worker cpu {wcpu['cpu_s']:.1f}s,"
            f" postgres cpu {dcpu['cpu_s']:.1f}s)"
        )
    return {
        "runs": runs,
        "steps": runs * STEPS,
        "steps_per_s_median": round(statistics.median(rates), 1),
        "steps_per_s_runs": [round(r, 1) for r in rates],
        "seconds": [round(s, 2) for s in seconds],
        "worker_cpu_ms_per_step": round(statistics.median(cpu_per_step), 3),
        "postgres_cpu_ms_per_step": round(statistics.median(pg_per_step), 3),
    }


#: Where a fan-out's time went, by the database's clock (seconds from the run's created_at, but
#: the last: from the last child's end). now() in Postgres is its transaction's start.
_FANOUT_TIMES = """
SELECT count(*) FILTER (WHERE d.state = 'completed'),
       extract(epoch FROM s.started_at - r.created_at),
       extract(epoch FROM min(d.attempted_at) - r.created_at),
       extract(epoch FROM max(d.finished_at) - r.created_at),
       extract(epoch FROM r.finished_at - r.created_at),
       extract(epoch FROM s.finished_at - max(d.finished_at)),
       extract(epoch FROM r.finished_at - max(d.finished_at))
  FROM conveyor.workflow_runs r
  JOIN conveyor.workflow_steps s ON s.run_id = r.id AND s.position = 0
  JOIN conveyor.workflow_children c ON c.run_id = r.id AND c.position = 0
  JOIN conveyor.job_done d ON d.id = c.job_id
 WHERE r.id = %s
 GROUP BY r.id, s.run_id, s.position
"""


def _fanout(
    url: str, mon: psycopg.Connection[Any], pids: list[int], n: int, reps: int, *, tag: str
) -> dict[str, Any]:
    """One ctx.map of `n` no-op children per rep, for each bound of FANOUT_BOUNDS."""
    out: dict[str, Any] = {"children": n}
    for bound in FANOUT_BOUNDS:
        key = "unbounded" if bound is None else f"concurrency_{bound}"
        rows: list[dict[str, float]] = []
        for rep in range(reps):
            run_id = f"fan-{tag}-{key}-{rep}"
            with psycopg.connect(url) as tx:
                fanout.start_tx(tx, run_id=run_id, n=n, concurrency=bound)
                tx.commit()
                t0 = time.perf_counter()
            worker_cpu = CpuMeter(pids)
            worker_cpu.begin()
            db_cpu = CpuMeter(backend_pids(mon))
            db_cpu.begin()
            result, _ = _wait_finished(mon, run_id, timeout=120 + n / 10)
            took = time.perf_counter() - t0
            wcpu = worker_cpu.end()
            dcpu = db_cpu.end(backend_pids(mon))
            times = mon.execute(_FANOUT_TIMES, (run_id,)).fetchone()
            if result != n or times is None or times[0] != n:
                raise RuntimeError(f"fan-out {run_id}: result {result!r}, children {times}")
            row = {
                "seconds": took,
                "children_per_s": n / took,
                "db_run_s": float(times[4]),
                "children_created_ms": 1000 * float(times[1]),
                "first_child_claimed_ms": 1000 * float(times[2]),
                "last_child_finished_ms": 1000 * float(times[3]),
                "step_ended_after_last_child_ms": 1000 * float(times[5]),
                "parent_overhead_ms": 1000 * float(times[6]),
                "worker_cpu_ms_per_child": 1000 * wcpu["cpu_s"] / n,
                "postgres_cpu_ms_per_child": 1000 * dcpu["cpu_s"] / n,
            }
            rows.append(row)
            log(
                f"workflows fan-out {tag} {key} rep {rep + 1}/{reps}: {n} children in"
                f" {took:.2f}s = {n / took:,.0f} children/s; by the database: children created"
                f" at {row['children_created_ms']:.0f} ms, first claimed at"
                f" {row['first_child_claimed_ms']:.0f} ms, last finished at"
                f" {row['last_child_finished_ms']:.0f} ms, parent completed"
                f" {row['parent_overhead_ms']:.1f} ms after it (worker cpu {wcpu['cpu_s']:.2f}s,"
                f" postgres cpu {dcpu['cpu_s']:.2f}s)"
            )
        figure: dict[str, Any] = {"concurrency": bound, "reps": reps}
        for name in rows[0]:
            values = [r[name] for r in rows]
            figure[f"{name}_median"] = round(statistics.median(values), 3)
            figure[f"{name}_runs"] = [round(v, 3) for v in values]
        out[key] = figure
    return out


def _dbos(
    url: str, *, runs: int, sequential: int, reps: int, concurrency: int
) -> dict[str, Any] | None:
    """DBOS Transact's run of the same workflow, on a database of its own on this server."""
    if not DBOS_PYTHON.exists():
        log(f"workflows: DBOS not compared ({DBOS_PYTHON} missing: bash bench/peers/setup_dbos.sh)")
        return None
    params = conninfo_to_dict(url)
    dbname = f"{params.get('dbname') or 'conveyor_bench'}_dbos"
    dbos_url = _as_url(make_conninfo(url, dbname=dbname))
    args = [str(DBOS_PYTHON), str(DBOS_RUNNER), "--database-url", dbos_url]
    args += ["--runs", str(runs), "--sequential", str(sequential), "--reps", str(reps)]
    args += ["--concurrency", str(concurrency), "--fanout", str(FANOUT_CHILDREN)]
    log(f"workflows: DBOS Transact on {dbname}")
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        log(f"workflows: DBOS run failed:\n{done.stderr[-3000:]}")
        return {"error": done.stderr[-500:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(
        f"workflows DBOS {result.get('version')}: per step median"
        f" {result['per_step']['step_ms_median']} ms; throughput"
        f" {result['throughput']['steps_per_s_median']:,.0f} steps/s"
    )
    for key, fig in (result.get("fanout") or {}).items():
        if isinstance(fig, dict):
            log(
                f"workflows DBOS fan-out {key}: {fig['children_per_s_median']:,.0f} children/s"
                f" ({fig['seconds_median']:.2f}s), parent {fig['parent_overhead_ms_median']:.0f} ms"
                " after its last child"
            )
    return result


def _as_url(conninfo: str) -> str:
    p = conninfo_to_dict(conninfo)
    auth = str(p.get("user") or "postgres")
    if p.get("password"):
        auth += f":{p['password']}"
    host = p.get("host") or "127.0.0.1"
    return f"postgresql://{auth}@{host}:{p.get('port') or 5432}/{p['dbname']}"


def _clear(conn: psycopg.Connection[Any]) -> None:
    truncate(conn)
    conn.execute("TRUNCATE conveyor.workflow_runs CASCADE")
