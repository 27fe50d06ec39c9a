"""`conveyor queue …`: list queues with their controls, pause, resume, snooze, set limits."""

from __future__ import annotations

import json

import click

from conveyor.cli.context import app_from
from conveyor.errors import ConfigError
from conveyor.queues import ON_FULL


@click.group()
def queue() -> None:
    """Queue controls shared by every worker: pause, resume, snooze, limits."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Every queue's controls, as JSON.")
@click.pass_context
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """Every queue with controls or jobs."""
    found = app_from(ctx).client().queues()
    if as_json:
        click.echo(json.dumps([q.to_dict() for q in found], indent=2))
        return
    for info in found:
        d = info.to_dict()
        state = (
            "paused"
            if info.paused
            else f"snoozed until {d['snoozed_until']}"
            if (info.snoozed_until)
            else "active"
        )
        limits = ", ".join(
            f"{name}={d[name]}"
            for name in ("concurrency", "key", "key_concurrency", "rate_limit", "max_depth")
            if d[name] is not None
        )
        if info.limits.max_depth is not None:
            limits += f", on_full={info.limits.on_full}, dropped={info.dropped}"
        click.echo(
            f"{info.name:<20} {state:<10} waiting={info.waiting:<7} running={info.running:<5}"
            f" {limits}".rstrip()
        )


@queue.command("pause")
@click.argument("name")
@click.pass_context
def queue_pause(ctx: click.Context, name: str) -> None:
    """Start no new job of NAME (running ones finish; enqueue goes on)."""
    app_from(ctx).client().pause_queue(name)
    click.echo(f"paused queue {name}")


@queue.command("resume")
@click.argument("name")
@click.pass_context
def queue_resume(ctx: click.Context, name: str) -> None:
    """Let NAME's jobs start again (ends a pause or a snooze)."""
    app_from(ctx).client().resume_queue(name)
    click.echo(f"resumed queue {name}")


@queue.command("snooze")
@click.argument("name")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="How long to hold the jobs back.",
)
@click.option(
    "--reason",
    default="snoozed by an operator",
    show_default=True,
    help="Shown with the queue (why it waits).",
)
@click.pass_context
def queue_snooze(ctx: click.Context, name: str, seconds: float, reason: str) -> None:
    """Hold NAME's jobs back for a while (its downstream is down)."""
    app_from(ctx).client().snooze_queue(name, seconds, reason)
    click.echo(f"snoozed queue {name} for {seconds:g}s")


@queue.command("set")
@click.argument("name")
@click.option("--concurrency", help="Running jobs at once, all workers together ('none').")
@click.option("--key", help="Args field that names a job's concurrency key ('none').")
@click.option("--key-concurrency", help="Running jobs at once per key.")
@click.option("--rate-limit", help="Jobs started per period: '100/minute', '20/s' ('none').")
@click.option("--max-depth", help="Jobs waiting at most ('none').")
@click.option("--on-full", type=click.Choice(ON_FULL), help="What a full queue does.")
@click.pass_context
def queue_set(ctx: click.Context, /, name: str, **options: str | None) -> None:
    """Set limits of NAME; those not given stay as they are."""
    changes: dict[str, object] = {}
    for option, value in options.items():
        if value is None:
            continue
        if option in ("concurrency", "key_concurrency", "max_depth"):
            changes[option] = _count(option, value)
        else:
            changes[option] = None if value.lower() == "none" else value
    if "on_full" in changes and "max_depth" not in changes:
        raise click.UsageError("--on-full goes with --max-depth (give both)")
    if not changes:
        raise click.UsageError("give at least one limit to set")
    try:
        app_from(ctx).client().configure_queue(name, **changes)
    except ConfigError as exc:  # a value the options let through: a usage error, status 2
        raise click.UsageError(str(exc)) from None
    click.echo(f"queue {name}: " + ", ".join(f"{k}={v}" for k, v in changes.items()))


def _count(option: str, value: str) -> int | None:
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        flag = "--" + option.replace("_", "-")
        raise click.BadParameter(f"{flag} takes a whole number or 'none', got {value!r}") from None
