"""The workflow pages (runs list, one run with its steps) and actions (cancel, retry), over
AsyncClient; rendering, CSRF and flash messages are the job pages' (views.Views)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from conveyor.dashboard.views import Views
from conveyor.errors import WorkflowNotFoundError
from conveyor.workflow.types import FINISHED, RUN_STATES, WorkflowRun, WorkflowStep

PAGE_SIZE = 50
#: Children listed on a run page (a map may have 10,000; the counts cover them all).
CHILDREN_SHOWN = 100


class WorkflowViews:
    """The workflow pages and actions of one dashboard app."""

    def __init__(self, views: Views) -> None:
        self.views = views
        self.client = views.client

    async def runs(self, request: Request) -> Response:
        state = request.query_params.get("state", "").strip() or None
        workflow = request.query_params.get("workflow", "").strip() or None
        runs = await self.client.list_workflows(
            state=state if state in RUN_STATES else None, workflow=workflow, limit=PAGE_SIZE
        )
        return self.views.render(
            request,
            "workflows.html",
            runs=runs,
            run_states=RUN_STATES,
            filters={"state": state, "workflow": workflow},
            page_size=PAGE_SIZE,
            run_url=run_url,
        )

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            run = await self.client.get_workflow(run_id)
            children = await self.client.workflow_children(run_id, limit=CHILDREN_SHOWN)
        except WorkflowNotFoundError as exc:
            return self.views.render(request, "missing.html", status_code=404, message=str(exc))
        return self.views.render(
            request,
            "workflow.html",
            run=run,
            args_json=pretty(run.args),
            result_json=pretty(run.result) if run.state == "completed" else None,
            steps=[step_row(s) for s in run.steps],
            parked=parked(run),
            actions=actions(run),
            run_url=run_url,
            children=children,
            children_shown=CHILDREN_SHOWN,
        )

    async def action(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        action = request.path_params["action"]
        if action not in ("cancel", "retry"):
            return HTMLResponse("no such action", 404)

        async def act(form: dict[str, str]) -> str:
            if action == "cancel":
                done = await self.client.cancel_workflow(run_id)
                past, why = "cancelled", "it has already finished"
            else:
                done = await self.client.retry_workflow(run_id)
                past, why = "retried from its failed step", "only a failed run can be retried"
            if done:
                return f"Workflow run {run_id} {past}."
            return f"Workflow run {run_id} was not {past.split()[0]} ({why})."

        return await self.views.action(request, act, run_url(run_id))


def run_url(run_id: str) -> str:
    """The run page's path below the dashboard's root (a run id may hold any character)."""
    return "/workflows/" + quote(run_id, safe="")


def actions(run: WorkflowRun) -> list[str]:
    """The actions that make sense for this run's state."""
    if run.state == "failed":
        return ["retry"]
    return [] if run.state in FINISHED else ["cancel"]


def parked(run: WorkflowRun) -> dict[str, Any] | None:
    """What an unfinished run waits for: a sleep's end or an event (name, key, deadline)."""
    if run.state == "sleeping":
        return {"kind": "sleep", "until": run.wake_at}
    if run.state == "waiting":
        return {
            "kind": "event",
            "event": run.wait_event,
            "key": run.wait_key,
            "deadline": run.wait_deadline,
        }
    retrying = [s for s in run.steps if s.state == "retrying"]
    if retrying and not run.finished:
        return {"kind": "retry", "step": retrying[-1].name, "until": retrying[-1].wake_at}
    return None


def step_row(step: WorkflowStep) -> dict[str, Any]:
    """A step as the run page shows it: timings, and its result or its error."""
    error = step.error or {}
    return {
        "step": step,
        "duration": duration(step.started_at, step.finished_at),
        "result_json": pretty(step.result) if step.state == "completed" else None,
        "error": error,
    }


def duration(start: datetime | None, end: datetime | None) -> str:
    """'12 ms', '3.4 s', '2.0 h' between two times; '-' when one is missing."""
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def pretty(value: Any) -> str:
    """JSON for a <pre>, or a note when it is too deep to encode again."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    except RecursionError:
        return "(too deeply nested to display)"
