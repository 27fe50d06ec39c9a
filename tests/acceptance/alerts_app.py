"""The app that the alerts acceptance test runs in `conveyor worker` processes: every job of
its task fails at once, failures are alerted to the webhook at ALERTS_WEBHOOK_URL."""

from __future__ import annotations

import os
from datetime import timedelta

import conveyor
from conveyor import AlertSettings, JobFailed, WebhookChannel

app = conveyor.Conveyor(
    alert_settings=AlertSettings(
        interval=timedelta(seconds=0.2), failed_settle=timedelta(seconds=1)
    )
)
app.alert(JobFailed(queue="alerts"), name="failures")
app.alert_channel(WebhookChannel(os.environ.get("ALERTS_WEBHOOK_URL", "http://127.0.0.1:9/")))


@app.task(name="alerts.boom", queue="alerts")
def boom(n: int) -> None:
    raise conveyor.FailNow(f"job {n} cannot work")
