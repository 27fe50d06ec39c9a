"""Drains beside BullMQ, interleaved round by round: `python -m bench duel [--reps N]`.

This VM's speed moves by a quarter within minutes (docs/benchmarks.md: the same code drained
10,000 to 20,000 jobs/s in one W4 run), so a ratio is only worth something between drains run
next to each other. Each round drains `--drain` no-op jobs with, in turn: Conveyor with one
worker process, BullMQ with `removeOnComplete: true` (its fastest documented setting),
Conveyor with two processes, BullMQ with `removeOnComplete: {count: 1000}` (the runner's
default), and Conveyor with one process and relaxed transitions (docs/worker.md). The ratios
are per round, then their median. Concurrency: Conveyor's 100 and the BullMQ runner's 50 (as in
`peers`), or `--concurrency N` for both.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench.common import log
from bench.drain import drain_once
from bench.peers_bench import run_one, setup

RELAXED_ENV = "CONVEYOR_RELAXED_TRANSITIONS"


def _conveyor(url: str, n: int, processes: int, relaxed: bool, concurrency: int) -> float:
    saved = os.environ.get(RELAXED_ENV)
    os.environ[RELAXED_ENV] = "1" if relaxed else "0"
    try:
        r = drain_once(url, n, processes=processes, concurrency=concurrency, label="duel")
        return float(r["rate"])
    finally:
        if saved is None:
            os.environ.pop(RELAXED_ENV, None)
        else:
            os.environ[RELAXED_ENV] = saved


def _bullmq(url: str, n: int, remove_true: bool, concurrency: int | None) -> float | None:
    env = {"BENCH_BULLMQ_REMOVE_ON_COMPLETE": "true"} if remove_true else None
    args = ["--jobs", str(n)] + (["--concurrency", str(concurrency)] if concurrency else [])
    result = run_one(url, "bullmq", "drain", args, 120 + n / 50, env)
    rate = result.get("rate")
    return float(rate) if rate else None


def run(url: str, *, n: int, reps: int, concurrency: int | None = None) -> dict[str, Any]:
    setup()
    ours = concurrency or 100
    rounds: list[dict[str, float | None]] = []
    for rep in range(reps):
        log(f"duel round {rep + 1}/{reps}")
        r: dict[str, float | None] = {}
        r["conveyor_1p"] = _conveyor(url, n, 1, False, ours)
        r["bullmq_remove_true"] = _bullmq(url, n, True, concurrency)
        r["conveyor_2p"] = _conveyor(url, n, 2, False, ours)
        r["bullmq_count_1000"] = _bullmq(url, n, False, concurrency)
        r["conveyor_1p_relaxed"] = _conveyor(url, n, 1, True, ours)
        rounds.append(r)
        log(f"duel round {rep + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in r.items() if v))
    out: dict[str, Any] = {
        "jobs": n,
        "concurrency": {"conveyor": ours, "bullmq": concurrency or 50},
        "rounds": rounds,
    }
    for mine in ("conveyor_1p", "conveyor_2p", "conveyor_1p_relaxed"):
        for peer in ("bullmq_remove_true", "bullmq_count_1000"):
            ratios = [
                r[mine] / r[peer]  # type: ignore[operator]
                for r in rounds
                if r[mine] and r[peer]
            ]
            if ratios:
                out[f"{mine}_vs_{peer}"] = {
                    "per_round": [round(x, 3) for x in ratios],
                    "median": round(statistics.median(ratios), 3),
                }
    for key, value in out.items():
        if key.endswith(("_true", "_1000")):
            log(f"duel {key}: {value['per_round']} (median {value['median']})")
    return out
