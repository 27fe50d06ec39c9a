"""Cron: periodic jobs, one per scheduled time however many workers run.

    python examples/cron.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.

Three workers run the same app and race for every scheduled time; the database lets exactly
one job through per time. So that the example ends in seconds, its app runs on a clock 20
times faster than real time, which stops five simulated minutes after the next full minute.
(Faster still, a busy machine's pause of a second would pass a schedule's 60 s `grace`, and
the time would count as missed.)
In your code leave `clock=` out: the default is the database's clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import conveyor


class FastClock:
    """Simulated time for this example: from the next full minute, 20x real time, 5 minutes."""

    def __init__(self, speed: float = 20, minutes: int = 5) -> None:
        self._speed = speed
        self._minutes = minutes
        self.begin()

    def begin(self) -> None:
        """Start the simulated minutes now (the database may take a while to be ready)."""
        self.start = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        self.end = self.start + timedelta(minutes=self._minutes) - timedelta(microseconds=1)
        self._real_start = time.monotonic()

    def now(self) -> datetime:
        elapsed = timedelta(seconds=(time.monotonic() - self._real_start) * self._speed)
        return min(self.start + elapsed, self.end)


clock = FastClock()
app = conveyor.Conveyor(clock=clock)


@app.periodic(cron="* * * * *", name="cron.every_minute")
@app.task(name="cron.tick")
def tick(ctx: conveyor.JobContext) -> str:
    assert ctx.cron_slot is not None  # the scheduled time this job was enqueued for
    return f"tick for {ctx.cron_slot:%H:%M}"


@app.periodic(
    cron="*/2 * * * *", timezone="Europe/Berlin", catch_up="once", args={"kind": "digest"}
)
@app.task(name="cron.report")
async def report(kind: str) -> str:
    return f"{kind} sent"


# The same task on a schedule of its own, from configuration (a settings file, say).
app.add_schedule("cron.report", name="cron.hourly_digest", cron="@hourly", args={"kind": "hourly"})


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    clock.begin()
    config = conveyor.WorkerConfig(cron_interval=0.1)  # 2 simulated seconds on this clock
    workers = [conveyor.Worker(app, config) for _ in range(3)]
    running = [asyncio.create_task(w.run()) for w in workers]
    client = app.async_client()
    last_minute = clock.end.replace(second=0, microsecond=0)
    try:
        async with asyncio.timeout(60):
            # until the last simulated minute has its job and every job has run (a condition,
            # not a time: on a busy machine a cron pass can come late)
            while not await _all_ticked(client, last_minute):
                await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*running)

    ticks = [j for j in await client.list_jobs(task="cron.tick") if j.created_at >= clock.start]
    print(f"3 workers, 5 simulated minutes from {clock.start:%H:%M} UTC:")
    print(f"cron.every_minute: {len(ticks)} jobs: {', '.join(j.result for j in reversed(ticks))}")
    for s in await client.cron_schedules():
        last = f"{s.last_slot:%H:%M} UTC (job {s.last_job_id})" if s.last_slot else "never"
        print(f"  {s.name:<20} {s.cron:<12} last {last:<22} next {s.next_slot:%H:%M} UTC")
    await app.aclose()


async def _all_ticked(client: conveyor.AsyncClient, last_minute: datetime) -> bool:
    every_minute = next(s for s in await client.cron_schedules() if s.name == "cron.every_minute")
    if every_minute.last_slot is None or every_minute.last_slot < last_minute:
        return False
    return all(j.state.finished for j in await client.list_jobs(task="cron.tick"))


if __name__ == "__main__":
    asyncio.run(main())
