"""`conveyor status`: jobs per queue and state, live workers, and jobs no live worker can run."""

from __future__ import annotations

import json

import click

from conveyor.cli.context import app_from
from conveyor.job import JobState


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Jobs per queue and state, oldest available job, and tasks no live worker knows."""
    result = app_from(ctx).client().status()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    states = [str(s) for s in JobState]
    click.echo(f"{'queue':<16}" + "".join(f"{s:>11}" for s in states) + f"{'oldest':>10}")
    for q in result.queues:
        age = "-" if q.oldest_available_seconds is None else f"{q.oldest_available_seconds:.0f}s"
        click.echo(f"{q.queue:<16}" + "".join(f"{q.counts[s]:>11}" for s in states) + f"{age:>10}")
    if not result.queues:
        click.echo("(no jobs)")
    click.echo(f"live workers: {len(result.live_workers)}")
    for o in result.orphaned:
        click.echo(
            f"warning: {o.count} job(s) of task {o.task!r} in queue {o.queue!r} wait for a"
            " worker that knows this task (none live has registered it)"
        )
