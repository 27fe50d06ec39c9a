"""Peers side by side: bench/peers/ runners for W1 (single, bulk), W2 drain and W3 latency with
the same N and rate as Conveyor, on the same PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from bench.common import ROOT, log, summarize

PEERS = ("bullmq", "pgboss", "procrastinate", "pgqueuer")
#: Peers whose runner has the enqueue_concurrent workload.
CONCURRENT_ENQUEUE = ("bullmq",)
_PEERS_PY = str(ROOT / "bench" / ".peers" / "venv" / "bin" / "python")
RUNNERS = {
    "bullmq": ["node", "bench/peers/bullmq.mjs"],
    "pgboss": ["node", "bench/peers/pgboss.mjs"],
    "procrastinate": [_PEERS_PY, "bench/peers/procrastinate_run.py"],
    "pgqueuer": [_PEERS_PY, "bench/peers/pgqueuer_run.py"],
}
# pg-boss is compared in batch mode (one fetch of up to 100 jobs per poll), the target.
EXTRA = {"pgboss": ["--batch-size", "100"]}
SLOW_DRAIN_S = 120  # a drain this slow is run once, not `reps` times (noted in the output)


def parse_peers(text: str | None) -> list[str]:
    if not text:
        return []
    names = PEERS if text.strip() == "all" else [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peer(s) {unknown}; choose from {', '.join(PEERS)} or 'all'")
    return list(names)


def _env(url: str) -> dict[str, str]:
    p = conninfo_to_dict(url)
    user = p.get("user") or "postgres"
    auth = f"{user}:{p['password']}" if p.get("password") else str(user)
    server = f"postgres://{auth}@{p.get('host') or '127.0.0.1'}:{p.get('port') or 5432}"
    return {**os.environ, "BENCH_PG_SERVER": server}


def setup() -> None:
    log("peers: bash bench/peers/setup.sh")
    subprocess.run(
        ["bash", "bench/peers/setup.sh"], cwd=ROOT, check=True, timeout=900, stdout=sys.stderr
    )


def run_one(
    url: str,
    peer: str,
    workload: str,
    args: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    cmd = [*RUNNERS[peer], "--workload", workload, *args, *EXTRA.get(peer, [])]
    cmd += ["--timeout", str(int(timeout))]
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**_env(url), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout + 60,
        )
    except subprocess.TimeoutExpired:
        return {"peer": peer, "workload": workload, "error": "runner did not exit in time"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        return {"peer": peer, "workload": workload, "error": f"no output (exit {proc.returncode})"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["cmd"] = " ".join(cmd).replace(str(ROOT) + "/", "")
    shown = {k: result.get(k) for k in ("rate", "p50_ms", "p99_ms", "error") if k in result}
    log(f"peers {peer} {workload}: {shown}")
    return result


def run(
    url: str,
    peers: list[str],
    *,
    single: int,
    bulk: int,
    drain: int,
    rate: float,
    duration: float,
    reps: int,
) -> dict[str, Any]:
    setup()
    out: dict[str, Any] = {}
    for peer in peers:
        res: dict[str, Any] = {}
        for workload, args, unit, key in (
            ("enqueue_single", ["--jobs", str(single)], "jobs/s", "rate"),
            ("enqueue_bulk", ["--jobs", str(bulk)], "jobs/s", "rate"),
        ):
            runs = [run_one(url, peer, workload, args, 600) for _ in range(reps)]
            res[workload] = _figure(runs, unit, key, jobs=int(args[1]))
        if peer in CONCURRENT_ENQUEUE:
            # 16 callers each awaiting one add at a time (W1's threads16/tasks16 figures)
            args = ["--jobs", str(single), "--concurrency", "16"]
            runs = [run_one(url, peer, "enqueue_concurrent", args, 600) for _ in range(reps)]
            res["enqueue_concurrent"] = _figure(runs, "jobs/s", "rate", jobs=single)
        runs = []
        for _ in range(reps):
            r = run_one(url, peer, "drain", ["--jobs", str(drain)], 120 + drain / 50)
            runs.append(r)
            if "error" in r or r.get("seconds", 0) > SLOW_DRAIN_S:
                break
        res["drain"] = _figure(runs, "jobs/s", "rate", jobs=drain)
        if len(runs) < reps and "error" not in runs[-1]:
            res["drain"]["note"] = f"run once: one drain took over {SLOW_DRAIN_S}s"
        if peer == "bullmq":
            # the default above keeps a bounded history (removeOnComplete: {count: 1000});
            # this one removes every completed job (removeOnComplete: true), labelled as such
            every = {"BENCH_BULLMQ_REMOVE_ON_COMPLETE": "true"}
            runs = [
                run_one(url, peer, "drain", ["--jobs", str(drain)], 120 + drain / 50, every)
                for _ in range(reps)
            ]
            res["drain_remove_on_complete_true"] = _figure(runs, "jobs/s", "rate", jobs=drain)
            res["drain"]["remove_on_complete"] = "count:1000"
        runs = [
            run_one(url, peer, "latency", ["--rate", str(rate), "--duration", str(duration)], 600)
            for _ in range(reps)
        ]
        res["latency"] = {
            k: _figure(runs, "ms", k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
        }
        res["latency"]["rate"] = rate
        res["latency"]["duration_s"] = duration
        res["latency"]["processed"] = [r.get("count") for r in runs]
        res["latency"]["sent"] = [r.get("sent") for r in runs]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            res["latency"]["error"] = errors[0]
        res["version"] = next((r.get("version") for r in runs if r.get("version")), None)
        out[peer] = res
    return out


def _figure(runs: list[dict[str, Any]], unit: str, key: str, **extra: Any) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r or key.endswith("_ms")]
    fig = summarize([r[key] for r in good if r.get(key) is not None], unit, **extra)
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        fig["error"] = errors[0]
    fig["cmd"] = runs[0].get("cmd") if runs else None
    for k in ("variant", "concurrency", "batch_size", "work_loops", "polling_interval_s"):
        if runs and k in runs[0]:
            fig[k] = runs[0][k]
    return fig
