"""The printed table and the JSON files (bench/results/latest.json and a dated copy)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS, dumps

Getter = Callable[[dict[str, Any]], Any]
#: One dated file per invocation, rewritten as sections finish.
RUN_STAMP = time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


# (label, Conveyor figure, peer figure, higher is better)
COMPARISONS: list[tuple[str, tuple[str, ...], tuple[str, ...] | None, bool]] = [
    ("import conveyor, fresh interpreter", ("import", "wall_ms"), None, False),
    ("W1 enqueue single, sync", ("W1", "sync_single"), ("enqueue_single", "-"), True),
    ("W1 enqueue single, async", ("W1", "async_single"), ("enqueue_single",), True),
    (
        "W1 enqueue single, 16 threads",
        ("W1", "threads16_single"),
        ("enqueue_concurrent", "-"),
        True,
    ),
    ("W1 enqueue single, 16 tasks", ("W1", "tasks16_single"), ("enqueue_concurrent",), True),
    ("W1 enqueue bulk (1,000/batch)", ("W1", "bulk_copy"), ("enqueue_bulk",), True),
    (
        "W2 drain, 1 process (BullMQ: removeOnComplete count 1000)",
        ("W2", "drain_1p"),
        ("drain",),
        True,
    ),
    (
        "W2 drain, 1 process (BullMQ: removeOnComplete true)",
        ("W2", "drain_1p"),
        ("drain_remove_on_complete_true",),
        True,
    ),
    ("W2 drain, 2 processes", ("W2", "drain_2p"), None, True),
    ("W3 latency p50", ("W3", "fixed_rate", "p50_ms"), ("latency", "p50_ms"), False),
    ("W3 latency p95", ("W3", "fixed_rate", "p95_ms"), ("latency", "p95_ms"), False),
    ("W3 latency p99", ("W3", "fixed_rate", "p99_ms"), ("latency", "p99_ms"), False),
    ("W3 latency p50 @50% load", ("W3", "half_load", "p50_ms"), None, False),
    ("W3 latency p99 @50% load", ("W3", "half_load", "p99_ms"), None, False),
    ("API enqueue over HTTP, 1 client", ("api", "http_1"), None, True),
    ("API enqueue over HTTP, 16 clients", ("api", "http_16"), None, True),
    ("API beside: direct enqueue, 1 caller", ("api", "sql_1"), None, True),
    ("API beside: direct enqueue, 16 tasks", ("api", "sql_16"), None, True),
]


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (workload, system); `ratio` is Conveyor ÷ peer (for Conveyor's own row:
    ÷ the best peer). Above 1 is better for rates, below 1 is better for latencies."""
    work = results.get("workloads", {})
    peers = results.get("peers", {})
    out: list[dict[str, Any]] = []
    for label, cpath, ppath, higher in COMPARISONS:
        mine = _get(work, *cpath)
        if not mine or mine.get("median") is None:
            continue
        theirs = {}
        list_peers = bool(ppath) and ppath[-1] != "-"
        if ppath:
            ppath = tuple(k for k in ppath if k != "-")
            for peer, res in peers.items():
                fig = _get(res, *ppath)
                if fig and fig.get("median") is not None:
                    theirs[peer] = fig
        best = None
        if theirs:
            pick = max if higher else min
            best = pick(theirs, key=lambda p: theirs[p]["median"])
        m = mine["median"]
        out.append(
            {
                "workload": label,
                "system": "conveyor",
                "median": m,
                "min": mine.get("min"),
                "max": mine.get("max"),
                "unit": mine["unit"],
                "ratio": round(m / theirs[best]["median"], 4) if best else None,
                "vs": best,
                "note": _note(cpath, work),
            }
        )
        for peer, fig in sorted(theirs.items()) if list_peers else ():
            out.append(
                {
                    "workload": label,
                    "system": peer,
                    "median": fig["median"],
                    "min": fig.get("min"),
                    "max": fig.get("max"),
                    "unit": fig["unit"],
                    "ratio": round(m / fig["median"], 4) if fig["median"] else None,
                    "vs": peer,
                    "note": _peer_note(peers[peer], ppath or (), fig),
                }
            )
    w4 = work.get("W4") or {}
    for name in ("hot_other_queue", "hot_lower_priority", "history"):
        fig = w4.get(name)
        if fig and fig.get("median"):
            out.append(
                {
                    "workload": f"W4 drain, {name.replace('_', ' ')} ({w4['filler']:,})",
                    "system": "conveyor",
                    "median": fig["median"],
                    "min": fig["min"],
                    "max": fig["max"],
                    "unit": "jobs/s",
                    "ratio": fig.get("ratio_to_adjacent_empty", fig["ratio_to_empty"]),
                    "vs": "empty tables, drained just before and after",
                    "note": f"adjacent empty: {fig.get('adjacent_empty_rate', 0):,.0f} jobs/s;"
                    f" all empty drains: {w4['empty']['median']:,.0f} jobs/s",
                }
            )
    hot = work.get("hotpath") or {}
    for driver in ("psycopg", "asyncpg"):
        fig = hot.get(driver)
        if fig and fig.get("median"):
            out.append(
                {
                    "workload": "hot path claim+complete x100",
                    "system": driver,
                    "median": fig["median"],
                    "min": fig["min"],
                    "max": fig["max"],
                    "unit": "jobs/s",
                    "ratio": None,
                    "vs": None,
                    "note": f"client cpu {fig.get('client_cpu_us_per_job')} us/job",
                }
            )
    out.extend(_workflow_rows(work.get("workflows") or {}))
    return out


def _workflow_rows(wf: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step overhead and steps/s of the 10-step workflow, and the 1,000-child fan-out's
    children/s and parent overhead, Conveyor then DBOS."""
    out: list[dict[str, Any]] = []
    figures = [
        ("workflow no-op step, median", ("per_step", "step_ms_median"), "ms"),
        ("workflow no-op step, p95", ("per_step", "step_ms_p95"), "ms"),
        ("workflow 10-step runs", ("throughput", "steps_per_s_median"), "steps/s"),
        ("workflow 10-step runs, 2 processes", ("throughput_2p", "steps_per_s_median"), "steps/s"),
        (
            "fan-out 1,000 children, unbounded",
            ("fanout", "unbounded", "children_per_s_median"),
            "children/s",
        ),
        (
            "fan-out 1,000 children, concurrency 100",
            ("fanout", "concurrency_100", "children_per_s_median"),
            "children/s",
        ),
        (
            "fan-out 1,000 children, concurrency 10",
            ("fanout", "concurrency_10", "children_per_s_median"),
            "children/s",
        ),
        (
            "fan-out 1,000, unbounded, 2 processes",
            ("fanout_2p", "unbounded", "children_per_s_median"),
            "children/s",
        ),
        (
            "fan-out parent after last child, unbounded",
            ("fanout", "unbounded", "parent_overhead_ms_median"),
            "ms",
        ),
    ]
    dbos = wf.get("dbos") or {}
    for label, path, unit in figures:
        mine, theirs = _get(wf, *path), _get(dbos, *path)
        for system, value in (("conveyor", mine), ("dbos", theirs)):
            if value is None:
                continue
            out.append(
                {
                    "workload": label,
                    "system": system,
                    "median": value,
                    "min": None,
                    "max": None,
                    "unit": unit,
                    "ratio": round(mine / theirs, 4) if mine and theirs else None,
                    "vs": "dbos" if theirs else None,
                    "note": "" if system == "conveyor" else f"DBOS {dbos.get('version')}",
                }
            )
    return out


def _note(cpath: tuple[str, ...], work: dict[str, Any]) -> str:
    if cpath[0] == "W3":
        fig = _get(work, *cpath[:2]) or {}
        return f"at {fig.get('rate', 0):g}/s ({fig.get('load_vs_drain_1p')} of 1p drain)"
    if cpath[0] == "import":
        fig = _get(work, "import", "import_ms") or {}
        return f"-X importtime: {fig.get('median')} ms; {work['import']['reps']} runs"
    if cpath[0] == "W2":
        fig = _get(work, *cpath) or {}
        return f"N={fig.get('jobs'):,}, concurrency {fig.get('concurrency')}"
    if cpath[0] == "api":
        fig = _get(work, *cpath) or {}
        cpu = fig.get("api_cpu_us_per_request")
        return f"N={work['api']['jobs']:,}" + (f", API CPU {cpu:,.0f} us/request" if cpu else "")
    return ""


def _peer_note(res: dict[str, Any], ppath: tuple[str, ...], fig: dict[str, Any]) -> str:
    notes = []
    if ppath and ppath[0] == "latency":
        lat = res.get("latency", {})
        drain = (res.get("drain") or {}).get("median")
        if lat.get("error"):
            notes.append(f"overloaded: processed {lat.get('processed')} of {lat.get('sent')}")
        elif drain and drain < lat.get("rate", 0):
            notes.append(f"overloaded: drains {drain:,.0f}/s < {lat['rate']:g}/s sent")
    if fig.get("variant"):
        notes.append(str(fig["variant"]))
    if fig.get("note"):
        notes.append(str(fig["note"]))
    if fig.get("error") and not notes:
        notes.append(str(fig["error"])[:60])
    return "; ".join(notes)


def format_table(table: list[dict[str, Any]]) -> str:
    head = ("workload", "system", "median", "min-max", "unit", "conveyor/peer", "note")
    lines = []
    for r in table:
        ratio = "" if r["ratio"] is None else _num(r["ratio"], ratio=True)
        if r["system"] == "conveyor" and r["vs"]:
            ratio += f" (vs {r['vs']})"
        lines.append(
            (
                r["workload"],
                r["system"],
                _num(r["median"]),
                f"{_num(r['min'])}-{_num(r['max'])}",
                r["unit"],
                ratio,
                r["note"] or "",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 3) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def _num(x: Any, ratio: bool = False) -> str:
    if x is None:
        return "-"
    x = float(x)
    if ratio and abs(x) < 0.1:
        return f"{x:.4f}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def write(new: dict[str, Any], out_dir: Path = RESULTS) -> dict[str, Any]:
    """Merge this run's sections into latest.json (a section is replaced whole), write it and a
    dated copy of this run; return the merged results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = out_dir / "latest.json"
    merged: dict[str, Any] = {"workloads": {}, "peers": {}}
    if latest.exists():
        with contextlib.suppress(json.JSONDecodeError):
            merged = json.loads(latest.read_text())
    merged.setdefault("workloads", {}).update(new.get("workloads", {}))
    merged.setdefault("peers", {}).update(new.get("peers", {}))
    merged["meta"] = new["meta"]
    merged["table"] = rows(merged)
    dated = out_dir / f"{RUN_STAMP}.json"
    dated.write_text(dumps({**new, "table": rows(new)}) + "\n")
    tmp = out_dir / "latest.json.tmp"
    tmp.write_text(dumps(merged) + "\n")
    shutil.move(tmp, latest)
    return merged
