"""`python -m bench [workload ...] [--quick] [--peers all]`: Conveyor's benchmark.

With no workload named it runs them all, W5 (the sustained run) last. Results: a table on
stdout, bench/results/latest.json (sections of this run replace those of earlier runs) and a
dated copy of this run. A --quick run writes to the temp dir instead (conveyor-bench/quick/),
so a smoke run never replaces the documented figures. docs/benchmarks.md explains them all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench import report
from bench.common import (
    RESULTS,
    ROOT,
    connect,
    database_url,
    log,
    machine_facts,
    prepare_database,
    server_facts,
)
from bench.workers import LOG_DIR

WORKLOADS = (
    "import",
    "enqueue",
    "drain",
    "latency",
    "scale",
    "peers",
    "duel",
    "hotpath",
    "deliver",
    "workflows",
    "hosts",
    "api",
    "sustained",
)
#: Run only when named: hosts needs what a plain run may not have (root, for network
#: namespaces); duel repeats what drain and peers measure, interleaved.
ON_REQUEST = ("hosts", "duel")
ALIASES = {"w1": "enqueue", "w2": "drain", "w3": "latency", "w4": "scale", "w5": "sustained"}

FULL = {
    "reps": 3,
    "single": 5_000,
    "bulk": 100_000,
    "drain": 50_000,
    "rate": 500.0,
    "duration": 20.0,
    "scale_jobs": 50_000,
    "filler": 1_000_000,
    "w5_rate": 200.0,
    "w5_minutes": 10.0,
    "hotpath_jobs": 20_000,
    "import_reps": 20,
    "deliver_jobs": 20_000,
    "workflow_runs": 1_000,
    "workflow_sequential": 200,
    "hosts_jobs": 20_000,
    "api_jobs": 5_000,
}
QUICK = {
    "reps": 1,
    "single": 500,
    "bulk": 10_000,
    "drain": 5_000,
    "rate": 500.0,
    "duration": 5.0,
    "scale_jobs": 5_000,
    "filler": 100_000,
    "w5_rate": 200.0,
    "w5_minutes": 1.0,
    "hotpath_jobs": 2_000,
    "import_reps": 5,
    "deliver_jobs": 2_000,
    "workflow_runs": 100,
    "workflow_sequential": 20,
    "hosts_jobs": 5_000,
    "api_jobs": 500,
}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="workloads: import (time of `import conveyor`), enqueue (W1), drain (W2),"
        " latency (W3), scale (W4), peers, hotpath (asyncpg vs psycopg), deliver (HTTP delivery),"
        " workflows (10-step durable workflows; DBOS beside it if installed), hosts (the drain on"
        " 1..4 network-namespace hosts; root; only when named), duel (drains beside BullMQ,"
        " interleaved round by round; only when named),"
        " api (enqueue over the REST API beside the direct SQL enqueue),"
        " sustained (W5);"
        " 'table' reprints latest.json, 'plot' redraws docs/img/w5.png from it",
    )
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="default: all of them")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repetition (~2 min)")
    p.add_argument("--peers", help="bullmq,pgboss,procrastinate,pgqueuer or 'all'")
    p.add_argument("--reps", type=int, help="repetitions per figure (3; quick: 1)")
    p.add_argument("--single", type=int, help="W1 jobs per single-enqueue run (5,000)")
    p.add_argument("--bulk", type=int, help="W1 jobs per bulk run (100,000)")
    p.add_argument("--drain", type=int, help="W2 jobs per drain (50,000)")
    p.add_argument("--rate", type=float, help="W3 send rate, jobs/s (500)")
    p.add_argument("--duration", type=float, help="W3 seconds of sending (20)")
    p.add_argument("--half-load-rate", type=float, help="W3 second rate (default: 50%% of W2 1p)")
    p.add_argument("--scale-jobs", type=int, help="W4 jobs per drain (50,000)")
    p.add_argument("--filler", type=int, help="W4 filler rows (1,000,000)")
    p.add_argument("--w5-rate", type=float, help="W5 jobs/s (200)")
    p.add_argument("--w5-minutes", type=float, help="W5 minutes (10; quick: 1)")
    p.add_argument("--hotpath-jobs", type=int, help="hotpath jobs per run (20,000)")
    p.add_argument("--import-reps", type=int, help="fresh interpreters timed by 'import' (20)")
    p.add_argument("--deliver-jobs", type=int, help="deliver: jobs per run (20,000)")
    p.add_argument("--workflow-runs", type=int, help="workflows: runs per throughput rep (1,000)")
    p.add_argument(
        "--workflow-sequential", type=int, help="workflows: runs timed one at a time (200)"
    )
    p.add_argument(
        "--workflow-concurrency",
        type=int,
        default=30,
        help="workflows: worker --concurrency, and DBOS's runs at once (30: a workflow worker's"
        " pool holds 4 + concurrency connections)",
    )
    p.add_argument("--api-jobs", type=int, help="api: jobs per run (5,000)")
    p.add_argument("--no-dbos", action="store_true", help="workflows: skip DBOS Transact")
    p.add_argument("--concurrency", type=int, default=100, help="worker --concurrency (100)")
    p.add_argument("--processes", default="1,2", help="W2 worker process counts (1,2)")
    p.add_argument("--handler", choices=("async", "sync"), default="async", help="W2 handler")
    p.add_argument("--no-profile", action="store_true", help="W2: skip the py-spy run")
    p.add_argument("--hosts-jobs", type=int, help="jobs per drain of `hosts` (20,000)")
    p.add_argument(
        "--duel-concurrency",
        type=int,
        help="`duel`: this concurrency for both systems (else Conveyor 100, BullMQ 50)",
    )
    p.add_argument("--max-hosts", type=int, default=4, help="`hosts`: 1..this many hosts (4)")
    p.add_argument("--force-database", action="store_true", help="allow a non-bench database")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    names = [ALIASES.get(w.lower(), w.lower()) for w in args.workloads]
    if names in (["table"], ["plot"]):
        args.workloads = names
        return args
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    if not names:
        names = [w for w in WORKLOADS if (w != "peers" or args.peers) and w not in ON_REQUEST]
    if "peers" in names and not args.peers:
        args.peers = "all"
    args.workloads = [w for w in WORKLOADS if w in names]  # W5 always last
    return args


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" (src modified)" if dirty else "")


def _previous_drain_rate() -> float | None:
    latest = RESULTS / "latest.json"
    if not latest.exists():
        return None
    try:
        data = json.loads(latest.read_text())
    except json.JSONDecodeError:
        return None
    fig = data.get("workloads", {}).get("W2", {}).get("drain_1p", {})
    median = fig.get("median")
    return float(median) if median else None


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.workloads == ["table"]:
        data = json.loads((RESULTS / "latest.json").read_text())
        print(report.format_table(report.rows(data)))
        return 0
    if args.workloads == ["plot"]:
        from bench.sustained import plot

        data = json.loads((RESULTS / "latest.json").read_text())
        plot(data["workloads"]["W5"], ROOT / "docs" / "img" / "w5.png")
        return 0

    out_dir = LOG_DIR / "quick" if args.quick else RESULTS
    plot_to = out_dir / "w5.png" if args.quick else ROOT / "docs" / "img" / "w5.png"
    url = database_url()
    prepare_database(url, force=args.force_database)
    with connect(url) as conn:
        server = server_facts(conn)
    settings = {
        k: getattr(args, k)
        for k in (*FULL, "concurrency", "processes", "handler", "workflow_concurrency")
    }
    results: dict[str, Any] = {
        "meta": {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "git": _git(),
            "machine": machine_facts(),
            "postgres": server,
            "settings": settings,
        },
        "workloads": {},
        "peers": {},
    }
    log(f"database {url}; workloads: {', '.join(args.workloads)}; settings {settings}")
    work = results["workloads"]

    def save(section: str) -> None:
        work[section]["measured_at_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        report.write(results, out_dir)

    if "import" in args.workloads:
        from bench import import_time

        work["import"] = import_time.run(args.import_reps)
        save("import")
    if "enqueue" in args.workloads:
        from bench import enqueue

        work["W1"] = enqueue.run(url, single=args.single, bulk=args.bulk, reps=args.reps)
        save("W1")
    drain_rate = None
    if "drain" in args.workloads:
        from bench import drain

        processes = tuple(int(x) for x in args.processes.split(","))
        work["W2"] = drain.run(
            url,
            n=args.drain,
            reps=args.reps,
            processes=processes,
            concurrency=args.concurrency,
            handler=args.handler,
            profile=not args.no_profile,
        )
        save("W2")
        drain_rate = work["W2"].get("drain_1p", {}).get("median")
    if "latency" in args.workloads:
        from bench import latency

        drain_rate = drain_rate or _previous_drain_rate()
        rates = {"fixed_rate": args.rate}
        half = args.half_load_rate or (round(drain_rate / 2) if drain_rate else None)
        if half:
            rates["half_load"] = half
        work["W3"] = latency.run(
            url,
            rates=rates,
            duration=args.duration,
            reps=args.reps,
            concurrency=args.concurrency,
            drain_rate=drain_rate,
        )
        save("W3")
    if "scale" in args.workloads:
        from bench import scale

        work["W4"] = scale.run(
            url, n=args.scale_jobs, filler=args.filler, reps=args.reps, concurrency=args.concurrency
        )
        save("W4")
    if "peers" in args.workloads:
        from bench import peers_bench

        results["peers"] = peers_bench.run(
            url,
            peers_bench.parse_peers(args.peers),
            single=args.single,
            bulk=args.bulk,
            drain=args.drain,
            rate=args.rate,
            duration=args.duration,
            reps=args.reps,
        )
        report.write(results, out_dir)
    if "duel" in args.workloads:
        from bench import duel

        work["duel"] = duel.run(
            url, n=args.drain, reps=args.reps, concurrency=args.duel_concurrency
        )
        save("duel")
    if "hotpath" in args.workloads:
        from bench import asyncpg_vs_psycopg

        work["hotpath"] = asyncpg_vs_psycopg.run(url, jobs=args.hotpath_jobs, reps=args.reps)
        save("hotpath")
    if "deliver" in args.workloads:
        from bench import deliver

        work["deliver"] = deliver.run(
            url,
            n=args.deliver_jobs,
            reps=args.reps,
            processes=tuple(int(x) for x in args.processes.split(",")),
            profile=not args.no_profile,
        )
        save("deliver")
    if "workflows" in args.workloads:
        from bench import workflows

        work["workflows"] = workflows.run(
            url,
            runs=args.workflow_runs,
            sequential=args.workflow_sequential,
            reps=args.reps,
            concurrency=args.workflow_concurrency,
            processes=tuple(int(x) for x in args.processes.split(",")),
            dbos=not args.no_dbos,
        )
        save("workflows")
    if "hosts" in args.workloads:
        from bench import hosts

        work["hosts"] = hosts.run(n=args.hosts_jobs, reps=args.reps, max_hosts=args.max_hosts)
        save("hosts")
        print(hosts.table(work["hosts"]))
    if "api" in args.workloads:
        from bench import api

        work["api"] = api.run(url, n=args.api_jobs, reps=args.reps)
        save("api")
    if "sustained" in args.workloads:
        from bench import sustained

        work["W5"] = sustained.run(url, rate=args.w5_rate, seconds=60 * args.w5_minutes)
        save("W5")
        sustained.plot(work["W5"], plot_to)
        log(f"wrote {plot_to}")
    merged = report.write(results, out_dir)
    print(report.format_table(merged["table"]))
    print(f"\nresults: {out_dir / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
