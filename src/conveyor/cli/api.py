"""`conveyor api`: serve the REST API with uvicorn (extra `api`), and `conveyor token`: make,
list and revoke its tokens (docs/api.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from conveyor.app import Conveyor
from conveyor.cli.context import app_from, check_database, load_app
from conveyor.cli.serve import missing_extra, serve, url_host
from conveyor.http_auth import is_loopback
from conveyor.migrate import Migrator
from conveyor.tokens import SCOPES


@click.command()
@click.argument("target", metavar="[MODULE:APP]", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    envvar="CONVEYOR_API_RATE_LIMIT",
    help="Requests a second per token in this process (0: no limit).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    help="Largest request body (default 1 MiB, or the payload limit + 64 KiB).",
)
@click.pass_context
def api(
    ctx: click.Context,
    target: str | None,
    host: str,
    port: int,
    rate_limit: float,
    max_body_bytes: int | None,
) -> None:
    """Serve the REST API (/v1/..., /openapi.json): enqueue, inspect and steer jobs and
    workflows over HTTP.

    Callers send `Authorization: Bearer <token>` (`conveyor token create`). While no token
    exists it answers loopback callers only, and it refuses to listen on any other address.
    With MODULE:APP, the app's tasks get their declared defaults and argument checks."""
    try:
        import uvicorn  # noqa: F401 - checked here, before any work

        from conveyor.api import create_app
    except ImportError as exc:
        raise missing_extra(exc, "the API", "api") from None
    app = load_app(target) if target else app_from(ctx)
    if target:
        app.set_default_database_url(ctx.obj.get("database_url"))
        check_database(app.database_url)
    Migrator(app.database_url).check()  # a SchemaError stops here, before the server starts
    check_api_bind(app, host)
    web = create_app(app, rate_limit=rate_limit or None, max_body_bytes=max_body_bytes)
    serve(
        web, host, port, f"Conveyor API on http://{url_host(host)}:{port}/v1 (docs: /openapi.json)"
    )


def check_api_bind(app: Conveyor, host: str) -> None:
    """Refuse a non-loopback address while no live token exists."""
    if is_loopback(host) or any(t.revoked_at is None for t in app.client().tokens()):
        return
    raise click.UsageError(
        f"refusing to serve the API on {host} without any API token: it would answer nobody"
        " but this machine. Make one with `conveyor token create --name NAME --scope enqueue`,"
        " or listen on --host 127.0.0.1"
    )


def api_app(app: Conveyor, host: str, dashboard: Any) -> Any:
    """The dashboard with the REST API beside it (`conveyor dashboard --api`): /v1/... and
    /openapi.json go to the API, everything else to the dashboard."""
    from conveyor.api import create_app

    check_api_bind(app, host)
    rest = create_app(app)

    async def both(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path.startswith("/v1/") or path == "/openapi.json"):
            await rest(scope, receive, send)
        else:
            await dashboard(scope, receive, send)

    return both


@click.group()
def token() -> None:
    """API tokens: each has scopes (enqueue, read, admin); only a hash is stored."""


@token.command("create")
@click.option("--name", required=True, help="Who or what holds the token (unique while live).")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    required=True,
    help="enqueue, read or admin (admin covers both); repeat for several.",
)
@click.pass_context
def token_create(ctx: click.Context, name: str, scopes: tuple[str, ...]) -> None:
    """Make a token and print it: it is shown only this once (the database keeps a hash)."""
    made, secret = app_from(ctx).client().create_token(name, scopes)
    click.echo(secret)
    click.echo(
        f"token {made.name!r} ({', '.join(made.scopes)}) made; it is shown only once, keep it"
        " in a secret store",
        err=True,
    )


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """List tokens (never their secrets): live ones first."""
    found = app_from(ctx).client().tokens()
    if as_json:
        for t in found:
            row = {
                "id": t.id,
                "name": t.name,
                "scopes": list(t.scopes),
                "prefix": t.prefix,
                "created_at": t.created_at.isoformat(),
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            click.echo(json.dumps(row))
        return
    if not found:
        click.echo("no tokens; make one with `conveyor token create --name NAME --scope read`")
        return
    for t in found:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
        used = f"used {t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
        click.echo(f"{t.id:>4}  {t.name:<24} {','.join(t.scopes):<14} {t.prefix}…  {state}, {used}")


@token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke the live token NAME (or its id): it fails from its next request on."""
    if not app_from(ctx).client().revoke_token(name):
        raise click.ClickException(f"no live token named {name!r}; see `conveyor token list`")
    click.echo(f"token {name!r} revoked")
