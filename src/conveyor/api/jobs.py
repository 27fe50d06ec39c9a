"""The job routes: enqueue one or a batch, read one or a page, retry, cancel."""

from __future__ import annotations

import dataclasses
from typing import Any

from conveyor import codec
from conveyor._store import admin
from conveyor._store.enqueue import insert_plan
from conveyor._store.runner import arun
from conveyor.api.models import (
    EnqueueBatch,
    Enqueued,
    EnqueuedBatch,
    EnqueueJob,
    JobList,
    JobOut,
    JobQuery,
)
from conveyor.api.problems import ApiProblem
from conveyor.api.routing import Call, Operation, Reply
from conveyor.client import SEARCH_SCAN_LIMIT
from conveyor.job import Job
from conveyor.spec import JobSpec


def job_out(job: Job) -> JobOut:
    """A job as the API shows it."""
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    fields.pop("trace_context")
    return JobOut(**fields)


def _spec(call: Call, job: EnqueueJob) -> JobSpec:
    """The job to insert; a task the app declares gets its defaults and argument checks."""
    if job.run_at is not None and job.delay is not None:
        raise ApiProblem("invalid-request", "give run_at or delay, not both")
    app = call.context.app
    options: dict[str, Any] = {
        "queue": job.queue,
        "priority": job.priority,
        "delay": job.delay,
        "run_at": job.run_at,
        "unique_key": None
        if job.unique_key is None
        else codec.check_key(job.unique_key, "unique_key"),
        "max_attempts": job.max_attempts,
        "correlation_id": job.correlation_id or call.correlation_id,
    }
    task = app.tasks.get(job.task)
    if task is not None and task.workflow is None:
        spec = task.with_options(**options).spec(**job.args)
    else:
        spec = JobSpec(
            task=job.task,
            args_json=codec.encode_args(job.args, max_bytes=app.max_payload_bytes),
            **options,
        )
    if spec.trace_context is None and call.trace_context is not None:
        spec = dataclasses.replace(spec, trace_context=call.trace_context)
    return spec


async def enqueue(call: Call) -> Reply:
    spec = _spec(call, call.body)
    inserted = await arun(call.conn, insert_plan(call.conn, [spec], call.context.app.clock.now()))
    created = inserted.created[0]
    return Reply(201 if created else 200, Enqueued(id=inserted.ids[0], created=created))


async def enqueue_batch(call: Call) -> Reply:
    specs = [_spec(call, job) for job in call.body.jobs]
    now = call.context.app.clock.now()
    inserted = await arun(call.conn, insert_plan(call.conn, specs, now))
    jobs = [Enqueued(id=i, created=c) for i, c in zip(inserted.ids, inserted.created, strict=True)]
    return Reply(201, EnqueuedBatch(jobs=jobs))


async def get_job(call: Call) -> Reply:
    return Reply(200, job_out(await arun(call.conn, admin.get(call.path["id"]))))


async def list_jobs(call: Call) -> Reply:
    q: JobQuery = call.query
    page = admin.page_jobs(q.state, q.queue, q.task, None, q.before_id, q.limit, SEARCH_SCAN_LIMIT)
    found = await arun(call.conn, page)
    return Reply(
        200, JobList(jobs=[job_out(j) for j in found.jobs], next_before_id=found.next_before_id)
    )


async def retry(call: Call) -> Reply:
    job_id = call.path["id"]
    if not await arun(call.conn, admin.retry([job_id], None, None, only_failed=False)):
        job = await arun(call.conn, admin.get(job_id))
        raise ApiProblem(
            "conflict", f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried"
        )
    return Reply(200, job_out(await arun(call.conn, admin.get(job_id))))


async def cancel(call: Call) -> Reply:
    job_id = call.path["id"]
    if not await arun(call.conn, admin.cancel([job_id])):
        job = await arun(call.conn, admin.get(job_id))
        raise ApiProblem("conflict", f"job {job_id} has finished ({job.state}); nothing to cancel")
    return Reply(200, job_out(await arun(call.conn, admin.get(job_id))))


OPERATIONS = (
    Operation(
        "POST", "/v1/jobs", "enqueueJob", "Enqueue a job", "enqueue", enqueue,
        {201: Enqueued, 200: Enqueued}, body=EnqueueJob, atomic=False,
    ),
    Operation(
        "POST", "/v1/jobs/batch", "enqueueJobs", "Enqueue jobs in one transaction (all or none)",
        "enqueue", enqueue_batch, {201: EnqueuedBatch}, body=EnqueueBatch,
    ),
    Operation(
        "GET", "/v1/jobs", "listJobs", "List jobs, newest first (keyset pages)", "read",
        list_jobs, {200: JobList}, query=JobQuery,
    ),
    Operation(
        "GET", "/v1/jobs/{id}", "getJob", "Get a job with its errors", "read", get_job,
        {200: JobOut}, params={"id": "integer"}, errors=(404,),
    ),
    Operation(
        "POST", "/v1/jobs/{id}/retry", "retryJob", "Run a failed or cancelled job again",
        "admin", retry, {200: JobOut}, params={"id": "integer"}, errors=(404, 409),
    ),
    Operation(
        "POST", "/v1/jobs/{id}/cancel", "cancelJob",
        "Cancel an unfinished job (a running one is told to stop)", "admin", cancel,
        {200: JobOut}, params={"id": "integer"}, errors=(404, 409),
    ),
)  # fmt: skip
