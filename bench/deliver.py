"""`deliver`: N pre-enqueued delivery jobs POSTed by `conveyor deliver` to a local receiver.

The receiver is a tiny Node `http` server (bench/receiver.js: one process, keep-alive, answers
200 `{}` at once), so the figure is Conveyor's cost per delivery, not a route's. An endpoint
`bench-deliver` points at it; `conveyor deliver --queues bench --allow-network 127.0.0.0/8`
starts first and registers; then N jobs are enqueued in ONE transaction. The clock starts when
the commit returns and stops when all N are completed in conveyor.job_done (polled every
50 ms), as in W2. CPU of the worker processes, the receiver and the Postgres backends is
counted over the timed span.

    python -m bench deliver [--deliver-jobs 20000] [--reps 3]
    python -m bench.deliver            # alone, same defaults
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.app import QUEUE, app
from bench.common import (
    CpuMeter,
    backend_pids,
    connect,
    database_url,
    log,
    prepare_database,
    summarize,
    truncate,
    wait_completed,
)
from bench.profile_summary import self_by_package, summarize_raw
from bench.workers import LOG_DIR, Profiler, WorkerGroup
from conveyor.spec import JobSpec

ENDPOINT = "bench-deliver"
RECEIVER_JS = Path(__file__).with_name("receiver.js")
ALLOW = "127.0.0.0/8"
#: `conveyor deliver`'s default --concurrency, and a larger one
CONCURRENCIES = (10, 100)


class Receiver:
    """The Node receiver on a free loopback port; counts the requests it answered."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("bench deliver needs node (the receiver is bench/receiver.js)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [node, str(RECEIVER_JS), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"receiver did not start: {line!r}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jobs"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class DeliverGroup(WorkerGroup):
    """`conveyor deliver` (no application module) on queue `bench`, loopback allowed."""

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "conveyor", "deliver", "--queues", QUEUE]
        cmd += ["--concurrency", str(self.concurrency), "--allow-network", ALLOW]
        if self.processes > 1:
            cmd += ["--processes", str(self.processes)]
        return cmd


def _endpoint(url: str) -> None:
    client = app.client()
    if any(e.name == ENDPOINT for e in client.endpoints()):
        client.remove_endpoint(ENDPOINT)
    client.add_endpoint(ENDPOINT, url, "bench-secret-not-a-real-one", timeout=30, queue=QUEUE)


def deliver_once(
    url: str,
    receiver: Receiver,
    n: int,
    *,
    processes: int,
    concurrency: int,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    specs = [JobSpec(ENDPOINT, json.dumps({"i": i}), queue=QUEUE) for i in range(n)]
    label = f"deliver-{processes}p-c{concurrency}"
    with connect(url) as mon:
        truncate(mon)
        workers = DeliverGroup(url, processes=processes, concurrency=concurrency, label=label)
        workers.start()
        profiler = None
        try:
            pids = workers.wait_ready(mon)
            if profile_to is not None:
                profiler = Profiler(pids[0], profile_to)
                profiler.start()
            with connect(url, autocommit=False) as tx:
                ids = app.enqueue_many_tx(tx, specs)
                tx.commit()
                t0 = time.perf_counter()
            worker_cpu = CpuMeter(pids)
            worker_cpu.begin()
            recv_cpu = CpuMeter([receiver.pid])
            recv_cpu.begin()
            db_cpu = CpuMeter(backend_pids(mon))
            db_cpu.begin()
            lo, hi = min(ids), max(ids)
            done, t1 = wait_completed(mon, lo, hi, n, timeout=60 + n / 50)
            seconds = t1 - t0
            wcpu = worker_cpu.end()
            rcpu = recv_cpu.end()
            dcpu = db_cpu.end(backend_pids(mon))
            if profiler is not None:
                profiler.stop()
                profiler = None
            failed = mon.execute(
                "SELECT count(*) FROM conveyor.job_done WHERE id BETWEEN %s AND %s"
                " AND state <> 'completed'",
                (lo, hi),
            ).fetchone()
        finally:
            if profiler is not None:
                profiler.stop()
            workers.stop()
    if not done:
        raise RuntimeError(
            f"deliver: {n} deliveries did not finish ({failed[0] if failed else '?'} not"
            f" completed); see {workers.log_path}"
        )
    rate = n / seconds
    log(
        f"deliver n={n} processes={processes} concurrency={concurrency}: {seconds:.2f}s ="
        f" {rate:,.0f} deliveries/s (worker cpu {wcpu['cpu_s']:.1f}s, receiver cpu"
        f" {rcpu['cpu_s']:.1f}s, postgres cpu {dcpu['cpu_s']:.1f}s, machine busy"
        f" {wcpu['machine_busy_pct']}%, steal {wcpu['machine_steal_pct']}%)"
    )
    return {
        "jobs": n,
        "seconds": round(seconds, 3),
        "rate": rate,
        "worker_cpu_s": wcpu["cpu_s"],
        "receiver_cpu_s": rcpu["cpu_s"],
        "postgres_cpu_s": dcpu["cpu_s"],
        "machine_busy_pct": wcpu["machine_busy_pct"],
        "steal_pct": wcpu["machine_steal_pct"],
    }


def _figure(runs: list[dict[str, Any]], processes: int, **extra: Any) -> dict[str, Any]:
    def per_job(key: str) -> float | None:
        median = summarize([1e6 * r[key] / r["jobs"] for r in runs], "us")["median"]
        return float(median) if median is not None else None

    fig = summarize(
        [r["rate"] for r in runs],
        "deliveries/s",
        seconds=[r["seconds"] for r in runs],
        worker_cpu_us_per_delivery=per_job("worker_cpu_s"),
        receiver_cpu_us_per_delivery=per_job("receiver_cpu_s"),
        postgres_cpu_us_per_delivery=per_job("postgres_cpu_s"),
        steal_pct=[r["steal_pct"] for r in runs],
        machine_busy_pct=[r["machine_busy_pct"] for r in runs],
        processes=processes,
        **extra,
    )
    med = fig["median"]
    fig["per_process"] = round(med / processes, 1) if med else None
    return fig


def run(
    url: str,
    *,
    n: int,
    reps: int,
    processes: tuple[int, ...] = (1, 2),
    concurrencies: tuple[int, ...] = CONCURRENCIES,
    profile: bool = True,
) -> dict[str, Any]:
    receiver = Receiver()
    receiver.start()
    out: dict[str, Any] = {"receiver": "node http (bench/receiver.js), 1 process", "jobs": n}
    try:
        _endpoint(receiver.url)
        settings = [(p, c) for p in processes for c in concurrencies]
        runs: dict[tuple[int, int], list[dict[str, Any]]] = {s: [] for s in settings}
        for rep in range(reps):
            for p, c in settings:  # interleaved, so load drift hits every setting alike
                log(f"deliver rep {rep + 1}/{reps}, {p} process(es), concurrency {c}")
                runs[(p, c)].append(deliver_once(url, receiver, n, processes=p, concurrency=c))
        for (p, c), rs in runs.items():
            out[f"deliver_{p}p_c{c}"] = _figure(rs, p, jobs=n, concurrency=c)
        if profile:
            raw = LOG_DIR / "deliver-worker-profile.raw"
            c = max(concurrencies)
            log(f"deliver profiled run (py-spy on the worker, 1 process, concurrency {c})")
            prof = deliver_once(url, receiver, n, processes=1, concurrency=c, profile_to=raw)
            summary = summarize_raw(raw)
            summary["self_by_package"] = self_by_package(raw)
            summary.update(
                rate_while_profiled=round(prof["rate"], 1),
                worker_cpu_s=prof["worker_cpu_s"],
                receiver_cpu_s=prof["receiver_cpu_s"],
                postgres_cpu_s=prof["postgres_cpu_s"],
                seconds=prof["seconds"],
                raw_file=str(raw),
            )
            out["profile"] = summary
        with connect(url) as conn:
            truncate(conn)
        app.client().remove_endpoint(ENDPOINT)
    finally:
        receiver.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deliver", description=__doc__)
    p.add_argument("--deliver-jobs", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--processes", default="1,2")
    p.add_argument("--concurrencies", default=",".join(map(str, CONCURRENCIES)))
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--force-database", action="store_true")
    args = p.parse_args(argv)
    url = database_url()
    prepare_database(url, force=args.force_database)
    result = run(
        url,
        n=args.deliver_jobs,
        reps=args.reps,
        processes=tuple(int(x) for x in args.processes.split(",")),
        concurrencies=tuple(int(x) for x in args.concurrencies.split(",")),
        profile=not args.no_profile,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
