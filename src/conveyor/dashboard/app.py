"""create_app: the dashboard as an ASGI app, served by `conveyor dashboard` or mounted in yours.

    from conveyor.dashboard import create_app
    app.mount("/jobs", create_app(conveyor_app, token=os.environ["DASHBOARD_TOKEN"]))

Every link is relative to the prefix it is mounted under (the request's root_path).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.client_rows import OutOfRange
from conveyor.dashboard.auth import RequireCredentials
from conveyor.dashboard.csrf import Signer
from conveyor.dashboard.schema import SchemaGuard
from conveyor.dashboard.views import Views, age, json_text
from conveyor.dashboard.workflows import WorkflowViews
from conveyor.http_auth import Credentials
from conveyor.migrate import Migrator

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.dashboard")

TEMPLATES = Path(__file__).parent / "templates"
#: No scripts at all; styles inline; forms post only here; never framed.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def create_app(
    conveyor_app: Conveyor,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    secret_key: str | bytes | None = None,
    allowed_hosts: Sequence[str] | None = None,
    title: str = "Conveyor",
) -> Starlette:
    """Return the dashboard of `conveyor_app` as a Starlette app.

    With a `token` and/or `username` and `password`, every request needs them (bearer token,
    basic auth, or the sign-in form's cookie); without any, it is open to whoever can reach
    it, so guard it yourself (your app's auth) or bind it to 127.0.0.1. `secret_key` signs the
    CSRF tokens and flash messages: give the same one to every process serving the dashboard
    behind one address (default: random per process).
    """
    credentials = Credentials(token, username, password)
    if not credentials.required:
        log.warning("dashboard has no credentials: anyone who can reach it can act on jobs")
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    signer = Signer(key or secrets.token_bytes(32))
    views = Views(conveyor_app.async_client(), _templates(), signer, credentials, title)
    workflows = WorkflowViews(views)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await conveyor_app.aclose()

    routes = [
        Route("/", views.queues, methods=["GET"], name="queues"),
        Route("/jobs", views.jobs, methods=["GET"], name="jobs"),
        Route("/jobs/retry-failed", views.retry_failed, methods=["POST"]),
        Route("/jobs/{job_id:int}", views.job, methods=["GET"], name="job"),
        Route("/jobs/{job_id:int}/{action}", views.job_action, methods=["POST"]),
        # a queue name may hold "/": the path converter takes all but the last segment
        Route("/queues/{name:path}/{action}", views.queue_action, methods=["POST"]),
        Route("/workflows", workflows.runs, methods=["GET"], name="workflows"),
        # a run id may hold "/": the path converter takes all but the last segment
        Route("/workflows/{run_id:path}/{action}", workflows.action, methods=["POST"]),
        Route("/workflows/{run_id:path}", workflows.run, methods=["GET"], name="workflow"),
        Route("/login", views.login_form, methods=["GET"]),
        Route("/login", views.login, methods=["POST"]),
        Route("/logout", views.logout, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(HostGuard, allowed=allowed_hosts),
            Middleware(RequireCredentials, credentials=credentials),
            Middleware(SchemaGuard, check=lambda: Migrator(conveyor_app.database_url).check()),
        ],
        lifespan=lifespan,
    )


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["age"] = age
    env.globals["args_text"] = lambda job: json_text(job, "args")
    env.filters["when"] = _when
    return Jinja2Templates(env=env)


def _when(value: Any) -> str:
    """A time as 'YYYY-MM-DD HH:MM:SS.mmm UTC' (ISO strings too, from the errors list)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, datetime) or value.tzinfo is None or isinstance(value, OutOfRange):
        return "-" if value is None else str(value)
    return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC")


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostGuard:
    """ASGI middleware refusing (400) requests whose Host is not allowed; None allows any."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed is None else {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").lower()
        if host_name(host) in self.allowed:
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(f"host {host!r} is not allowed", 400)
        await response(scope, receive, send)


def host_name(host: str) -> str:
    """The Host header without its port ('[::1]:8080' -> '::1', 'a.b:80' -> 'a.b')."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
