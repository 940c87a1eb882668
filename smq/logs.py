"""Logs that name the execution.

While smq runs an execution it binds the execution's context (`execution_context`): its id, name,
state machine, current state, attempt and queue. `ExecutionContextFilter`, on a handler, copies that
context into every record logged meanwhile (smq's own lines, a handler's, Celery's), so each line says
which execution it is about; `log_end` writes the one line of an execution's end (status, error, cause,
duration). Two formats (`SMQ_LOG_FORMAT`): `text`, readable, with the context in brackets at the end of
the line, and `json`, one object per line for log shippers.

Nothing here runs unless a line is logged: binding is one context variable set per run, and the record
fields are only copied for lines that pass the logger's level. Payloads are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

TEXT, JSON = "text", "json"
LOG_FORMATS = (TEXT, JSON)

# What every line about an execution carries (record attributes and JSON keys). `execution_name`, not
# `name`: a LogRecord's `name` is its logger's.
CONTEXT_FIELDS = ("execution_id", "execution_name", "state_machine_id", "state", "attempt", "queue")
# The end line adds these. `state_attempt` (the ASL state's Retry attempt), `task_id` (the Celery task
# running it) and `waiting_for` (what a parked execution waits for) are there when known.
END_FIELDS = ("status", "error", "cause", "duration_ms")
EXTRA_FIELDS = ("state_attempt", "task_id", "waiting_for")
FIELDS = CONTEXT_FIELDS + EXTRA_FIELDS + END_FIELDS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: ContextVar[dict[str, Any] | None] = ContextVar("smq_execution_context", default=None)


@contextmanager
def execution_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Bind `fields` (None values are left out) on top of the context already bound, for the lines
    logged inside the `with`. The dict yielded is the bound context: updating it (the current state)
    changes what later lines carry, inside this binding only. `attempt` is 1 unless bound."""
    context = {"attempt": 1, **(_context.get() or {})}
    context.update((key, value) for key, value in fields.items() if value is not None)
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)


@contextmanager
def execution_run(**fields: Any) -> Iterator[dict[str, Any]]:
    """`execution_context` for one run of an execution (the runner's). A binding around it that names
    no execution yet (a worker's delivery knows the name, not the id) learns from it which execution
    it is and the state it stood in when the run ended or raised: a retry's line names both."""
    enclosing = _context.get()
    with execution_context(**fields) as context:
        try:
            yield context
        finally:
            if enclosing is not None and enclosing.get("execution_id") in (None, context.get("execution_id")):
                enclosing.update(
                    (key, context[key])
                    for key in ("execution_id", "state", "state_attempt")
                    if key in context
                )


def current_context() -> dict[str, Any]:
    """A copy of the context bound now ({} outside any execution)."""
    return dict(_context.get() or {})


class ExecutionContextFilter(logging.Filter):
    """On a handler: records logged inside an execution's context carry its fields (a field given
    explicitly with `extra=` wins). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context:
            attributes = record.__dict__
            for key, value in context.items():
                attributes.setdefault(key, value)
        return True


def log_end(logger: logging.Logger, fields: Mapping[str, Any], level: int = logging.INFO) -> None:
    """The line of an execution's end, or of its park (status WAITING): `fields` has the execution's
    CONTEXT_FIELDS and END_FIELDS (a missing or None one is taken from the context bound now, else
    logged as null), and may have EXTRA_FIELDS. Complete without the filter, for handlers smq did not set up."""
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = dict.fromkeys(CONTEXT_FIELDS + END_FIELDS)
    extra.update(current_context())
    extra.update((key, value) for key, value in fields.items() if key in FIELDS and value is not None)
    extra["attempt"] = extra["attempt"] or 1
    status, error, cause, took = (extra[key] for key in END_FIELDS)
    message = f"execution {status} after {took} ms" if took is not None else f"execution {status}"
    if extra.get("waiting_for"):
        message += f", waiting for {extra['waiting_for']}"
    if error is not None or cause is not None:
        # On one line, and short: the whole cause is the `cause` field.
        cause_line = " ".join(str(cause).split())
        message += f": {error}: {cause_line if len(cause_line) <= 300 else cause_line[:300] + '...'}"
    logger.log(level, "%s", message, extra=extra)


class Ended(Protocol):
    """An execution's record, as `ended_fields` reads it (smq.repository's ExecutionRecord)."""

    @property
    def execution_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state_machine_id(self) -> str: ...
    @property
    def current_state(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def cause(self) -> str | None: ...
    @property
    def duration_ms(self) -> int | None: ...


def ended_fields(record: Ended, **more: Any) -> dict[str, Any]:
    """What `log_end` says about `record` (the queue and attempt are the run's: its context's)."""
    return {
        "execution_id": record.execution_id,
        "execution_name": record.name,
        "state_machine_id": record.state_machine_id,
        "state": record.current_state,
        "status": record.status,
        "error": record.error,
        "cause": record.cause,
        "duration_ms": record.duration_ms,
        **more,
    }


def text_suffix(record: logging.LogRecord) -> str:
    """` [STATE_MACHINE/NAME ID state=S attempt=N queue=Q]` for a record about an execution, else ""."""
    fields = record.__dict__
    if "execution_id" not in fields and "execution_name" not in fields:
        return ""
    parts = [f"{fields.get('state_machine_id')}/{fields.get('execution_name')}"]
    if fields.get("execution_id") is not None:
        parts.append(str(fields["execution_id"]))
    for key in ("state", "attempt", "state_attempt", "queue", "task_id"):
        value = fields.get(key)
        if value is not None:
            parts.append(f"{key}={value}")
    return f" [{' '.join(parts)}]"


class TextFormatter(logging.Formatter):
    """Another formatter's text (smq's TEXT_FORMAT, or Celery's own), with the execution's context at
    the end of its first line (before any traceback)."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        suffix = text_suffix(record)
        if not suffix:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first}{suffix}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the execution's fields
    when the record has them, and the exception's traceback as text. ASCII only, so a line never holds
    a newline or an encoding error, whatever the message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        if "execution_id" in attributes or "execution_name" in attributes:
            # A line about an execution has every context field, null where not known.
            entry.update((key, attributes.get(key)) for key in CONTEXT_FIELDS)
        entry.update((key, attributes[key]) for key in EXTRA_FIELDS + END_FIELDS if key in attributes)
        entry["process"] = record.processName
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def formatter_for(log_format: str, text: logging.Formatter | None = None) -> logging.Formatter:
    """The formatter of SMQ_LOG_FORMAT: JSON, or `text` (default: TEXT_FORMAT) with the context."""
    if log_format == JSON:
        return JsonFormatter()
    if log_format == TEXT:
        return TextFormatter(text)
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")


def format_handler(handler: logging.Handler, log_format: str) -> None:
    """Make `handler` (one smq did not create: Celery's) write SMQ_LOG_FORMAT with the execution's
    context. Idempotent: a handler set up twice is formatted once."""
    if not any(isinstance(f, ExecutionContextFilter) for f in handler.filters):
        handler.addFilter(ExecutionContextFilter())
    current = handler.formatter
    if isinstance(current, JsonFormatter | TextFormatter):
        return
    handler.setFormatter(formatter_for(log_format, current))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def configure_logging(log_format: str, level: int) -> None:
    """At an edge (a CLI command, the scheduler): log to stderr in SMQ_LOG_FORMAT at `level`, unless the
    program has set up logging itself (the root logger has handlers smq did not put there)."""
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, _StderrHandler)]
    if root.handlers and not ours:
        return
    handler = ours[0] if ours else _StderrHandler()
    handler.setFormatter(formatter_for(log_format))
    if not ours:
        handler.addFilter(ExecutionContextFilter())
        root.addHandler(handler)
    root.setLevel(level)
