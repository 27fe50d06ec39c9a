"""The app that the cron acceptance test runs in several `conveyor worker` processes.

Its clock is simulated time that every process agrees on. It stands at CRON_SIM_START until
the file CRON_SIM_GO exists (the test writes the real start time into it once all workers are
up), then runs CRON_SIM_SPEED times faster than real time, and stops at CRON_SIM_END. Without
these variables (the test process itself) it is the database's clock.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import conveyor


class SimulatedClock:
    """Absolute simulated instants: start + (real seconds since go) x speed, capped at end."""

    def __init__(self) -> None:
        self._start = _instant("CRON_SIM_START")
        self._end = _instant("CRON_SIM_END")
        self._go = Path(os.environ.get("CRON_SIM_GO", "")) if "CRON_SIM_GO" in os.environ else None
        self._speed = float(os.environ.get("CRON_SIM_SPEED", "60"))
        self._real_start: float | None = None

    def now(self) -> datetime | None:
        if self._start is None or self._end is None or self._go is None:
            return None
        if self._real_start is None:
            if not self._go.exists():
                return self._start
            self._real_start = float(self._go.read_text())
        elapsed = max(0.0, time.time() - self._real_start) * self._speed
        return min(self._start + timedelta(seconds=elapsed), self._end)


def _instant(name: str) -> datetime | None:
    value = os.environ.get(name)
    return datetime.fromisoformat(value) if value else None


app = conveyor.Conveyor(clock=SimulatedClock())  # CONVEYOR_DATABASE_URL, read on first use


@app.periodic(cron="* * * * *", name="acceptance.every_minute")
@app.task(name="acceptance.tick")
def tick(ctx: conveyor.JobContext) -> str | None:
    return ctx.cron_slot.isoformat() if ctx.cron_slot else None
