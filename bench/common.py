"""Shared pieces: the database, statistics over repetitions, machine facts, CPU accounting."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.migrate import Migrator

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/conveyor_bench"
ENV_URL = "CONVEYOR_DATABASE_URL"


def log(message: str) -> None:
    """Progress goes to stderr, so stdout stays the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- database --------------------------------------------------------------------------------


def database_url() -> str:
    """CONVEYOR_DATABASE_URL if set, else conveyor_bench on 127.0.0.1:5432."""
    return os.environ.get(ENV_URL) or DEFAULT_URL


def prepare_database(url: str, *, force: bool = False) -> None:
    """Create the database if missing (only a *bench* one), migrate it, and point the bench
    app (and the workers it starts) at it."""
    os.environ[ENV_URL] = url
    params = conninfo_to_dict(url)
    dbname = str(params.get("dbname") or "")
    if "bench" not in dbname and not force:
        raise SystemExit(
            f"refusing to benchmark on database {dbname!r}: the benchmark truncates the conveyor"
            " tables. Point CONVEYOR_DATABASE_URL at a database whose name contains 'bench', or"
            " pass --force-database"
        )
    admin = make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if found is None:
            log(f"creating database {dbname}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    applied = Migrator(url).migrate()
    if applied:
        log(f"migrated {dbname}: {', '.join(m.name for m in applied)}")


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=autocommit, application_name="conveyor-bench")


def truncate(conn: psycopg.Connection[Any]) -> None:
    """Empty every conveyor table (between workloads and repetitions)."""
    conn.execute(
        "TRUNCATE conveyor.job, conveyor.job_done, conveyor.worker, conveyor.idempotency_key"
    )


def count_completed(conn: psycopg.Connection[Any], lo: int, hi: int) -> int:
    """Completed jobs among ids lo..hi (the ids one run enqueued)."""
    row = conn.execute(
        "SELECT count(*) FROM conveyor.job_done WHERE id BETWEEN %s AND %s AND state = 'completed'",
        (lo, hi),
    ).fetchone()
    return int(row[0]) if row else 0


def wait_completed(
    conn: psycopg.Connection[Any], lo: int, hi: int, n: int, timeout: float, every: float = 0.05
) -> tuple[bool, float]:
    """Poll every `every` s until n jobs of lo..hi completed; return (done, perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        done = count_completed(conn, lo, hi) >= n
        now = time.perf_counter()
        if done or now > deadline:
            return done, now
        time.sleep(every)


def server_facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "autovacuum",
        "shared_buffers",
        "max_connections",
        "wal_level",
    )
    facts: dict[str, Any] = {}
    for name in names:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        facts[name] = row[0] if row else None
    return facts


# -- statistics ------------------------------------------------------------------------------


def summarize(values: Iterable[float], unit: str, **extra: Any) -> dict[str, Any]:
    """Median and spread of repeated measurements of one figure."""
    runs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    out: dict[str, Any] = {"unit": unit, "runs": [round(v, 3) for v in runs]}
    if runs:
        med = statistics.median(runs)
        out.update(
            median=round(med, 3),
            min=round(min(runs), 3),
            max=round(max(runs), 3),
            spread_pct=round(100 * (max(runs) - min(runs)) / med, 1) if med else None,
        )
    else:
        out.update(median=None, min=None, max=None, spread_pct=None)
    out.update(extra)
    return out


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (as the peer runners compute it)."""
    if not sorted_values:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


# -- machine and CPU -------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _version(["node", "--version"]),
        "redis": _version(["redis-server", "--version"]),
        "loadavg": os.getloadavg(),
    }


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


@dataclass
class CpuMeter:
    """CPU seconds used by given processes, plus the machine's steal share, over an interval."""

    pids: list[int]
    start: dict[int, float] = field(default_factory=dict)
    stat0: list[int] = field(default_factory=list)
    wall0: float = 0.0

    def begin(self) -> None:
        self.start = _cpu_of(self.pids)
        self.stat0 = _proc_stat()
        self.wall0 = time.perf_counter()

    def end(self, more_pids: Iterable[int] = ()) -> dict[str, Any]:
        pids = sorted(set(self.pids) | set(more_pids))
        now = _cpu_of(pids)
        used = sum(now.get(p, 0.0) - self.start.get(p, 0.0) for p in pids if p in now)
        stat1 = _proc_stat()
        delta = [b - a for a, b in zip(self.stat0, stat1, strict=True)]
        total = sum(delta) or 1
        wall = time.perf_counter() - self.wall0
        return {
            "cpu_s": round(used, 3),
            "wall_s": round(wall, 3),
            "machine_busy_pct": round(100 * (total - delta[3] - delta[4]) / total, 1),
            "machine_steal_pct": round(100 * delta[7] / total, 1) if len(delta) > 7 else None,
        }


def _cpu_of(pids: Iterable[int]) -> dict[int, float]:
    import psutil

    out: dict[int, float] = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[pid] = t.user + t.system
    return out


def _proc_stat() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def backend_pids(conn: psycopg.Connection[Any]) -> list[int]:
    """Server processes of every session on this database except our own."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    ).fetchall()
    return [int(r[0]) for r in rows]


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
