"""Summarize a py-spy raw (collapsed stacks) file: top functions by inclusive and self time."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")

# Leaf frames grouped into the parts of the system a reader cares about.
_AREAS = (
    ("psycopg (driver)", ("/psycopg/", "/psycopg_binary/", "/psycopg_pool/")),
    ("asyncio event loop", ("/asyncio/",)),
    ("conveyor worker", ("/conveyor/worker/",)),
    ("conveyor store", ("/conveyor/_store/",)),
    ("conveyor other", ("/conveyor/",)),
    ("json", ("/json/",)),
    ("uuid", ("uuid.py",)),
    ("logging", ("/logging/",)),
    ("threads / executor", ("threading.py", "/concurrent/")),
    ("bench handler", ("/bench/",)),
)


# Frames every sample passes through (start-up and the loop itself): left out of the tables.
_ENTRY = ("click/", "runpy", "asyncio/runners.py", "conveyor/__main__.py", "conveyor/cli/")
_ENTRY_FUNCS = (
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "BaseEventLoop._run_once",
    "Handle._run",
)


def _is_entry(key: str) -> bool:
    return any(e in key for e in _ENTRY) or key.split(" (")[0] in _ENTRY_FUNCS


def _frame_key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    short = _shorten(path)
    return f"{match['func']} ({short})"


def _shorten(path: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _area(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    path = match["file"] if match else frame
    for name, needles in _AREAS:
        if any(n in path for n in needles):
            return name
    return "other (python stdlib / C)"


def summarize_raw(path: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive time per function (each function counted once per sample), self time per
    function, and self time grouped by area."""
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        for key in {_frame_key(f) for f in frames}:
            if not _is_entry(key):
                inclusive[key] += count
        self_time[_frame_key(frames[-1])] += count
        areas[_area(frames[-1])] += count

    def pct(c: int) -> float:
        return round(100 * c / total, 1) if total else 0.0

    return {
        "samples": total,
        "inclusive": [{"function": k, "pct": pct(c)} for k, c in inclusive.most_common(top)],
        "self": [{"function": k, "pct": pct(c)} for k, c in self_time.most_common(top)],
        "self_by_area": [{"area": k, "pct": pct(c)} for k, c in areas.most_common()],
    }


def self_by_package(path: Path, top: int = 15) -> list[dict[str, Any]]:
    """Self time grouped by the package (site-packages top directory), conveyor module or
    stdlib module of the leaf frame: the areas above lump third-party libraries such as an
    HTTP client into 'other'."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f]
        if not frames or not count_text.isdigit():
            continue
        total += int(count_text)
        counts[_package(frames[-1])] += int(count_text)
    return [
        {"package": k, "pct": round(100 * c / total, 1) if total else 0.0}
        for k, c in counts.most_common(top)
    ]


def _package(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    path = match["file"] if match else frame
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0]
    if "/src/conveyor/" in path:
        return "conveyor/" + path.split("/src/conveyor/", 1)[1].split("/", 1)[0]
    if "/lib/python3." in path:
        return "stdlib/" + path.split("/lib/python3.", 1)[1].split("/", 2)[1]
    return path
