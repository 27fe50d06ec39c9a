"""Bar charts of jobs per minute, drawn on the server as inline SVG (no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor.client_types import Throughput

WIDTH = 600
HEIGHT = 120
GAP = 1.0


@dataclass(frozen=True)
class Bar:
    """One minute's bar: where it is drawn and what its tooltip says."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    """A series of per-minute bars with its peak and total, ready for the template."""

    label: str
    css_class: str
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT


def minute_chart(
    label: str,
    css_class: str,
    counts: list[int],
    since: datetime,
    *,
    unit: str = "jobs",
    scale_to: int | None = None,
) -> Chart:
    """Bars for `counts` per minute starting at `since` (oldest on the left), scaled to their
    own peak or to `scale_to` (to draw two series on one scale)."""
    peak = max(counts, default=0)
    top = max(scale_to or 0, peak)
    slot = WIDTH / max(len(counts), 1)
    start = since.replace(second=0, microsecond=0)
    bars = []
    for n, count in enumerate(counts):
        if not count:
            continue
        height = max(1.0, HEIGHT * count / top)
        minute = (start + timedelta(minutes=n)).strftime("%H:%M")
        bars.append(
            Bar(
                x=round(n * slot, 2),
                y=round(HEIGHT - height, 2),
                width=round(max(slot - GAP, 1.0), 2),
                height=round(height, 2),
                title=f"{minute} UTC: {count} {unit}",
            )
        )
    return Chart(label, css_class, bars, peak, sum(counts))


def throughput_charts(throughput: Throughput, queue: str | None = None) -> list[Chart]:
    """Completed and failed jobs per minute over the throughput's window."""
    since = throughput.since.astimezone(throughput.until.tzinfo)
    return [
        minute_chart(
            "completed per minute",
            "ok",
            throughput.series(queue=queue, state="completed"),
            since,
            unit="completed",
        ),
        minute_chart(
            "failed per minute",
            "bad",
            throughput.series(queue=queue, state="failed"),
            since,
            unit="failed",
        ),
    ]


def queue_sparkline(throughput: Throughput, queue: str) -> list[Chart]:
    """One queue's completed and failed jobs per minute, on one scale, for its table row."""
    since = throughput.since.astimezone(throughput.until.tzinfo)
    completed = throughput.series(queue=queue, state="completed")
    failed = throughput.series(queue=queue, state="failed")
    top = max([*completed, *failed, 0])
    return [
        minute_chart(f"{queue}: completed", "ok", completed, since, unit="completed", scale_to=top),
        minute_chart(f"{queue}: failed", "bad", failed, since, unit="failed", scale_to=top),
    ]
