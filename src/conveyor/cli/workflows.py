"""`conveyor workflows list|show|cancel|retry`: look at workflow runs and act on them by id."""

from __future__ import annotations

import json
from datetime import UTC

import click

from conveyor.cli.context import app_from
from conveyor.workflow.types import RUN_STATES, WorkflowRun, WorkflowStep


@click.group()
def workflows() -> None:
    """List, show, cancel and retry workflow runs."""


@workflows.command("list")
@click.option("--state", type=click.Choice(RUN_STATES), help="Only runs in this state.")
@click.option("--workflow", help="Only runs of this workflow.")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Most runs."
)
@click.option("--json", "as_json", is_flag=True, help="Every field of every run, as JSON.")
@click.pass_context
def workflows_list(
    ctx: click.Context, state: str | None, workflow: str | None, limit: int, as_json: bool
) -> None:
    """Newest first, filtered by state and workflow."""
    runs = app_from(ctx).client().list_workflows(state=state, workflow=workflow, limit=limit)
    if as_json:
        click.echo(json.dumps([_as_dict(r) for r in runs], indent=2, default=str))
        return
    if not runs:
        click.echo("no workflow runs match")
        return
    click.echo(f"{'run id':<38} {'state':<10} {'created (UTC)':<19}  workflow")
    for run in runs:
        created = run.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{run.id:<38} {run.state:<10} {created:<19}  {run.workflow}")


@workflows.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Every field of the run, as JSON.")
@click.pass_context
def workflows_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """One run: its state, what it waits for, and each recorded step."""
    run = app_from(ctx).client().get_workflow(run_id)
    if as_json:
        click.echo(json.dumps(_as_dict(run), indent=2, default=str))
        return
    click.echo(f"run {run.id}: {run.workflow} [{run.state}] queue={run.queue} job={run.job_id}")
    click.echo(f"  created {run.created_at}  finished {run.finished_at or '-'}")
    click.echo(f"  args {json.dumps(run.args)}")
    if run.wait_event is not None:
        until = run.wait_deadline or "no timeout"
        click.echo(f"  waits for event {run.wait_event!r} key {run.wait_key!r} until {until}")
    elif run.state == "sleeping" and run.steps and run.steps[-1].wake_at is not None:
        click.echo(f"  sleeps until {run.steps[-1].wake_at}")
    if run.result is not None:
        click.echo(f"  result {json.dumps(run.result)}")
    if run.error is not None:
        click.echo(f"  error {run.error.get('type')}: {run.error.get('message')}")
    for step in run.steps:
        click.echo("  " + _step_line(step))


@workflows.command("cancel")
@click.argument("run_ids", nargs=-1, required=True)
@click.pass_context
def workflows_cancel(ctx: click.Context, run_ids: tuple[str, ...]) -> None:
    """Cancel unfinished runs (their sleep or wait, and their job). Exits with status 1 when
    none could be cancelled."""
    client = app_from(ctx).client()
    done = [run_id for run_id in run_ids if client.cancel_workflow(run_id)]
    _report(ctx, run_ids, done, "cancelled", "already finished or unknown")


@workflows.command("retry")
@click.argument("run_ids", nargs=-1, required=True)
@click.pass_context
def workflows_retry(ctx: click.Context, run_ids: tuple[str, ...]) -> None:
    """Resume failed runs from their failed step (completed steps are not run again). Exits
    with status 1 when none could be retried."""
    client = app_from(ctx).client()
    done = [run_id for run_id in run_ids if client.retry_workflow(run_id)]
    _report(ctx, run_ids, done, "retried", "not failed, or unknown")


def _step_line(step: WorkflowStep) -> str:
    line = f"{step.position:>4} {step.kind:<5} {step.name:<24} {step.state:<9}"
    line += f" attempts={step.attempts}"
    if step.wake_at is not None and step.state in ("sleeping", "waiting", "retrying"):
        line += f" until {step.wake_at}"
    if step.error is not None:
        line += f"  {step.error.get('type')}: {step.error.get('message')}"
    elif step.result is not None:
        line += f"  -> {json.dumps(step.result)[:200]}"
    return line


def _report(
    ctx: click.Context, asked: tuple[str, ...], done: list[str], verb: str, why: str
) -> None:
    for run_id in asked:
        click.echo(f"{run_id}: {verb}" if run_id in done else f"{run_id}: not {verb} ({why})")
    if not done:
        ctx.exit(1)


def _as_dict(run: WorkflowRun) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(run)
