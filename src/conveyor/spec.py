"""JobSpec: a job ready to insert, built by Task.spec() and taken by every enqueue-many path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.durations import check_run_at, to_seconds


@dataclass(frozen=True)
class JobSpec:
    """A job ready to insert: arguments already encoded as JSON text."""

    task: str
    args_json: str
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    run_at: datetime | None = None
    delay: float | None = None
    unique_key: str | None = None
    timeout_seconds: float | None = None
    correlation_id: str | None = None
    #: W3C trace headers of the enqueueing span, when tracing is on.
    trace_context: dict[str, str] | None = None

    def __post_init__(self) -> None:
        # specs built by hand (not by Task.spec) meet the same bounds as with_options()
        if self.run_at is not None:
            check_run_at(self.run_at)
        if self.delay is not None:
            to_seconds(self.delay, "delay")
        if self.timeout_seconds is not None:
            to_seconds(self.timeout_seconds, "timeout", positive=True)

    def to_json(self, ord_: int) -> str:
        meta: dict[str, Any] = {"ord": ord_, "task": self.task}
        for name in (
            "queue",
            "priority",
            "max_attempts",
            "delay",
            "unique_key",
            "correlation_id",
            "trace_context",
        ):
            value = getattr(self, name)
            if value is not None:
                meta[name] = value
        if self.timeout_seconds is not None:
            meta["timeout_seconds"] = self.timeout_seconds
        if self.run_at is not None:
            meta["run_at"] = self.run_at.isoformat()
        head = json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
        # args_json is already valid JSON from the codec; splice it in rather than re-encode
        return head[:-1] + ',"args":' + self.args_json + "}"
