"""The dashboard's pages (GET, read only) and actions (POST, CSRF-checked), over AsyncClient."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from conveyor.client import AsyncClient
from conveyor.client_rows import OutOfRange
from conveyor.dashboard import csrf
from conveyor.dashboard.auth import (
    SESSION_COOKIE,
    principal,
    safe_next,
    session_value,
    token_matches,
)
from conveyor.dashboard.charts import queue_sparkline, throughput_charts
from conveyor.dashboard.timeline import timeline
from conveyor.errors import JobNotFoundError
from conveyor.http_auth import Credentials
from conveyor.job import Job, JobState

PAGE_SIZE = 50
STATES = [str(s) for s in JobState]
FILTERS = ("queue", "task", "state", "q")
#: Shown instead of JSON that Python cannot hold.
TOO_DEEP = "(too deeply nested to display)"


class Views:
    """Every page and action; one instance per dashboard app."""

    def __init__(
        self,
        client: AsyncClient,
        templates: Jinja2Templates,
        signer: csrf.Signer,
        credentials: Credentials,
        title: str,
    ) -> None:
        self.client = client
        self.templates = templates
        self.signer = signer
        self.credentials = credentials
        self.title = title

    # -- pages ---------------------------------------------------------------------------------

    async def queues(self, request: Request) -> Response:
        status = await self.client.status()
        controls = {q.name: q for q in await self.client.queues()}
        throughput = await self.client.throughput(minutes=60)
        names = sorted({q.queue for q in status.queues} | set(controls))
        counts = {q.queue: q.counts for q in status.queues}
        rows = [
            {
                "name": name,
                "counts": counts.get(name, dict.fromkeys(STATES, 0)),
                "paused": bool(controls.get(name) and controls[name].paused),
                "snoozed_until": controls[name].snoozed_until if name in controls else None,
                "completed_hour": sum(throughput.series(queue=name, state="completed")),
                "failed_hour": sum(throughput.series(queue=name, state="failed")),
                "sparkline": queue_sparkline(throughput, name),
            }
            for name in names
        ]
        return self.render(
            request,
            "queues.html",
            queues=rows,
            charts=throughput_charts(throughput),
            failed_tasks=await self.client.failed_by_task(limit=20),
            workers=status.live_workers,
            orphaned=status.orphaned,
            alerts=await self.client.alert_episodes(open_only=True, limit=20),
        )

    async def jobs(self, request: Request) -> Response:
        filters = {k: request.query_params.get(k, "").strip() or None for k in FILTERS}
        state = filters["state"] if filters["state"] in STATES else None
        before_id = _int(request.query_params.get("before_id"))
        page = await self.client.page_jobs(
            state=state,
            queue=filters["queue"],
            task=filters["task"],
            search=filters["q"],
            before_id=before_id,
            limit=PAGE_SIZE,
        )
        kept = {k: v for k, v in filters.items() if v}
        return self.render(
            request,
            "jobs.html",
            page=page,
            filters=filters,
            before_id=before_id,
            next_query=urlencode({**kept, "before_id": page.next_before_id}),
            first_query=urlencode(kept),
            self_query=request.url.query,
        )

    async def job(self, request: Request) -> Response:
        job_id = _int(request.path_params["job_id"])
        try:
            job = await self.client.get_job(job_id or 0)
        except JobNotFoundError as exc:
            return self.render(request, "missing.html", status_code=404, message=str(exc))
        children = await self.client.children(job.id)
        return self.render(
            request,
            "job.html",
            job=job,
            args_json=json_text(job, "args", indent=2),
            result_json=(
                json_text(job, "result", indent=2)
                if job.result is not None or "result" in job.unreadable
                else None
            ),
            timeline=timeline(job),
            children=children,
            correlation_id=getattr(job, "correlation_id", None),
            actions=_actions(job),
        )

    # -- actions -------------------------------------------------------------------------------

    async def job_action(self, request: Request) -> Response:
        job_id = _int(request.path_params["job_id"]) or 0
        action = request.path_params["action"]
        run: dict[str, Callable[[int], Awaitable[list[int]]]] = {
            "retry": self.client.retry,
            "cancel": self.client.cancel,
            "delete": self.client.delete,
        }
        if action not in run:
            return HTMLResponse("no such action", 404)

        async def act(form: dict[str, str]) -> str:
            done = await run[action](job_id)
            past = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[action]
            if done:
                return f"Job {job_id} {past}."
            return f"Job {job_id} was not {past} (its state does not allow it)."

        default = "/jobs" if action == "delete" else f"/jobs/{job_id}"
        return await self.action(request, act, default)

    async def retry_failed(self, request: Request) -> Response:
        async def act(form: dict[str, str]) -> str:
            task, queue = form.get("task") or None, form.get("queue") or None
            if task is None and queue is None:
                return "Name a task or a queue whose failed jobs to retry; nothing was retried."
            done = await self.client.retry_failed(task=task, queue=queue)
            what = " and ".join(
                f"{k} {v}" for k, v in (("task", task), ("queue", queue)) if v is not None
            )
            return f"Retried {len(done)} failed job(s)" + (f" of {what}." if what else ".")

        return await self.action(request, act, "/")

    async def queue_action(self, request: Request) -> Response:
        name = request.path_params["name"]
        action = request.path_params["action"]
        if action not in ("pause", "resume"):
            return HTMLResponse("no such action", 404)

        async def act(form: dict[str, str]) -> str:
            if action == "pause":
                await self.client.pause_queue(name)
                return f"Queue {name} paused: running jobs finish, no new ones start."
            await self.client.resume_queue(name)
            return f"Queue {name} resumed."

        return await self.action(request, act, "/")

    async def action(
        self, request: Request, act: Callable[[dict[str, str]], Awaitable[str]], default: str
    ) -> Response:
        """Check the CSRF token and origin, act, then redirect with a flash message."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        why = csrf.refusal(request, self.signer, form.get(csrf.CSRF_FIELD))
        if why is not None:
            return self.render(request, "missing.html", status_code=403, message=why)
        message = await act(form)
        root = request.scope.get("root_path", "")
        response = RedirectResponse(root + safe_next(form.get("next") or default), 303)
        csrf.set_flash(request, response, self.signer, message)
        return response

    # -- sign in -------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        nxt = safe_next(request.query_params.get("next"))
        return self.render(request, "login.html", next=nxt, error=None)

    async def login(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        nxt = safe_next(form.get("next"))
        if not csrf.same_origin(request):
            return self.render(
                request, "login.html", status_code=403, next=nxt, error="cross-origin sign-in"
            )
        if not token_matches(self.credentials, form.get("token", "")):
            return self.render(
                request, "login.html", status_code=401, next=nxt, error="wrong token"
            )
        response = RedirectResponse(request.scope.get("root_path", "") + nxt, 303)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(self.credentials),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=csrf.cookie_path(request),
        )
        return response

    async def logout(self, request: Request) -> Response:
        async def act(form: dict[str, str]) -> str:
            return "Signed out."

        response = await self.action(request, act, "/login")
        if response.status_code == 303:
            response.delete_cookie(SESSION_COOKIE, path=csrf.cookie_path(request))
        return response

    # -- rendering -----------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        flash = csrf.take_flash(request, self.signer)
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "root": request.scope.get("root_path", ""),
                "title": self.title,
                "csrf_field": csrf.CSRF_FIELD,
                "csrf_token": csrf.form_token(request, self.signer),
                "flash": flash,
                "signed_in": principal(self.credentials, request) == "session",
                "states": STATES,
                "now": datetime.now(UTC),
                **context,
            },
            status_code=status_code,
        )
        csrf.remember_browser(request, response)
        if flash is not None:
            response.delete_cookie(csrf.FLASH_COOKIE, path=csrf.cookie_path(request))
        return response


def _actions(job: Job) -> list[str]:
    """The actions that make sense for this job's state."""
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        return ["retry", "delete"]
    if job.state == JobState.COMPLETED:
        return ["delete"]
    if job.state == JobState.RUNNING:
        return ["cancel"]
    return ["cancel", "delete"]


def json_text(job: Job, name: str, *, indent: int | None = None) -> str:
    """A JSON field of `job` as text, or why it cannot be shown."""
    if name in job.unreadable:
        return TOO_DEEP
    value = getattr(job, name)
    try:
        return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False, default=str)
    except RecursionError:  # decoded, but too deep to encode again
        return TOO_DEEP


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def age(instant: datetime | None, now: datetime) -> str:
    """'3 min ago' style text for a time."""
    if instant is None:
        return "-"
    if isinstance(instant, OutOfRange):
        return str(instant)
    seconds = (now - instant).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if ahead else f"{text} ago"
