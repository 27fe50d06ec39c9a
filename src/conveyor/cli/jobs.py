"""`conveyor jobs list|show`, `conveyor retry` and `conveyor cancel`: look at jobs and act on
them by id, saying for every id what happened."""

from __future__ import annotations

import json
from collections.abc import Iterable

import click

from conveyor.cli.context import app_from
from conveyor.client import Client
from conveyor.errors import JobNotFoundError
from conveyor.job import Job, JobState

#: How a JSON value that Python cannot hold is shown instead.
TOO_DEEP = "(too deeply nested to display)"


@click.group()
def jobs() -> None:
    """List and show jobs."""


@jobs.command("list")
@click.option(
    "--state", type=click.Choice([str(s) for s in JobState]), help="Only jobs in this state."
)
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--task", help="Only jobs of this task.")
@click.option("--before-id", type=int, help="Page: show jobs older than this id.")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Most jobs."
)
@click.option("--json", "as_json", is_flag=True, help="Every field of every job, as JSON.")
@click.pass_context
def jobs_list(
    ctx: click.Context,
    state: str | None,
    queue: str | None,
    task: str | None,
    before_id: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """Newest first, filtered by state, queue and task."""
    found = (
        app_from(ctx)
        .client()
        .list_jobs(state=state, queue=queue, task=task, before_id=before_id, limit=limit)
    )
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in found], indent=2, default=str))
        return
    if not found:
        click.echo("no jobs match")
        return
    click.echo(f"{'id':>10}  {'state':<10} {'queue':<12} {'attempt':>7}  task")
    for job in found:
        attempts = f"{job.attempt}/{job.max_attempts or '-'}"
        line = f"{job.id:>10}  {job.state:<10} {job.queue:<12} {attempts:>7}  {job.task}"
        if job.unreadable:
            line += f"  (unreadable: {'; '.join(job.unreadable.values())})"
        click.echo(line)


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Every field of the job, as JSON.")
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """One job with its arguments and every attempt's error."""
    client = app_from(ctx).client()
    job = client.get_job(job_id)
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2, default=str))
        return
    _print_job(job)
    children = client.children(job_id)
    if children:
        states: dict[str, int] = {}
        for child in children:
            states[str(child.state)] = states.get(str(child.state), 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        ids = " ".join(str(c.id) for c in children[:20]) + (" ..." if len(children) > 20 else "")
        click.echo(f"  children ({summary}): {ids}")


def _print_job(job: Job) -> None:
    click.echo(f"job {job.id}: {job.task} [{job.state}] queue={job.queue}")
    if job.unreadable:
        click.echo(f"  unreadable: {'; '.join(job.unreadable.values())}")
    click.echo(f"  attempt {job.attempt} of {job.max_attempts or '-'}, priority {job.priority}")
    finished = "-" if job.finished_at is None else job.finished_at
    click.echo(f"  created {job.created_at}  run at {job.run_at}  finished {finished}")
    click.echo(f"  args {_json(job, 'args')}")
    if job.correlation_id is not None:
        click.echo(f"  correlation id {job.correlation_id}")
    if job.progress is not None:
        message = job.progress.get("message") or ""
        click.echo(f"  progress {job.progress.get('value'):g} {message}".rstrip())
    if job.result is not None or "result" in job.unreadable:
        click.echo(f"  result {_json(job, 'result')}")
    for error in job.errors:
        click.echo(
            f"  attempt {error.get('attempt')} at {error.get('at')}: {error.get('type')}:"
            f" {error.get('message')}"
        )
        if error.get("traceback"):
            click.echo("    " + str(error["traceback"]).rstrip().replace("\n", "\n    "))


def _json(job: Job, name: str) -> str:
    if name in job.unreadable:
        return TOO_DEEP
    try:
        return json.dumps(getattr(job, name))
    except RecursionError:  # decoded, but too deep to encode again
        return TOO_DEEP


@click.command()
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--all-failed", is_flag=True, help="Retry every failed job (of --task/--queue).")
@click.option("--task", help="With --all-failed: only jobs of this task.")
@click.option("--queue", help="With --all-failed: only jobs of this queue.")
@click.pass_context
def retry(
    ctx: click.Context,
    job_ids: tuple[int, ...],
    all_failed: bool,
    task: str | None,
    queue: str | None,
) -> None:
    """Run failed or cancelled jobs again: by id, or --all-failed [--task T] [--queue Q].

    Exits with status 1 when none of the ids given could be retried."""
    if job_ids and all_failed:
        raise click.UsageError("give job ids or --all-failed, not both")
    if not job_ids and not all_failed:
        raise click.UsageError("give job ids, or --all-failed with optional --task/--queue")
    client = app_from(ctx).client()
    if all_failed:
        _echo_done("retried", client.retry_failed(task=task, queue=queue))
        return
    done = client.retry(*job_ids)
    if done:
        _echo_done("retried", done)
    _explain_skipped(
        ctx, client, job_ids, done, "not retried", "only failed or cancelled jobs can be retried"
    )


@click.command()
@click.argument("job_ids", nargs=-1, type=int, required=True)
@click.pass_context
def cancel(ctx: click.Context, job_ids: tuple[int, ...]) -> None:
    """Cancel jobs that have not finished yet.

    Exits with status 1 when none of the ids given could be cancelled."""
    client = app_from(ctx).client()
    done = client.cancel(*job_ids)
    if done:
        _echo_done("cancelled", done)
    _explain_skipped(
        ctx, client, job_ids, done, "not cancelled", "only unfinished jobs can be cancelled"
    )


def _echo_done(past: str, done: list[int]) -> None:
    click.echo(f"{past} {len(done)} job(s)" + (f": {', '.join(map(str, done))}" if done else ""))


def _explain_skipped(
    ctx: click.Context,
    client: Client,
    asked: Iterable[int],
    done: list[int],
    outcome: str,
    rule: str,
) -> None:
    """One line on stderr for every id not acted on, saying why; status 1 if none was."""
    acted = set(done)
    for job_id in dict.fromkeys(asked):
        if job_id in acted:
            continue
        try:
            state = client.get_job(job_id).state
        except JobNotFoundError:
            click.echo(
                f"job {job_id}: {outcome}, there is no such job (it may have been pruned);"
                " `conveyor jobs list` shows the jobs there are",
                err=True,
            )
            continue
        click.echo(f"job {job_id}: {outcome}, it is {state}; {rule}", err=True)
    if not acted:
        ctx.exit(1)
