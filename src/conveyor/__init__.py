"""Conveyor: durable background jobs on the PostgreSQL you already run."""

from conveyor._store.enqueue import JobSpec
from conveyor._store.flow_insert import Flow
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
from conveyor.http_auth import Credentials
from conveyor.job import Job, JobState
from conveyor.outcome import FailNow, Retry, SnoozeQueue
from conveyor.queues import QueueInfo, QueueLimits, RateLimit
from conveyor.retry import RetryPolicy
from conveyor.task import Task
from conveyor.worker import Worker, WorkerConfig
from conveyor.worker.executor import JobTimeout

__all__ = [
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
    "JobNotFoundError",
    "JobSpec",
    "JobState",
    "JobTimeout",
    "PayloadError",
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
    "Worker",
    "WorkerConfig",
    "correlation_id",
    "current_correlation_id",
]
