"""`python -m tests.chaos --jobs 100000`: the long chaos run; prints the figures."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tests.chaos.chaos import can_restart_postgres, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--work-ms", type=float, default=2.0)
    parser.add_argument("--no-pg-restart", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    url = os.environ.get("CONVEYOR_DATABASE_URL")
    if not url:
        print("set CONVEYOR_DATABASE_URL to a migrated scratch database", file=sys.stderr)
        return 2
    restart = not args.no_pg_restart and can_restart_postgres(url)
    report = run(
        url,
        jobs=args.jobs,
        workers=args.workers,
        log_dir=Path(tempfile.mkdtemp(prefix="conveyor-chaos-")),
        work_ms=args.work_ms,
        restart_pg=restart,
        seed=args.seed,
        timeout=3600,
    )
    print(report.lines())
    for note in report.notes:
        print("note:", note)
    return 1 if report.violations() else 0


if __name__ == "__main__":
    sys.exit(main())
