"""`conveyor endpoint …`: the HTTP endpoints jobs are delivered to (add, list, show, set,
remove). Secrets are never printed in full."""

from __future__ import annotations

import json
from typing import Any

import click

from conveyor.cli.context import app_from
from conveyor.endpoints import DEFAULT_TIMEOUT, Endpoint, private_address_warning

_SECRET_HELP = (
    "The signing secret: a whsec_ secret (base64), any other string, or env:NAME to read"
    " environment variable NAME where the worker runs (kept out of the database)."
)
_TIMEOUT = click.FloatRange(min=0, min_open=True, max=3600)


@click.group()
def endpoint() -> None:
    """HTTP endpoints: a job whose task is an endpoint's name is POSTed to its URL, signed."""


@endpoint.command("add")
@click.argument("name")
@click.option("--url", required=True, help="Where jobs are POSTed (http:// or https://).")
@click.option("--secret", required=True, help=_SECRET_HELP)
@click.option(
    "--timeout",
    type=_TIMEOUT,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds a delivery may take.",
)
@click.option(
    "--queue",
    default="default",
    show_default=True,
    help="The queue of the endpoint's jobs (conveyor.enqueue with no queue).",
)
@click.option(
    "--retry-4xx", is_flag=True, help="Retry 4xx answers (except 410) instead of failing."
)
@click.pass_context
def endpoint_add(
    ctx: click.Context,
    name: str,
    url: str,
    secret: str,
    timeout: float,
    queue: str,
    retry_4xx: bool,
) -> None:
    """Add endpoint NAME: `select conveyor.enqueue('NAME', ...)` then delivers to URL."""
    added = (
        app_from(ctx)
        .client()
        .add_endpoint(name, url, secret, timeout=timeout, queue=queue, retry_4xx=retry_4xx)
    )
    click.echo(f"added endpoint {added.name} -> {added.url} (queue {added.queue})")
    _warn_private(url)


@endpoint.command("list")
@click.option("--json", "as_json", is_flag=True, help="Every endpoint, as JSON (secrets masked).")
@click.pass_context
def endpoint_list(ctx: click.Context, as_json: bool) -> None:
    """Every endpoint."""
    found = app_from(ctx).client().endpoints()
    if as_json:
        click.echo(json.dumps([_as_dict(e) for e in found], indent=2))
        return
    for e in found:
        click.echo(
            f"{e.name:<24} {e.url}  queue={e.queue} timeout={e.timeout:g}s secrets={len(e.secrets)}"
        )


@endpoint.command("show")
@click.argument("name")
@click.pass_context
def endpoint_show(ctx: click.Context, name: str) -> None:
    """One endpoint's settings (secrets masked)."""
    found = app_from(ctx).client().get_endpoint(name)
    for key, value in _as_dict(found).items():
        click.echo(f"{key + ':':<12} {value}")


@endpoint.command("set")
@click.argument("name")
@click.option("--url", help="A new URL.")
@click.option("--secret", help="Replace the secrets with this one. " + _SECRET_HELP)
@click.option("--add-secret", help="Sign with this secret too (rotation: keeps the newest two).")
@click.option("--timeout", type=_TIMEOUT, help="Seconds a delivery may take.")
@click.option("--queue", help="The queue of the endpoint's new jobs.")
@click.option("--retry-4xx/--no-retry-4xx", default=None, help="Retry 4xx answers or not.")
@click.pass_context
def endpoint_set(ctx: click.Context, /, name: str, **changes: Any) -> None:
    """Change settings of endpoint NAME; the others stay."""
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        raise click.UsageError("name at least one setting to change, e.g. --timeout 10")
    app_from(ctx).client().set_endpoint(name, **given)
    click.echo(f"changed endpoint {name}: {', '.join(sorted(given))}")
    if given.get("url"):
        _warn_private(given["url"])


@endpoint.command("remove")
@click.argument("name")
@click.pass_context
def endpoint_remove(ctx: click.Context, name: str) -> None:
    """Remove endpoint NAME (its waiting jobs stay, undelivered)."""
    app_from(ctx).client().remove_endpoint(name)
    click.echo(f"removed endpoint {name}")


def _as_dict(e: Endpoint) -> dict[str, Any]:
    return {
        "name": e.name,
        "url": e.url,
        "secrets": list(e.masked()),
        "timeout": e.timeout,
        "queue": e.queue,
        "retry_4xx": e.retry_4xx,
        "created_at": e.created_at.isoformat() if e.created_at else None,
        "updated_at": e.updated_at.isoformat() if e.updated_at else None,
    }


def _warn_private(url: str) -> None:
    warning = private_address_warning(url)
    if warning:
        click.echo(f"warning: {warning}", err=True)
