"""The app that the Next.js example's cron test runs `conveyor worker` on: no tasks, only the
simulated clock of cron_app, so that the stored schedule of the example's cron route
(`conveyor cron add ... --endpoint cleanup`) fires for several minutes within seconds. Like
`conveyor deliver`, the worker runs stored schedules and delivers endpoints' jobs."""

from __future__ import annotations

import conveyor
from tests.acceptance.cron_app import SimulatedClock

app = conveyor.Conveyor(clock=SimulatedClock())  # CONVEYOR_DATABASE_URL, read on first use
