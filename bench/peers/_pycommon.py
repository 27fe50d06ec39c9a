"""Shared helpers for the Python peer runners (procrastinate_run.py, pgqueuer_run.py).

Contract of every runner: exactly one JSON line on stdout at the end, all
logging on stderr, every loop bounded in count and time, non-zero exit with
{"error": ...} when something goes wrong.

The runners need the peer venv (bench/.peers/venv, made by setup.sh);
``ensure_peer_venv`` re-executes the script with that interpreter when the
current one lacks the peer package, so ``python bench/peers/x_run.py`` works
from any Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS_VENV = Path(os.environ.get("BENCH_PEERS_VENV", HERE.parent / ".peers" / "venv"))
WORKLOADS = ("enqueue_single", "enqueue_bulk", "drain", "latency")
BATCH = 1000  # bulk-enqueue batch size

# The real stdout, kept for the one result line; everything else that any
# library prints goes to stderr.
_RESULT_OUT = sys.stdout
sys.stdout = sys.stderr
_emitted = threading.Lock()
_emitted_flag = False


def ensure_peer_venv(module: str) -> None:
    try:
        __import__(module)
        return
    except ImportError:
        pass
    py = PEERS_VENV / "bin" / "python"
    if py.exists() and Path(sys.prefix).resolve() != PEERS_VENV.resolve():
        os.execv(str(py), [str(py), *sys.argv])
    _write({"error": f"{module} not installed; run bench/peers/setup.sh"})
    sys.exit(2)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def parse_args(peer: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"{peer} runner", description=f"{peer} benchmark runner")
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--rate", type=float, default=50.0, help="latency: jobs per second")
    p.add_argument("--duration", type=float, default=10.0, help="latency: seconds of sending")
    p.add_argument("--batch-size", type=int, default=None, help="peer's fetch batch size")
    p.add_argument("--timeout", type=float, default=240.0, help="hard bound on the whole run")

    def error(message: str) -> None:  # argparse errors -> error JSON, exit 2
        _write({"peer": peer, "error": f"bad arguments: {message}"})
        sys.exit(2)

    p.error = error  # type: ignore[method-assign]
    a = p.parse_args(argv)
    if a.jobs < 1:
        error("--jobs must be >= 1")
    if a.concurrency is not None and a.concurrency < 1:
        error("--concurrency must be >= 1")
    if a.rate <= 0 or a.duration <= 0 or a.timeout <= 0:
        error("--rate, --duration and --timeout must be > 0")
    if a.batch_size is not None and a.batch_size < 1:
        error("--batch-size must be >= 1")
    return a


def _write(obj: dict[str, Any]) -> None:
    global _emitted_flag
    with _emitted:
        if _emitted_flag:
            return
        _emitted_flag = True
        _RESULT_OUT.write(json.dumps(obj) + "\n")
        _RESULT_OUT.flush()


def emit(obj: dict[str, Any]) -> int:
    _write(obj)
    return 1 if "error" in obj else 0


def start_watchdog(base: dict[str, Any], seconds: float) -> None:
    """Whatever happens (even a blocked event loop), exit after `seconds`."""

    def fire() -> None:
        log(f"watchdog: run exceeded {seconds:g}s, aborting")
        _write({**base, "error": f"timeout: run exceeded {seconds:g}s"})
        os._exit(3)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()


def wall_ms() -> float:
    """Wall-clock time in milliseconds (float, sub-ms resolution)."""
    return time.time() * 1000.0


def rate_of(jobs: int, seconds: float) -> float | None:
    return round(jobs / seconds, 1) if seconds > 0 else None


def percentile(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_vals))
    return sorted_vals[min(len(sorted_vals), max(1, rank)) - 1]


def latency_summary(samples: list[float]) -> dict[str, Any]:
    s = sorted(samples)

    def r3(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "count": len(s),
        "p50_ms": r3(percentile(s, 50)),
        "p95_ms": r3(percentile(s, 95)),
        "p99_ms": r3(percentile(s, 99)),
        "max_ms": r3(s[-1] if s else None),
        "mean_ms": r3(sum(s) / len(s) if s else None),
    }


async def paced_send(
    rate: float, duration: float, send_one: Callable[[int], Awaitable[Any]]
) -> tuple[int, float]:
    """Send round(rate*duration) jobs one at a time, the i-th due at start+i/rate.

    A late sender sends immediately (nothing is skipped). Bounded: stops
    sending once duration + 10 s have elapsed.
    """
    total = max(1, round(rate * duration))
    start = time.perf_counter()
    hard_stop = start + duration + 10
    sent = 0
    for i in range(total):
        now = time.perf_counter()
        if now > hard_stop:
            break
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        await send_one(i)
        sent += 1
    return sent, time.perf_counter() - start


async def wait_for(pred: Callable[[], Any], seconds: float, every: float = 0.01) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return True
        await asyncio.sleep(every)
    r = pred()
    if asyncio.iscoroutine(r):
        r = await r
    return bool(r)


def pg_urls(dbname: str) -> tuple[str, str]:
    server = os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
    return f"{server}/postgres", f"{server}/{dbname}"


async def reset_database(dbname: str) -> str:
    """Create bench_<peer> if missing and give it an empty public schema.

    The database is dedicated to one peer, so dropping its public schema is
    the simplest way to remove every table, type and function the peer made.
    """
    import psycopg

    if not re.fullmatch(r"bench_[a-z0-9_]+", dbname):
        raise RuntimeError(f"refusing to reset database {dbname!r}")
    admin, url = pg_urls(dbname)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if await cur.fetchone() is None:
            log(f"creating database {dbname}")
            await conn.execute(f'CREATE DATABASE "{dbname}"')
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    return url


RunnerMain = Callable[[argparse.Namespace, dict[str, Any]], Awaitable[dict[str, Any]]]


async def warm_up(state: dict[str, Any], worker: asyncio.Task[Any], n: int = 5) -> None:
    """Wait until the handler has seen `n` warm-up jobs; fail if the worker died."""
    warmed = await wait_for(lambda: state["warm"] >= n or worker.done(), 30)
    if worker.done():
        worker.result()  # re-raises the worker's exception, if any
        raise RuntimeError("worker stopped during warm-up")
    if not warmed:
        raise RuntimeError("warm-up jobs were not processed")


def run_main(peer: str, main: RunnerMain) -> None:
    setup_logging()
    args = parse_args(peer)
    base: dict[str, Any] = {"peer": peer, "workload": args.workload}
    start_watchdog(base, args.timeout)
    try:
        result = asyncio.run(main(args, base))
    except Exception as e:  # any failure becomes the error line
        logging.getLogger("bench").exception("run failed")
        sys.exit(emit({**base, "error": f"{type(e).__name__}: {e}"}))
    sys.exit(emit({**base, **result}))
