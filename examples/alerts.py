"""Alerts: a backlog that lasts, and failed jobs, posted to a Slack-style webhook and a callback.

    python examples/alerts.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.

A local HTTP server stands in for Slack (in your code, pass your incoming-webhook URL). The
worker serves the "reports" queue only, so jobs put on "imports" pile up: the backlog rule
fires once they have waited above 5 for a second, and resolves when they are deleted. Three
reports fail for good: one alert lists them all, and it resolves when they are deleted. So
that the example ends in seconds the evaluator runs every 0.2 s and looks at failures after
0.5 s; leave `alert_settings` out to get the defaults (15 s and 5 s).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import conveyor
from conveyor import (
    Alert,
    AlertSettings,
    CallbackChannel,
    FailNow,
    JobFailed,
    QueueDepthAbove,
    WebhookChannel,
)

posted: list[dict[str, object]] = []


class FakeSlack(BaseHTTPRequestHandler):
    """Accepts what a Slack incoming webhook accepts, and keeps it."""

    def do_POST(self) -> None:
        posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


slack = ThreadingHTTPServer(("127.0.0.1", 0), FakeSlack)
threading.Thread(target=slack.serve_forever, daemon=True).start()

app = conveyor.Conveyor(
    alert_settings=AlertSettings(
        interval=timedelta(seconds=0.2), failed_settle=timedelta(seconds=0.5)
    )
)
app.alert(QueueDepthAbove(5, for_=timedelta(seconds=1), queue="imports"), name="imports-backlog")
app.alert(JobFailed(queue="reports"), name="report-failures")
app.alert_channel(WebhookChannel(f"http://127.0.0.1:{slack.server_address[1]}/services/T/B/x"))

seen: list[Alert] = []


async def page_on_call(alert: Alert) -> None:
    """A custom channel: here it only keeps the alert; yours might call a pager's API."""
    seen.append(alert)


app.alert_channel(CallbackChannel(page_on_call))


@app.task(name="alerts.report", queue="reports")
def report(region: str) -> str:
    if region.startswith("mars"):
        raise FailNow(f"no data for region {region}")
    return f"report for {region}"


@app.task(name="alerts.import", queue="imports")
def import_file(path: str) -> None:
    pass


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def alerted(status: str) -> dict[str, float]:
    """Per rule, the sum of the values of its alerts with this status."""
    totals: dict[str, float] = {}
    for alert in seen:
        if alert.status == status:
            totals[alert.rule] = totals.get(alert.rule, 0) + alert.value
    return totals


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    client = app.async_client()
    config = conveyor.WorkerConfig(queues=("reports",), poll_interval=0.2)
    worker = conveyor.Worker(app, config)
    running = asyncio.create_task(worker.run())
    try:
        await worker.started.wait()
        imports = await app.aenqueue_many([import_file.spec(path=f"/in/{n}.csv") for n in range(8)])
        regions = ["eu", "us", "mars-1", "mars-2", "mars-3"]
        reports = await app.aenqueue_many([report.spec(region=r) for r in regions])
        # the backlog fires after a second; failures may come in one batch or a few
        await until(lambda: alerted("firing").get("report-failures") == 3)
        await until(lambda: "imports-backlog" in alerted("firing"))
        await client.delete(*imports)
        failed = [j.id for j in await client.list_jobs(state="failed", task="alerts.report")]
        await client.delete(*failed)
        await until(lambda: len(alerted("resolved")) == 2)
    finally:
        worker.stop()
        await running
        slack.shutdown()
        await app.aclose()

    for alert in seen:
        print(f"{alert.status:<8} {alert.rule:<16} {alert.subject:<22} {alert.message}")
    print(f"webhook posts: {len(posted)}; the first: {json.dumps(posted[0])[:90]}...")
    failures = alerted("firing")["report-failures"]
    print(f"alerts: backlog fired and resolved; {failures:g} failed reports alerted, resolved")
    assert len(reports) == 5 and len(posted) == len(seen)


if __name__ == "__main__":
    asyncio.run(main())
