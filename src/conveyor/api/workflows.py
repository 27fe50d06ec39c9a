"""The workflow routes: start a run, read it with its steps, cancel it; send an event."""

from __future__ import annotations

from typing import Any

from conveyor import codec
from conveyor._store import workflows as workflow_ops
from conveyor._store.runner import arun
from conveyor.api.models import EventSent, RunOut, RunStarted, SendEvent, StartRun, StepOut
from conveyor.api.problems import ApiProblem
from conveyor.api.routing import Call, Operation, ParamType, Reply
from conveyor.workflow.types import WorkflowRun


def run_out(run: WorkflowRun) -> RunOut:
    """A run as the API shows it, with its steps."""
    fields: dict[str, Any] = {name: getattr(run, name) for name in RunOut.model_fields}
    fields["steps"] = [StepOut(**vars(step)) for step in run.steps]
    return RunOut(**fields)


async def start_run(call: Call) -> Reply:
    body: StartRun = call.body
    name = call.path["name"]
    declared = call.context.app.workflows.get(name)
    if declared is not None:  # its argument checks and its queue and priority
        run_id = await declared.astart_tx(call.conn, run_id=body.run_id, **body.args)
    else:
        if body.run_id is not None:
            codec.check_key(body.run_id, "run_id")
        args = codec.encode_args(body.args, max_bytes=call.context.app.max_payload_bytes)
        op = workflow_ops.start(name, args, body.run_id, body.queue, body.priority)
        run_id = await arun(call.conn, op)
    return Reply(201, RunStarted(id=run_id))


async def get_run(call: Call) -> Reply:
    return Reply(200, run_out(await arun(call.conn, workflow_ops.get(call.path["id"]))))


async def cancel_run(call: Call) -> Reply:
    run_id = call.path["id"]
    now = call.context.app.clock.now()
    if not await arun(call.conn, workflow_ops.cancel(run_id, now)):
        run = await arun(call.conn, workflow_ops.get(run_id))  # 404 when there is none
        raise ApiProblem(
            "conflict", f"run {run_id!r} has finished ({run.state}); nothing to cancel"
        )
    return Reply(200, run_out(await arun(call.conn, workflow_ops.get(run_id))))


async def send_event(call: Call) -> Reply:
    body: SendEvent = call.body
    event_id = await call.context.app.asend_event_tx(
        call.conn, body.name, key=body.key, payload=body.payload
    )
    return Reply(201, EventSent(id=event_id))


_ID: dict[str, ParamType] = {"id": "string"}

OPERATIONS = (
    Operation(
        "POST", "/v1/workflows/{name}/runs", "startWorkflow",
        "Start a workflow run (idempotent on run_id)", "enqueue", start_run, {201: RunStarted},
        body=StartRun, params={"name": "string"}, tag="workflows",
    ),
    Operation(
        "GET", "/v1/workflow-runs/{id}", "getWorkflowRun", "Get a workflow run with its steps",
        "read", get_run, {200: RunOut}, params=_ID, errors=(404,), tag="workflows",
    ),
    Operation(
        "POST", "/v1/workflow-runs/{id}/cancel", "cancelWorkflowRun",
        "Cancel an unfinished run, its sleep or wait and its job", "admin", cancel_run,
        {200: RunOut}, params=_ID, errors=(404, 409), tag="workflows",
    ),
    Operation(
        "POST", "/v1/events", "sendEvent",
        "Send an event to the oldest run waiting for (name, key), or keep it", "enqueue",
        send_event, {201: EventSent}, body=SendEvent, tag="workflows", atomic=False,
    ),
)  # fmt: skip
