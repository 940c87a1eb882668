"""What the repository hands out: its errors, and the records of definitions, executions and history
(plain frozen dataclasses), with the conversions from their rows."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Text, cast, type_coerce

from smq.engine.cursor import Cursor
from smq.engine.errors import SmqError
from smq.repository.input_cache import INPUTS
from smq.repository.models import FINAL_STATUSES, RUNNING
from smq.repository.tables import EXECUTIONS


class NotFound(SmqError, LookupError):
    """No such definition or execution; the message names what was asked for."""


class StaleDefinition(SmqError):
    """A newer definition version appeared since this process cached the latest one; look again."""


class CheckpointConflict(SmqError):
    """Another process advanced this execution first; this writer must stop."""


STATE_MACHINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class InvalidId(SmqError, ValueError):
    """A state machine id with characters or a length smq does not accept."""


def check_state_machine_id(state_machine_id: str) -> None:
    if not isinstance(state_machine_id, str) or not STATE_MACHINE_ID.fullmatch(state_machine_id):
        raise InvalidId(
            f"state machine id {state_machine_id!r}: use 1-80 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class DefinitionRecord:
    state_machine_id: str
    version: int
    definition: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_machine_id": self.state_machine_id,
            "version": self.version,
            "created_at": iso(self.created_at),
            "definition": self.definition,
        }


@dataclass(frozen=True)
class ExecutionRecord:
    execution_id: str
    name: str
    state_machine_id: str
    version: int
    status: str
    input: Any
    output: Any
    error: str | None
    cause: str | None
    current_state: str | None
    cursor: dict[str, Any] | None
    history_length: int
    start_time: datetime
    stop_time: datetime | None
    updated_at: datetime
    duration_ms: int | None
    source_execution_id: str | None
    source_state_name: str | None
    transformer: str | None
    queue: str | None = None  # the queue it runs from (None: in-process); its continuations go there
    # The process running it ("host:pid") and until when; None while nobody does (handed to the queue).
    # Renewed in the background while it runs, so not part of a record's equality.
    lease_owner: str | None = field(default=None, compare=False)
    lease_expires_at: datetime | None = field(default=None, compare=False)
    index: int | None = None  # the payload's `index`: its position in the batch that started it
    tags: dict[str, str] | None = None  # user keys and values (the payload's tags and user options)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The stable machine-readable form (`smq executions list --json`)."""
        return {
            "execution_id": self.execution_id,
            "name": self.name,
            "state_machine_id": self.state_machine_id,
            "version": self.version,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "current_state": self.current_state,
            "start_time": iso(self.start_time),
            "stop_time": iso(self.stop_time),
            "duration_ms": self.duration_ms,
            "source_execution_id": self.source_execution_id,
            "source_state_name": self.source_state_name,
            "transformer": self.transformer,
            "queue": self.queue,
            "lease_owner": self.lease_owner,
            "lease_expires_at": iso(self.lease_expires_at),
            "index": self.index,
            "tags": self.tags or {},
        }


@dataclass(frozen=True)
class HistoryRecord:
    sequence: int
    state_name: str
    state_type: str
    status: str
    scope: str
    attempt: int
    input: Any
    output: Any
    error: str | None
    cause: str | None
    entered_at: datetime
    exited_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "state_name": self.state_name,
            "state_type": self.state_type,
            "status": self.status,
            "scope": self.scope,
            "attempt": self.attempt,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "entered_at": iso(self.entered_at),
            "timestamp": iso(self.exited_at),
        }


def execution_record(row: Any) -> ExecutionRecord:
    """The record of an executions row; a row read with `execution_columns` on SQLite has its input as
    JSON text, decoded through the process's cache (smq.repository.input_cache)."""
    mapping = row._mapping
    if INPUT_TEXT in mapping:
        execution_input = INPUTS.value(row.id, mapping[INPUT_TEXT])
    else:
        execution_input = row.input
    return ExecutionRecord(
        execution_id=row.id,
        name=row.name,
        state_machine_id=row.state_machine_id,
        version=row.version,
        status=row.status,
        input=execution_input,
        output=row.output,
        error=row.error,
        cause=row.cause,
        current_state=row.current_state,
        cursor=row.cursor,
        history_length=row.history_length,
        start_time=row.start_time,
        stop_time=row.stop_time,
        updated_at=row.updated_at,
        duration_ms=row.duration_ms,
        source_execution_id=row.source_execution_id,
        source_state_name=row.source_state_name,
        transformer=row.transformer,
        queue=row.queue,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        index=row.execution_index,
        tags=row.tags,
    )


INPUT_TEXT = "input_text"


@cache
def execution_columns(dialect: str) -> tuple[Any, ...]:
    """The executions columns to read a whole record, the input as its JSON text (see
    `execution_record`): SQLite keeps it as text, PostgreSQL writes its JSONB out as text. Built once
    per dialect: every resume reads its execution through them."""
    as_text = type_coerce(EXECUTIONS.c.input, Text) if dialect == "sqlite" else cast(EXECUTIONS.c.input, Text)
    return (*(column for column in EXECUTIONS.c if column.name != "input"), as_text.label(INPUT_TEXT))


def history_record(row: Any) -> HistoryRecord:
    return HistoryRecord(
        sequence=row.sequence,
        state_name=row.state_name,
        state_type=row.state_type,
        status=row.status,
        scope=row.scope,
        attempt=row.attempt,
        input=row.input,
        output=row.output,
        error=row.error,
        cause=row.cause,
        entered_at=row.entered_at,
        exited_at=row.exited_at,
    )


def new_execution_record(
    cursor: Cursor,
    *,
    version: int,
    source_execution_id: str | None = None,
    source_state_name: str | None = None,
    transformer: str | None = None,
    queue: str | None = None,
    lease_owner: str | None = None,
    lease_seconds: float = 0,
    index: int | None = None,
    tags: dict[str, str] | None = None,
) -> ExecutionRecord:
    """The RUNNING execution that `cursor` (from `StateMachine.begin`) starts, not yet written; with
    `lease_owner`, leased to that process from the start (so a duplicate delivery cannot run it too)."""
    info = cursor.execution
    leased = lease_owner is not None and lease_seconds > 0
    return ExecutionRecord(
        execution_id=info.id,
        name=info.name,
        state_machine_id=info.state_machine_id,
        version=version,
        status=RUNNING,
        input=info.input,
        output=None,
        error=None,
        cause=None,
        current_state=cursor.state,
        cursor=cursor.to_dict(),
        history_length=0,
        start_time=utc(info.start_time),
        stop_time=None,
        updated_at=utc(info.start_time),
        duration_ms=None,
        source_execution_id=source_execution_id,
        source_state_name=source_state_name,
        transformer=transformer,
        queue=queue,
        lease_owner=lease_owner if leased else None,
        lease_expires_at=utc(info.start_time) + timedelta(seconds=lease_seconds) if leased else None,
        index=index,
        tags=tags or None,
    )


@dataclass(frozen=True)
class ExecutionKey:
    """What identifies an execution, without its payloads (for streaming millions of sources)."""

    execution_id: str
    name: str
    state_machine_id: str
