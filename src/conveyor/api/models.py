"""The API's bodies as pydantic models: one source for the validation of what comes in
(unknown fields refused) and for the schemas of the OpenAPI document (openapi.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from conveyor.durations import MAX_SECONDS
from conveyor.job import JobState

INT32 = 2**31 - 1
INT64 = 2**63 - 1
#: Text Postgres can store: no NUL character.
_NO_NUL = r"^[^\u0000]*$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=_NO_NUL)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=_NO_NUL)]
CorrelationId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_NO_NUL)]
JobId = Annotated[int, Field(ge=1, le=INT64)]
Priority = Annotated[int, Field(ge=-INT32 - 1, le=INT32)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
#: Keyword arguments: a JSON object.
Args = dict[str, Any]


class Strict(BaseModel):
    """A request body: a field not listed is refused, naming it."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    """A response body."""


# -- jobs -------------------------------------------------------------------------------------


class EnqueueJob(Strict):
    """A job to enqueue: its task's name and keyword arguments, and options."""

    task: Name = Field(description="The task's name (or an endpoint's).")
    args: Args = Field(default_factory=dict, description="Keyword arguments, a JSON object.")
    queue: Name | None = Field(None, description="Default: 'default' (an endpoint's: its own).")
    run_at: AwareDatetime | None = Field(None, description="Run at this time (not with delay).")
    delay: Seconds | None = Field(None, description="Run this many seconds from now.")
    priority: Priority | None = Field(None, description="Higher runs first; default 0.")
    unique_key: Key | None = Field(
        None, description="While an unfinished job holds this key, its id is returned instead."
    )
    correlation_id: CorrelationId | None = Field(
        None, description="Default: the request's X-Request-Id or traceparent trace id."
    )
    max_attempts: Annotated[int, Field(ge=1, le=INT32)] | None = Field(
        None, description="Attempts before the job fails for good; default 25."
    )


class Enqueued(Out):
    """A job's id; `created` is false when an unfinished job with the unique key existed."""

    id: int
    created: bool


class EnqueueBatch(Strict):
    """Jobs enqueued in one transaction: all of them or none."""

    jobs: list[EnqueueJob] = Field(min_length=1, max_length=1000)


class EnqueuedBatch(Out):
    """Each job's id and whether it was created, in the order given."""

    jobs: list[Enqueued]


class JobOut(Out):
    """A job as stored; `errors` lists every failed attempt, oldest first."""

    id: int
    task: str
    queue: str
    state: JobState
    priority: int
    attempt: int
    max_attempts: int | None
    args: dict[str, Any]
    errors: list[dict[str, Any]]
    unique_key: str | None
    timeout_seconds: float | None
    created_at: datetime
    run_at: datetime
    attempted_at: datetime | None
    finished_at: datetime | None
    result: Any
    worker_id: str | None
    progress: dict[str, Any] | None
    correlation_id: str | None
    unreadable: dict[str, str] = Field(
        description="Columns Python cannot hold (their values here are stand-ins), with why."
    )


class JobList(Out):
    """A page of jobs, newest first; pass `next_before_id` as `before_id` for the next."""

    jobs: list[JobOut]
    next_before_id: int | None


class JobQuery(Strict):
    """Filters of the job list (text, as query strings are: numbers are read from it)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    queue: Name | None = None
    task: Name | None = None
    state: JobState | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    before_id: JobId | None = None


# -- queues -----------------------------------------------------------------------------------


class QueueOut(Out):
    """A queue's controls and its waiting and running counts."""

    name: str
    paused: bool
    snoozed_until: datetime | None
    snooze_reason: str | None
    concurrency: int | None
    key: str | None
    key_concurrency: int | None
    rate_limit: str | None
    max_depth: int | None
    on_full: str
    dropped: int
    waiting: int
    running: int


class QueueList(Out):
    """Every queue with controls or jobs."""

    queues: list[QueueOut]


class QueuePaused(Out):
    """A queue's paused flag after pause or resume."""

    name: str
    paused: bool


# -- endpoints --------------------------------------------------------------------------------


class EndpointIn(Strict):
    """An HTTP endpoint to add: jobs whose task is `name` are POSTed, signed, to `url`."""

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\u0000/]*\S[^\u0000/]*$")
    ]
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^https?://")]
    secret: (
        Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=_NO_NUL)]
        | list[Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=_NO_NUL)]]
    ) = Field(description="A literal, a whsec_ secret, or env:NAME; two while rotating.")
    timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    queue: Name = "default"
    retry_4xx: bool = False


class EndpointOut(Out):
    """An endpoint; secrets are masked (env:NAME whole, literals cut to a hint)."""

    name: str
    url: str
    secrets: list[str]
    timeout: float
    queue: str
    retry_4xx: bool
    created_at: datetime | None
    updated_at: datetime | None
    problem: str | None


class EndpointList(Out):
    """Every endpoint, by name."""

    endpoints: list[EndpointOut]


# -- workflows and events ---------------------------------------------------------------------


class StartRun(Strict):
    """A workflow run to start: its keyword arguments and, for an idempotent start, its id."""

    args: Args = Field(default_factory=dict)
    run_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL)] | None
    ) = Field(None, description="A run that has this id already is returned; no second run starts.")
    queue: Name | None = Field(None, description="The workflow's queue; default 'default'.")
    priority: Priority | None = None


class RunStarted(Out):
    """The run's id."""

    id: str


class StepOut(Out):
    """One recorded step of a run."""

    position: int
    name: str
    kind: str
    state: str
    result: Any
    error: dict[str, Any] | None
    attempts: int
    wake_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class RunOut(Out):
    """A workflow run with its recorded steps."""

    id: str
    workflow: str
    state: Literal["running", "sleeping", "waiting", "completed", "failed", "cancelled"]
    args: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    queue: str
    job_id: int | None
    parent_run_id: str | None
    wait_event: str | None
    wait_key: str | None
    wait_deadline: datetime | None
    wake_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: list[StepOut]


class SendEvent(Strict):
    """An event: the oldest run waiting for (name, key) takes it; else it is kept."""

    name: Key
    key: Annotated[str, StringConstraints(max_length=1000, pattern=_NO_NUL)] = ""
    payload: Any = Field(None, description="Any JSON value; default {}.")


class EventSent(Out):
    """The event's id."""

    id: int


# -- errors -----------------------------------------------------------------------------------


class FieldProblem(Out):
    """One invalid part of a request."""

    location: str = Field(description="Where: body.jobs[0].task, query.limit, path.id ...")
    message: str


class Problem(Out):
    """An error (RFC 9457): `type` names it, `detail` says what to fix."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None
