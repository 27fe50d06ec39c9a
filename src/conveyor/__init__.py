"""Conveyor: durable background jobs on the PostgreSQL you already run."""

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
from conveyor.errors import (
    ConfigError,
    ConveyorError,
    DatabaseUnavailableError,
    JobNotFoundError,
    PayloadError,
    QueueFullError,
    SchemaError,
    UnknownTaskError,
)
from conveyor.flow import Flow
from conveyor.http_auth import Credentials
from conveyor.job import Job, JobState
from conveyor.outcome import FailNow, Retry, SnoozeQueue
from conveyor.queues import QueueInfo, QueueLimits, RateLimit
from conveyor.retry import RetryPolicy
from conveyor.spec import JobSpec
from conveyor.task import Task
from conveyor.worker import Worker, WorkerConfig
from conveyor.worker.executor import JobTimeout

__all__ = [
    "Alert",
    "AlertSettings",
    "CallbackChannel",
    "Clock",
    "ConfigError",
    "Conveyor",
    "ConveyorError",
    "Credentials",
    "DatabaseUnavailableError",
    "FailNow",
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
    "OldestAvailableOlderThan",
    "PayloadError",
    "QueueDepthAbove",
    "QueueFullError",
    "QueueInfo",
    "QueueLimits",
    "RateLimit",
    "Retention",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "SchemaError",
    "SnoozeQueue",
    "SystemClock",
    "Task",
    "UnknownTaskError",
    "WebhookChannel",
    "Worker",
    "WorkerConfig",
    "correlation_id",
    "current_correlation_id",
]
