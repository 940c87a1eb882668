"""OpenTelemetry traces of executions, with the real SDK and its in-memory exporter: one span per run
and one per state visit, with their names, attributes and times; a run that carries an execution on
(after it parked on a message, after a redrive) links to the span of the run before it, through what
the execution keeps in the database."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from smq import (
    HandlerRegistry,
    Repository,
    StartRequest,
    TaskContext,
    TaskError,
    resume_execution,
    start_execution,
)
from smq.execution.control import redrive_execution
from smq.observability.tracing import TracingObserver, parse_traceparent, traceparent
from smq.repository.traces import read_trace_context
from smq.repository.waits import WaitStore

MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": "o-1", "ResultPath": "$.order", "Next": "AwaitPayment"},
        "AwaitPayment": {
            "Type": "Message",
            "CorrelationKey": "payment",
            "CorrelationValuePath": "$.order",
            "ResultPath": "$.payment",
            "Next": "Charge",
        },
        "Charge": {"Type": "Task", "Resource": "charge", "ResultPath": "$.charged", "End": True},
    },
}


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _handlers(declined: list[bool]) -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("charge")
    def charge(payload: Any, ctx: TaskContext) -> dict[str, Any]:
        if declined and declined.pop():
            raise TaskError("Payment.Declined", "card declined")
        return {"ok": True}

    return registry


def _runs(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.name == "execution PAY"]


def test_runs_and_states_are_spans_linked_across_park_resume_and_redrive(
    repository: Repository, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    observer = TracingObserver(repository, tracer_provider=provider)
    repository.put_definition("PAY", MACHINE)
    handlers = _handlers([True])  # the first charge is declined, the one after the redrive is not

    # Run 1: Prepare, then parks on the message.
    parked = start_execution(
        repository, StartRequest("PAY", {}, name="p-1"), handlers=handlers, observer=observer, lease_seconds=0
    )
    assert parked.status == "WAITING"
    # Run 2: the message resumes it; Charge fails.
    [woken] = WaitStore(repository.engine).send_message("payment", "o-1", {"paid": 12})
    failed = resume_execution(
        repository, repository.get_execution(woken.execution_id), handlers=handlers, observer=observer
    )
    assert (failed.status, failed.error) == ("FAILED", "Payment.Declined")
    # Run 3: redriven from Charge, which succeeds.
    redrive_execution(repository, failed.execution_id)
    done = resume_execution(
        repository, repository.get_execution(failed.execution_id), handlers=handlers, observer=observer
    )
    assert done.status == "SUCCEEDED"

    spans = list(exporter.get_finished_spans())
    first, second, third = sorted(_runs(spans), key=lambda span: span.start_time or 0)
    for run in (first, second, third):
        assert run.attributes is not None
        assert run.attributes["smq.execution.id"] == done.execution_id
        assert run.attributes["smq.execution.name"] == "p-1"
        assert run.attributes["smq.state_machine.id"] == "PAY"
        assert run.attributes["smq.state_machine.version"] == 1
    assert [run.attributes["smq.execution.status"] for run in (first, second, third)] == [  # type: ignore[index]
        "WAITING",
        "FAILED",
        "SUCCEEDED",
    ]
    assert first.attributes["smq.execution.waiting_for"] == 'message payment="o-1"'  # type: ignore[index]
    assert second.status.status_code == StatusCode.ERROR
    assert second.attributes["smq.execution.error"] == "Payment.Declined"  # type: ignore[index]
    # Each run links to the one before it (and only to it); the first has nothing to link to.
    assert first.links == () or list(first.links) == []
    assert [link.context.span_id for link in second.links] == [first.context.span_id]  # type: ignore[union-attr]
    assert [link.context.span_id for link in third.links] == [second.context.span_id]  # type: ignore[union-attr]
    assert [link.context.trace_id for link in third.links] == [second.context.trace_id]  # type: ignore[union-attr]
    assert (second.attributes["smq.execution.resumed"], first.attributes["smq.execution.resumed"]) == (  # type: ignore[index]
        True,
        False,
    )
    # What the execution keeps is the last run's span.
    kept = read_trace_context(repository.engine, done.execution_id)
    assert kept == traceparent(third.context)  # type: ignore[arg-type]
    assert parse_traceparent(kept) is not None

    # One span per state visit, inside the run that recorded it, with the visit's own times.
    states = [span for span in spans if span.name.startswith("state ")]
    by_run: dict[int, list[tuple[str, str, str]]] = {}
    for span in states:
        assert span.parent is not None and span.attributes is not None
        by_run.setdefault(span.parent.span_id, []).append(
            (span.name, span.attributes["smq.state.type"], span.attributes["smq.state.status"])  # type: ignore[arg-type]
        )
    assert by_run == {
        first.context.span_id: [("state Prepare", "Pass", "SUCCEEDED")],  # type: ignore[union-attr]
        second.context.span_id: [  # type: ignore[union-attr]
            ("state AwaitPayment", "Message", "SUCCEEDED"),
            ("state Charge", "Task", "FAILED"),
        ],
        third.context.span_id: [("state Charge", "Task", "SUCCEEDED")],  # type: ignore[union-attr]
    }
    history = {(entry.state_name, entry.status): entry for entry in repository.history(done.execution_id)}
    for span in states:
        entry = history[(span.attributes["smq.state.name"], span.attributes["smq.state.status"])]  # type: ignore[index]
        assert span.start_time is not None and span.end_time is not None
        assert abs(span.start_time / 1e9 - entry.entered_at.timestamp()) < 0.001
        assert abs(span.end_time / 1e9 - entry.exited_at.timestamp()) < 0.001
    declined = next(span for span in states if span.attributes["smq.state.status"] == "FAILED")  # type: ignore[index]
    assert declined.status.status_code == StatusCode.ERROR
    assert declined.attributes["smq.state.error"] == "Payment.Declined"  # type: ignore[index]
    # The Message state's span begins in the first run, when it was entered, and ends at the answer.
    waited = next(span for span in states if span.name == "state AwaitPayment")
    assert (
        waited.start_time is not None and first.end_time is not None and waited.start_time <= first.end_time
    )


def test_smq_runs_without_opentelemetry_installed() -> None:
    """Imported, smq loads neither OpenTelemetry nor prometheus-client; asked for tracing without the
    extra, it says what to install."""
    program = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import smq, smq.celery, smq.cli, smq.tasks
from smq.execution.runner import StartRequest, start_execution
loaded = sorted(
    name for name, module in sys.modules.items()
    if module is not None and name.startswith(("opentelemetry", "prometheus_client"))
)
print("loaded:", loaded)
try:
    import smq.observability.tracing
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert "loaded: []" in done.stdout, done.stdout + done.stderr
    assert "SettingsError SMQ_TRACING=on needs OpenTelemetry: pip install 'smq[otel]'" in done.stdout
