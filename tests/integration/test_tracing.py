"""With OpenTelemetry installed, a job's span is a child of the span that enqueued it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import eventually, job_states, running_worker

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

_EXPORTER = in_memory.InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[Any]:
    """The global tracer provider (settable once per process) exporting to memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):
        provider = sdk_trace.TracerProvider()
        provider.add_span_processor(export.SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    yield _EXPORTER
    _EXPORTER.clear()


async def test_worker_span_is_a_child_of_the_request_that_enqueued(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], spans: Any
) -> None:
    spans.clear()
    tracer = trace.get_tracer("shop")

    @app.task(name="send_receipt")
    def send_receipt(order_id: int) -> None:
        with tracer.start_as_current_span("smtp send"):
            pass

    with tracer.start_as_current_span("POST /orders") as request_span:
        job_id = send_receipt.enqueue(order_id=42)
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 1)

    finished = {s.name: s for s in spans.get_finished_spans()}
    request = finished["POST /orders"]
    publish = finished["send_receipt publish"]
    process = finished["send_receipt process"]
    smtp = finished["smtp send"]
    trace_id = request_span.get_span_context().trace_id
    assert {s.context.trace_id for s in (request, publish, process, smtp)} == {trace_id}
    assert publish.parent.span_id == request.context.span_id
    assert process.parent.span_id == publish.context.span_id
    assert smtp.parent.span_id == process.context.span_id
    assert publish.kind == trace.SpanKind.PRODUCER
    assert process.kind == trace.SpanKind.CONSUMER
    assert process.attributes["messaging.message.id"] == str(job_id)
    assert process.attributes["conveyor.outcome"] == "succeeded"
    stored = app.client().get_job(job_id).trace_context
    assert stored is not None and stored["traceparent"].split("-")[1] == f"{trace_id:032x}"


async def test_failed_attempt_marks_its_span_as_error(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], spans: Any
) -> None:
    spans.clear()

    @app.task(name="broken", max_attempts=1)
    def broken() -> None:
        raise ValueError("bad address")

    broken.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("failed") == 1)
    process = next(s for s in spans.get_finished_spans() if s.name == "broken process")
    assert process.status.status_code == trace.StatusCode.ERROR
    assert process.attributes["error.type"] == "ValueError"
    assert any(e.name == "exception" for e in process.events)


def test_enqueue_outside_any_span_starts_a_trace_of_its_own(
    app: conveyor.Conveyor, spans: Any
) -> None:
    @app.task(name="plain")
    def plain() -> None: ...

    job_id = plain.enqueue()
    stored = app.client().get_job(job_id).trace_context
    assert stored is not None and "traceparent" in stored


def test_tracing_is_off_until_a_provider_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor import tracing

    monkeypatch.setattr(tracing.trace, "get_tracer_provider", trace.ProxyTracerProvider)
    specs = [conveyor.JobSpec(task="t", args_json="{}")]
    with tracing.enqueue_span(specs) as out:
        assert out is specs
    with tracing.job_span(None) as span:  # type: ignore[arg-type]
        assert span is None
