"""Import time of `conveyor`: what a web process that only enqueues pays at start-up.

Each run is a fresh interpreter (`python -X importtime -c 'import conveyor'`), so nothing is
cached in the process; the OS file cache is warmed by one unmeasured run first. Three figures,
median of N runs: the wall time of the whole interpreter (start-up included, what a user
waits for), its CPU time (user + system: the figure that moves least on a shared machine) and
the cumulative time Python's own `-X importtime` gives the `conveyor` package (the import
alone). Also reported: how many modules the import leaves in sys.modules.

`python -m bench import` runs it with the others; `python -m bench.import_time [--reps N]` runs
it alone (it needs no database), and `--against OTHER/src` times another checkout in the same
run, one interpreter of each in turn: the fair before-and-after on a machine whose load varies.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, summarize

#: Prints how many modules `import conveyor` left loaded, so the count comes from the same run.
_PROGRAM = "import sys; import conveyor; print(len(sys.modules))"


def _one_run(python: str, env: dict[str, str]) -> tuple[float, float, int, float]:
    """(wall ms, conveyor's cumulative import ms, modules loaded, CPU ms) of one fresh
    interpreter. CPU time (user + system) moves least when other processes share the machine."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(
        [python, "-X", "importtime", "-c", _PROGRAM],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall_ms = (time.perf_counter() - t0) * 1000
    cpu_ms = (_children_cpu() - cpu0) * 1000
    return wall_ms, _cumulative_ms(done.stderr, "conveyor"), int(done.stdout.strip()), cpu_ms


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cumulative_ms(importtime_log: str, package: str) -> float:
    """The cumulative time of `package` in a -X importtime log ('import time: self | cumulative
    | name', in microseconds; the name is indented by nesting depth)."""
    for line in importtime_log.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[2].strip() == package:
            return int(parts[1]) / 1000
    raise RuntimeError(f"no {package!r} line in the -X importtime log")


def run(reps: int = 20, python: str = sys.executable, src: str | None = None) -> dict[str, Any]:
    """Median (and spread) of `reps` fresh imports of conveyor (from `src`, another checkout's
    src/ directory, if given)."""
    return compare(reps, python, [src])[0]


def compare(
    reps: int, python: str = sys.executable, sources: list[str | None] | None = None
) -> list[dict[str, Any]]:
    """run() for each of `sources` (None: this checkout), their runs interleaved one by one,
    so a load that comes and goes on the machine falls on all of them alike."""
    sources = sources or [None]
    envs = [dict(os.environ) for _ in sources]
    for env, src in zip(envs, sources, strict=True):
        if src:
            env["PYTHONPATH"] = src  # ahead of the editable install's path
        _one_run(python, env)  # warm the file cache: the first import reads every .pyc
    runs: list[list[tuple[float, float, int, float]]] = [[] for _ in sources]
    for _ in range(reps):
        for env, out in zip(envs, runs, strict=True):
            out.append(_one_run(python, env))
    return [
        {
            "reps": reps,
            "src": src or str(ROOT / "src"),
            "wall_ms": summarize([r[0] for r in out], "ms"),
            "import_ms": summarize([r[1] for r in out], "ms"),
            "cpu_ms": summarize([r[3] for r in out], "ms"),
            "modules": summarize([r[2] for r in out], "modules"),
        }
        for src, out in zip(sources, runs, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.import_time", description=__doc__)
    p.add_argument("--reps", type=int, default=20, help="fresh interpreters to time (20)")
    p.add_argument("--src", help="time the conveyor in this src/ directory instead")
    p.add_argument(
        "--against", help="also time this src/ directory (a before), runs interleaved with ours"
    )
    args = p.parse_args(argv)
    sources = [args.src, args.against] if args.against else [args.src]
    for result in compare(args.reps, sources=sources):
        print(result["src"])
        for key in ("wall_ms", "import_ms", "cpu_ms", "modules"):
            fig = result[key]
            print(f"  {key:10} median {fig['median']:>8} (min {fig['min']}, max {fig['max']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
