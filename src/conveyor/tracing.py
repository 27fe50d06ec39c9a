"""Tracing with OpenTelemetry (the optional `otel` extra): an enqueue makes a producer span
whose context travels inside the job (W3C trace headers in its trace_context column), and the
worker runs the job inside a consumer span that is that span's child, so one trace shows the
web request, the enqueue and the job, even across retries.

Nothing happens until the application installs a tracer provider (the OpenTelemetry SDK or an
auto-instrumentation agent does): without one, these helpers cost a single check.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.job import Job
    from conveyor.spec import JobSpec

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the `otel` extra is not installed
    trace = None  # type: ignore[assignment]

_SYSTEM = "conveyor"


_found: list[tuple[Any, Any]] = []  # (provider, its tracer), once a real provider is set


#: OpenTelemetry takes a provider named in this variable, set before the process starts.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _tracer() -> Any:
    """The tracer, or None when OpenTelemetry is absent or no provider was installed."""
    if trace is None:
        return None
    # While no provider is installed, get_tracer_provider() looks that variable up in
    # os.environ on every call (1.5 µs, once per job and per enqueue: docs/benchmarks.md);
    # its module's provider slot says the same for the cost of an attribute read. Should
    # the slot ever be renamed, the default sends every call down the public path.
    if not _PROVIDER_FROM_ENV and getattr(trace, "_TRACER_PROVIDER", True) is None:
        return None
    provider = trace.get_tracer_provider()
    if _found and _found[0][0] is provider:
        return _found[0][1]  # a tracer per provider, not one per job (the SDK builds each anew)
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    tracer = provider.get_tracer("conveyor")
    _found[:] = [(provider, tracer)]
    return tracer


def enabled() -> bool:
    """True when spans are recorded (OpenTelemetry installed and a provider set)."""
    return _tracer() is not None


@contextmanager
def enqueue_span(specs: Sequence[JobSpec]) -> Iterator[Sequence[JobSpec]]:
    """Run an enqueue inside a producer span; yield the specs carrying its context."""
    tracer = _tracer()
    if tracer is None or not specs:
        yield specs
        return
    tasks = sorted({s.task for s in specs})
    queues = sorted({s.queue or "default" for s in specs})
    name = f"{tasks[0] if len(tasks) == 1 else 'jobs'} publish"
    attributes: dict[str, Any] = {
        "messaging.system": _SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": ",".join(queues),
        "messaging.batch.message_count": len(specs),
        "conveyor.task": ",".join(tasks),
    }
    with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if not carrier:
            yield specs
            return
        yield [
            s if s.trace_context is not None else dataclasses.replace(s, trace_context=carrier)
            for s in specs
        ]


@contextmanager
def job_span(job: Job) -> Iterator[Any]:
    """Run one attempt of `job` inside a consumer span, a child of its enqueuer's span; yield
    the span (None when tracing is off) for record_outcome()."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    parent = propagate.extract(job.trace_context) if job.trace_context else None
    attributes: dict[str, Any] = {
        "messaging.system": _SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "conveyor.task": job.task,
        "conveyor.attempt": job.attempt,
    }
    if job.correlation_id:
        attributes["messaging.message.conversation_id"] = job.correlation_id
    with tracer.start_as_current_span(
        f"{job.task} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def record_outcome(span: Any, outcome: str, error: dict[str, Any] | None = None) -> None:
    """Mark the span with the attempt's outcome; a failed attempt sets an error status."""
    if span is None:
        return
    span.set_attribute("conveyor.outcome", outcome)
    if error is not None:
        span.set_attribute("error.type", str(error.get("type")))
        span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))[:500]))
        span.add_event(
            "exception",
            {
                "exception.type": str(error.get("type")),
                "exception.message": str(error.get("message", "")),
                "exception.stacktrace": str(error.get("traceback") or ""),
            },
        )
