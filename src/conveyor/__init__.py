"""Conveyor: durable background jobs on the PostgreSQL you already run.

`import conveyor` is light: a web process that only enqueues does not load the worker runtime
(prometheus_client, the alerter, cron maintenance). `Worker` and `WorkerConfig` are imported
the first time they are used.
"""

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.alerts import (
    Alert,
    AlertSettings,
    CallbackChannel,
    JobFailed,
    LogChannel,
    OldestAvailableOlderThan,
    QueueDepthAbove,
    WebhookChannel,
)
from conveyor.app import Conveyor, Retention
from conveyor.clock import Clock, FrozenClock, SystemClock
from conveyor.context import JobContext
from conveyor.correlation import correlation_id, current_correlation_id
from conveyor.cron import Schedule
from conveyor.endpoints import Endpoint
from conveyor.errors import (
    BlockingCallError,
    ChildFailed,
    ConfigError,
    ConnectionTypeError,
    ConveyorError,
    DatabaseUnavailableError,
    DeliveryError,
    EndpointNotFoundError,
    EndpointSecretError,
    EventTimeout,
    JobNotFoundError,
    JobTimeout,
    NonDeterminismError,
    PayloadError,
    QueueFullError,
    RefusedAddressError,
    SchemaError,
    StepFailed,
    UniqueKeyRaceError,
    UnknownTaskError,
    WorkflowError,
    WorkflowNotFoundError,
)
from conveyor.flow import Flow
from conveyor.http_auth import Credentials
from conveyor.job import Job, JobState
from conveyor.outcome import FailNow, Retry, SnoozeQueue
from conveyor.queues import QueueInfo, QueueLimits, RateLimit
from conveyor.retry import RetryPolicy
from conveyor.spec import JobSpec
from conveyor.task import Enqueuer, Task
from conveyor.workflow.context import WorkflowContext
from conveyor.workflow.definition import Workflow
from conveyor.workflow.types import (
    ChildError,
    FanOut,
    WorkflowChild,
    WorkflowChildren,
    WorkflowRun,
    WorkflowStep,
)

if TYPE_CHECKING:
    from conveyor.worker import Worker, WorkerConfig

__all__ = [
    "Alert",
    "AlertSettings",
    "BlockingCallError",
    "CallbackChannel",
    "ChildError",
    "ChildFailed",
    "Clock",
    "ConfigError",
    "ConnectionTypeError",
    "Conveyor",
    "ConveyorError",
    "Credentials",
    "DatabaseUnavailableError",
    "DeliveryError",
    "Endpoint",
    "EndpointNotFoundError",
    "EndpointSecretError",
    "Enqueuer",
    "EventTimeout",
    "FailNow",
    "FanOut",
    "Flow",
    "FrozenClock",
    "Job",
    "JobContext",
    "JobFailed",
    "JobNotFoundError",
    "JobSpec",
    "JobState",
    "JobTimeout",
    "LogChannel",
    "NonDeterminismError",
    "OldestAvailableOlderThan",
    "PayloadError",
    "QueueDepthAbove",
    "QueueFullError",
    "QueueInfo",
    "QueueLimits",
    "RateLimit",
    "RefusedAddressError",
    "Retention",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "SchemaError",
    "SnoozeQueue",
    "StepFailed",
    "SystemClock",
    "Task",
    "UniqueKeyRaceError",
    "UnknownTaskError",
    "WebhookChannel",
    "Worker",
    "WorkerConfig",
    "Workflow",
    "WorkflowChild",
    "WorkflowChildren",
    "WorkflowContext",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowRun",
    "WorkflowStep",
    "correlation_id",
    "current_correlation_id",
]

#: Names whose modules load on first use, and where they live.
_LAZY = {"Worker": "conveyor.worker", "WorkerConfig": "conveyor.worker"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
