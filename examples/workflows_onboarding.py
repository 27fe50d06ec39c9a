"""Durable workflows, a drip: a welcome e-mail, three days of nothing, tips, a week, a check-in.
The run sleeps in the database between messages (no worker, no connection held) and a deploy
or a crash in between changes nothing: each message goes out once.

    python examples/workflows_onboarding.py

The example's clock is simulated (conveyor.FrozenClock, moved by hand) so ten days pass in a
second; a real app leaves the clock alone. Uses CONVEYOR_DATABASE_URL, or the embedded Postgres
under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import conveyor

clock = conveyor.FrozenClock()
app = conveyor.Conveyor(clock=clock)
sent: list[str] = []


def send(user: str, message: str) -> str:
    sent.append(f"{clock.now():%b %d}: {message} -> {user}")
    return message


@app.workflow(name="onboarding.drip")
async def drip(ctx: conveyor.WorkflowContext, user: str) -> int:
    await ctx.step("welcome", send, user, "welcome")
    await ctx.sleep(timedelta(days=3))
    await ctx.step("tips", send, user, "five tips")
    await ctx.sleep(timedelta(days=7))
    await ctx.step("check-in", send, user, "how is it going?")
    return 3


async def state(run_id: str) -> Any:
    return await app.async_client().get_workflow(run_id)


async def until(run_id: str, wanted: str, steps: int) -> Any:
    async with asyncio.timeout(30):
        while True:
            run = await state(run_id)
            if run.state == wanted and len(run.steps) >= steps:
                return run
            await asyncio.sleep(0.05)


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    run_id = await drip.astart(user="ann@example.com")
    # the rescuer checks leases on the database's clock: with days jumped by hand it would
    # think every lease expired, so this example keeps it for later
    config = conveyor.WorkerConfig(promote_interval=0.05, rescue_interval=3600.0)
    worker = conveyor.Worker(app, config)
    running = asyncio.create_task(worker.run())
    run = await until(run_id, "sleeping", 2)
    print(f"day 0: {len(sent)} sent, the run sleeps until {run.wake_at:%b %d}")
    clock.advance(days=3)
    await until(run_id, "sleeping", 4)
    clock.advance(days=7)
    run = await until(run_id, "completed", 5)
    worker.stop()
    await running
    print("\n".join(sent))
    print(f"onboarding: {run.state}, {run.result} messages, each sent once: {len(sent) == 3}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
