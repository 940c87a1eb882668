"""OpenTelemetry traces of smq's executions (SMQ_TRACING=on; `pip install 'smq[otel]'`).

One span per run of an execution, `execution <state machine>`, from where the run resumes to where it
ends or parks, and inside it one span per state visit, `state <name>`, with the visit's own start and
end times (its history entry's), type, status, attempt and error. A run that carries an execution on
(after a park, a crash, a redrive) links to the span of the run before it: the execution keeps that
span's W3C traceparent (`smq_executions.trace_context`), so the runs of one execution can be followed
whatever process ran each. On workers, OpenTelemetry's Celery instrumentation adds the task's span
(the parent of the run's, linked to whoever published the task) and its SQLAlchemy instrumentation one
span per SQL statement.

Spans are exported with OTLP over HTTP (OTEL_EXPORTER_OTLP_ENDPOINT and the other standard OTEL_*
variables), or printed with OTEL_TRACES_EXPORTER=console, unless the program has set up its own
tracer provider (`opentelemetry-instrument`, or code of its own), which is then used as it is.

This module is imported only with SMQ_TRACING on: without the extra installed, smq never loads
OpenTelemetry and runs as before.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from smq.engine.cursor import Step
from smq.engine.errors import SmqError
from smq.engine.status import EntryStatus
from smq.engine.status import Status as ExecutionStatus
from smq.execution.observer import Observer
from smq.repository.records import ExecutionRecord
from smq.repository.repository import Repository
from smq.repository.traces import read_trace_context, write_trace_context
from smq.settings import SettingsError

try:
    from opentelemetry import context, trace
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError as exc:  # pragma: no cover - the message is what matters
    raise SettingsError(
        "SMQ_TRACING=on needs OpenTelemetry: pip install 'smq[otel]' (or set SMQ_TRACING=off)"
    ) from exc

log = logging.getLogger("smq.tracing")
TRACER_NAME = "smq"
FAILED_ENTRIES = frozenset(
    {EntryStatus.FAILED, EntryStatus.TIMED_OUT, EntryStatus.RETRIED, EntryStatus.CAUGHT}
)
FAILED_EXECUTIONS = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED})


def traceparent(context: SpanContext) -> str:
    """W3C `traceparent` of a span context: version-trace id-span id-flags."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(text: str | None) -> SpanContext | None:
    """The span context a `traceparent` names, or None for anything else."""
    parts = (text or "").split("-")
    if len(parts) != 4 or parts[0] != "00":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def _ns(epoch: float) -> int:
    return int(epoch * 1_000_000_000)


@dataclass
class _Unwritten:
    """A run of an execution not inserted yet: its span starts when this run's insert commits."""

    start_time: int
    span: Any = None
    token: Any = None
    execution_id: str = ""


# The run of this thread (context) whose execution is not written yet, if any.
_unwritten: ContextVar[_Unwritten | None] = ContextVar("smq_unwritten_run", default=None)


class TracingObserver(Observer):
    """Spans of the runs and states of executions (see the module docstring)."""

    def __init__(self, repository: Repository, tracer_provider: Any = None) -> None:
        self.repository = repository
        self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    @contextmanager
    def run(self, record: ExecutionRecord, *, written: bool = True) -> Iterator[None]:
        if not written:
            # A delivery of a new execution whose first write inserts it; if another delivery created
            # it first, this run carries on with that one (a run of its own, with its own span).
            yield from self._unwritten_run()
            return
        previous = self._previous(record)
        links = [Link(previous, {"smq.link": "previous run"})] if previous is not None else []
        with self.tracer.start_as_current_span(
            f"execution {record.state_machine_id}",
            kind=SpanKind.INTERNAL,
            links=links,
            attributes=_run_attributes(record, resumed=previous is not None),
        ) as span:
            try:
                yield
            finally:
                self._keep(record.execution_id, span)

    def _unwritten_run(self) -> Iterator[None]:
        pending = _Unwritten(time.time_ns())
        token = _unwritten.set(pending)
        try:
            yield
        except BaseException as exc:
            if pending.span is not None:
                pending.span.record_exception(exc)
                pending.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            _unwritten.reset(token)
            if pending.span is not None:
                context.detach(pending.token)
                self._keep(pending.execution_id, pending.span)
                pending.span.end()

    def started(self, record: ExecutionRecord) -> None:
        pending = _unwritten.get()
        if pending is None or pending.span is not None:
            return  # created before its run (a first state with an effect): that run has its span
        pending.span = self.tracer.start_span(
            f"execution {record.state_machine_id}",
            kind=SpanKind.INTERNAL,
            start_time=pending.start_time,
            attributes=_run_attributes(record, resumed=False),
        )
        pending.token = context.attach(trace.set_span_in_context(pending.span))
        pending.execution_id = record.execution_id

    def _previous(self, record: ExecutionRecord) -> SpanContext | None:
        """The span of the execution's last run, kept with it."""
        try:
            kept = read_trace_context(self.repository.single_statement_engine, record.execution_id)
        except Exception:
            log.warning(
                "execution %s: its last trace context could not be read", record.execution_id, exc_info=True
            )
            return None
        return parse_traceparent(kept)

    def _keep(self, execution_id: str, span: Any) -> None:
        """Keep this run's span with the execution, for the next run to link to."""
        try:
            write_trace_context(
                self.repository.single_statement_engine, execution_id, traceparent(span.get_span_context())
            )
        except Exception:
            log.warning("execution %s: its trace context could not be kept", execution_id, exc_info=True)

    def step(self, record: ExecutionRecord, step: Step) -> None:
        parent = trace.set_span_in_context(trace.get_current_span())
        for entry in step.entries:
            attributes: dict[str, Any] = {
                "smq.state.name": entry.state_name,
                "smq.state.type": entry.state_type,
                "smq.state.status": entry.status,
                "smq.state.attempt": entry.attempt,
            }
            if entry.scope:
                attributes["smq.state.scope"] = entry.scope
            if entry.error:
                attributes["smq.state.error"] = entry.error
            span = self.tracer.start_span(
                f"state {entry.state_name}",
                context=parent,
                start_time=_ns(entry.entered_at),
                attributes=attributes,
            )
            if entry.status in FAILED_ENTRIES:
                span.set_status(Status(StatusCode.ERROR, f"{entry.error}: {(entry.cause or '')[:300]}"))
            span.end(end_time=_ns(max(entry.exited_at, entry.entered_at)))

    def ended(self, record: ExecutionRecord, waiting_for: str | None = None) -> None:
        span = trace.get_current_span()
        span.set_attribute("smq.execution.status", record.status)
        if waiting_for:
            span.set_attribute("smq.execution.waiting_for", waiting_for)
        if record.status in FAILED_EXECUTIONS:
            if record.error:
                span.set_attribute("smq.execution.error", record.error)
            span.set_status(Status(StatusCode.ERROR, f"{record.error}: {(record.cause or '')[:300]}"))


def _run_attributes(record: ExecutionRecord, *, resumed: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "smq.execution.id": record.execution_id,
        "smq.execution.name": record.name,
        "smq.state_machine.id": record.state_machine_id,
        "smq.state_machine.version": record.version,
        "smq.execution.resumed": resumed,
    }
    if record.current_state:
        attributes["smq.execution.from_state"] = record.current_state
    if record.queue:
        attributes["smq.queue"] = record.queue
    return attributes


def tracing_observer(repository: Repository) -> TracingObserver:
    """The observer of a process whose tracer provider is set up (`configure_tracing`)."""
    return TracingObserver(repository)


def configure_tracing(service_name: str) -> None:
    """At an edge (a worker's pool process, the scheduler): a tracer provider exporting as the OTEL_*
    variables say, unless the program has one already, and Celery's and SQLAlchemy's instrumentations
    (engines made from now on are traced). `service_name` unless OTEL_SERVICE_NAME is set."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        exporter = _exporter()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    celery, sql = CeleryInstrumentor(), SQLAlchemyInstrumentor()
    if not celery.is_instrumented_by_opentelemetry:
        celery.instrument()
    if not sql.is_instrumented_by_opentelemetry:
        # Its releases so far declare SQLAlchemy < 2.1 and would instrument nothing on 2.1, whose engine
        # events it uses are unchanged (tests/integration/distributed/test_tracing_worker.py).
        sql.instrument(skip_dep_check=True)


def flush_tracing() -> None:
    """Export what is buffered (a pool process about to exit)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush()


def _exporter() -> Any:
    name = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise SmqError(f"OTEL_TRACES_EXPORTER must be otlp, console or none for smq, got {name!r}")
