"""Per-minute series, their SVG bars, and a job's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.client_types import MinuteCount, Throughput
from conveyor.dashboard.charts import HEIGHT, minute_chart, throughput_charts
from conveyor.dashboard.timeline import timeline
from conveyor.job import Job, JobState

UNTIL = datetime(2026, 11, 29, 10, 30, 20, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=1)


def _minute(minutes_ago: int) -> datetime:
    return UNTIL.replace(second=0) - timedelta(minutes=minutes_ago)


def test_series_sums_matching_minutes_oldest_first() -> None:
    throughput = Throughput(
        SINCE,
        UNTIL,
        [
            MinuteCount(_minute(60), "emails", "completed", 3),
            MinuteCount(_minute(0), "emails", "completed", 5),
            MinuteCount(_minute(0), "billing", "completed", 2),
            MinuteCount(_minute(0), "emails", "failed", 1),
        ],
    )
    series = throughput.series(state="completed")
    assert len(series) == 61
    assert (series[0], series[-1], sum(series)) == (3, 7, 10)
    assert throughput.series(queue="emails", state="failed")[-1] == 1
    completed, failed = throughput_charts(throughput)
    assert (completed.total, completed.peak, failed.total) == (10, 7, 1)


def test_bars_scale_to_the_peak_and_skip_empty_minutes() -> None:
    chart = minute_chart("completed", "ok", [0, 5, 10], SINCE)
    assert [b.height for b in chart.bars] == [HEIGHT / 2, HEIGHT]
    assert chart.bars[1].y == 0
    assert chart.bars[0].title.endswith("5 jobs")
    assert minute_chart("empty", "ok", [0, 0], SINCE).bars == []


def test_timeline_orders_creation_errors_and_finish() -> None:
    created = UNTIL - timedelta(minutes=5)
    job = Job(
        id=1,
        task="t",
        queue="default",
        state=JobState.FAILED,
        priority=0,
        attempt=2,
        max_attempts=2,
        args={},
        errors=[
            {"attempt": 2, "at": (created + timedelta(minutes=3)).isoformat(), "type": "E"},
            {"attempt": 1, "at": (created + timedelta(minutes=1)).isoformat(), "type": "E"},
            {"attempt": 3, "at": "not a time"},
        ],
        unique_key=None,
        timeout_seconds=None,
        created_at=created,
        run_at=created,
        attempted_at=created + timedelta(minutes=2),
        finished_at=created + timedelta(minutes=3, seconds=1),
        result=None,
        worker_id=None,
    )
    labels = [e.label for e in timeline(job)]
    assert labels == [
        "created",
        "attempt 1 failed",
        "attempt 2 started",
        "attempt 2 failed",
        "failed",
    ]
