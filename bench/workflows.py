"""Workflows: what a durable step costs (docs/benchmarks.md, "Workflows").

- per step: runs of 10 no-op steps (bench.app:steps) started one at a time on an idle worker
  process; each run returns the seconds between consecutive step returns, measured in the
  worker (a step's whole cost there: the call, its record in Postgres, the code between). The
  first gap of a run (from the function's start) is left out. Also the run's latency, start
  commit to finish, by the database's clock.
- throughput: N runs of 10 no-op steps started in one transaction, drained by one worker
  process (--workflow-concurrency), then by `--processes 2` (when --processes lists 2); steps/s from
  the commit until every run is completed.
- fan-out: 1,000 children through ctx.map, when the engine has it.
- DBOS Transact (if installed by bench/peers/setup_dbos.sh): the same 10-step workflow, per step
  and throughput (as many runs at once as the worker's --workflow-concurrency), in one process
  on the same Postgres (bench/peers/dbos_run.py).
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
from bench.workflow_app import steps
from conveyor import WorkflowContext

STEPS = 10
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
            finally:
                workers.stop()
        _clear(mon)
    if not hasattr(WorkflowContext, "map"):
        note = "skipped: the engine has no ctx.map yet (1,000-child fan-out not measured)"
        log(f"workflows fan-out {note}")
        out["fanout"] = {"note": note}
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
        gaps.extend(result[1:])
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
) -> tuple[list[float], float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = mon.execute(
            "SELECT state, result, extract(epoch FROM finished_at - created_at)"
            "  FROM conveyor.workflow_runs WHERE id = %s",
            (run_id,),
        ).fetchone()
        if row and row[0] == "completed":
            return list(row[1]), float(row[2])
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
    args += ["--concurrency", str(concurrency)]
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
