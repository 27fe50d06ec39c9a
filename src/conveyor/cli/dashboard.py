"""`conveyor dashboard`: serve the web dashboard with uvicorn (extra `dashboard`)."""

from __future__ import annotations

from typing import Any

import click

from conveyor.cli.context import app_from, check_database, load_app
from conveyor.cli.serve import loopback_hosts, missing_extra, serve, url_host
from conveyor.errors import ConfigError
from conveyor.http_auth import is_loopback
from conveyor.migrate import Migrator

__all__ = ["dashboard", "loopback_hosts"]


@click.command()
@click.argument("target", metavar="[MODULE:APP]", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option("--token", envvar="CONVEYOR_DASHBOARD_TOKEN", help="Bearer token / sign-in token.")
@click.option("--username", envvar="CONVEYOR_DASHBOARD_USERNAME", help="HTTP basic auth user.")
@click.option("--password", envvar="CONVEYOR_DASHBOARD_PASSWORD", help="HTTP basic password.")
@click.option(
    "--api", "with_api", is_flag=True, help="Serve the REST API too (/v1, /openapi.json)."
)
@click.pass_context
def dashboard(
    ctx: click.Context,
    target: str | None,
    host: str,
    port: int,
    token: str | None,
    username: str | None,
    password: str | None,
    with_api: bool,
) -> None:
    """Serve the web dashboard: queues, jobs, retry/cancel/delete, pause/resume.

    It listens on 127.0.0.1 unless --host says otherwise, and refuses any other address
    without credentials (--token, or --username with --password; or their
    CONVEYOR_DASHBOARD_* variables). With --api it serves the REST API beside it, which
    takes API tokens (`conveyor token create`) and answers loopback callers only while none
    exists.
    """
    credentials = token is not None or username is not None or password is not None
    if not credentials and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve the dashboard on {host} without credentials: anyone who can"
            " reach it could retry, cancel and delete jobs. Give --token (or"
            " CONVEYOR_DASHBOARD_TOKEN), or --username and --password, or listen on"
            " --host 127.0.0.1"
        )
    try:
        import uvicorn  # noqa: F401 - checked here, before any work

        from conveyor.dashboard import create_app
    except ImportError as exc:
        raise missing_extra(exc, "the dashboard", "dashboard") from None
    app = load_app(target) if target else app_from(ctx)
    if target:
        app.set_default_database_url(ctx.obj.get("database_url"))
        check_database(app.database_url)
    try:
        web = create_app(
            app,
            token=token,
            username=username,
            password=password,
            allowed_hosts=None if credentials else loopback_hosts(host),
        )
    except ConfigError as exc:  # credentials that do not go together: a usage error, status 2
        raise click.UsageError(str(exc)) from None
    Migrator(app.database_url).check()  # a SchemaError stops here, before the server starts
    if with_api:
        from conveyor.cli.api import api_app

        served: Any = api_app(app, host, web)
    else:
        served = web
    auth = "token" if token else "basic auth" if username else "no credentials: loopback only"
    also = " and its REST API" if with_api else ""
    serve(
        served, host, port, f"Conveyor dashboard{also} on http://{url_host(host)}:{port}/ ({auth})"
    )
