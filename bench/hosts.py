"""Many hosts: the W2 drain with its workers on 1, 2, 3, 4 simulated hosts.

Each host is a Linux network namespace with its own address, joined to the machine by a veth
pair (tests/netns.py); the database is a server of this benchmark's own (tests/pgcluster.py),
listening on the bridge, so every worker reaches it over the veth link, as over a network.
Each host runs one worker process. For each host count: N no-op jobs are enqueued in one
transaction once every worker has registered and listens; the clock runs from the commit to
the last completion. CPU seconds of the worker processes and of every Postgres process (the
whole server: backends, WAL writer, checkpointer...) are read over the same span.

All hosts share this machine's cores with Postgres: the figures say where the database (or the
machine) saturates, not how far separate machines would go. Needs root and `ip`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from tests.netns import Host, Network
from tests.pgcluster import Cluster, make_root

from bench.app import QUEUE, noop
from bench.common import ROOT, CpuMeter, connect, log, summarize, truncate, wait_completed
from bench.workers import LOG_DIR
from conveyor import Conveyor
from conveyor.migrate import Migrator

#: The benchmark server's settings beyond initdb's: room for the workers' connections.
SERVER = {"max_connections": "200", "shared_buffers": "256MB", "max_wal_size": "2GB"}


def _start_worker(
    host: Host, url: str, concurrency: int, log_path: Path
) -> subprocess.Popen[bytes]:
    cmd = [*host.prefix(), sys.executable, "-m", "conveyor", "worker", "bench.app:app"]
    cmd += ["--queues", QUEUE, "--concurrency", str(concurrency)]
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_DATABASE_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(url: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with connect(url) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM conveyor.worker),"
                " (SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                " 'conveyor-listener' AND query ILIKE 'LISTEN%')"
            ).fetchone()
            if row and row[0] >= count and row[1] >= count:
                time.sleep(0.3)  # the producers' first (empty) claims
                return
            time.sleep(0.05)
    raise RuntimeError(f"{count} workers not ready after {timeout:.0f}s; see {LOG_DIR}")


def _server_pids(cluster: Cluster) -> list[int]:
    postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    main = psutil.Process(postmaster)
    return [postmaster, *(child.pid for child in main.children(recursive=True))]


def drain_once(
    cluster: Cluster, hosts: list[Host], server_ip: str, n: int, concurrency: int
) -> dict[str, Any]:
    url = cluster.url("conveyor")
    host_url = cluster.url("conveyor", host=server_ip)
    specs = [noop.spec(i=i) for i in range(n)]
    with connect(url) as mon:
        truncate(mon)
    stamp = int(time.time() * 1000)
    workers = [
        _start_worker(h, host_url, concurrency, LOG_DIR / f"hosts-{len(hosts)}-{i}-{stamp}.log")
        for i, h in enumerate(hosts)
    ]
    app = Conveyor(url)
    try:
        _wait_ready(url, len(hosts))
        worker_cpu = CpuMeter([w.pid for w in workers])
        db_cpu = CpuMeter(_server_pids(cluster))
        with connect(url, autocommit=False) as tx:
            ids = app.enqueue_many_tx(tx, specs)
            tx.commit()
            t0 = time.perf_counter()
        worker_cpu.begin()
        db_cpu.begin()
        with connect(url) as mon:
            done, t1 = wait_completed(mon, min(ids), max(ids), n, timeout=60 + n / 100)
        wcpu = worker_cpu.end()
        dcpu = db_cpu.end(_server_pids(cluster))
    finally:
        app.close()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    if not done:
        raise RuntimeError(f"the drain on {len(hosts)} hosts did not finish; see {LOG_DIR}")
    seconds = t1 - t0
    log(
        f"hosts={len(hosts)} n={n}: {seconds:.2f}s = {n / seconds:,.0f} jobs/s (worker cpu"
        f" {wcpu['cpu_s']:.1f}s, postgres cpu {dcpu['cpu_s']:.1f}s, machine busy"
        f" {wcpu['machine_busy_pct']}%)"
    )
    return {
        "rate": n / seconds,
        "seconds": seconds,
        "worker_cpu_s": wcpu["cpu_s"],
        "postgres_cpu_s": dcpu["cpu_s"],
        "machine_busy_pct": wcpu["machine_busy_pct"],
        "steal_pct": wcpu["machine_steal_pct"],
    }


def run(*, n: int, reps: int, max_hosts: int = 4, concurrency: int = 100) -> dict[str, Any]:
    """The drain on 1..max_hosts hosts, `reps` times each, interleaved."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    root = make_root("cv-bench-hosts-")
    cluster: Cluster | None = None
    runs: dict[int, list[dict[str, Any]]] = {k: [] for k in range(1, max_hosts + 1)}
    try:
        with Network() as net:
            cluster = Cluster.create(
                root, "db", listen=f"127.0.0.1,{net.server_ip}", settings=SERVER
            )
            cluster.start()
            cluster.execute("CREATE DATABASE conveyor")
            Migrator(cluster.url("conveyor")).migrate()
            hosts = [net.add_host() for _ in range(max_hosts)]
            for rep in range(reps):
                for k in runs:
                    log(f"hosts rep {rep + 1}/{reps}: {k} host(s) x 1 process")
                    runs[k].append(drain_once(cluster, hosts[:k], net.server_ip, n, concurrency))
            with connect(cluster.url("conveyor")) as conn:
                postgres = {
                    name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
                    for name in ("server_version", "shared_buffers", "synchronous_commit", "fsync")
                }
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"jobs": n, "concurrency": concurrency, "postgres": postgres}
    for k, rs in runs.items():
        out[f"hosts_{k}"] = summarize(
            [r["rate"] for r in rs],
            "jobs/s",
            hosts=k,
            postgres_cpu_us_per_job=round(
                summarize([1e6 * r["postgres_cpu_s"] / n for r in rs], "us")["median"], 1
            ),
            worker_cpu_us_per_job=round(
                summarize([1e6 * r["worker_cpu_s"] / n for r in rs], "us")["median"], 1
            ),
            postgres_cores=round(
                summarize([r["postgres_cpu_s"] / r["seconds"] for r in rs], "cores")["median"], 2
            ),
            machine_busy_pct=[r["machine_busy_pct"] for r in rs],
        )
    return out


def table(result: dict[str, Any]) -> str:
    """The scaling table, as Markdown."""
    lines = [
        "| hosts x processes | jobs/s, median (min-max) | Postgres CPU µs/job | Postgres cores"
        " busy | worker CPU µs/job | machine busy % |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(k for k in result if k.startswith("hosts_")):
        fig = result[key]
        lines.append(
            f"| {fig['hosts']} x 1 | {fig['median']:,.0f} ({fig['min']:,.0f}-{fig['max']:,.0f})"
            f" | {fig['postgres_cpu_us_per_job']:.0f} | {fig['postgres_cores']:.2f}"
            f" | {fig['worker_cpu_us_per_job']:.0f}"
            f" | {', '.join(f'{b:.0f}' for b in fig['machine_busy_pct'])} |"
        )
    return "\n".join(lines)
