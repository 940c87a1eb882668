"""The repository: every read and write smq makes to its database, in short transactions.

Written with SQLAlchemy Core on the hot path (a checkpoint is one UPDATE plus a multi-row INSERT in
one transaction). A checkpoint is conditional on the history length the writer saw, so two processes
resuming the same execution can never both record a state: the loser gets CheckpointConflict.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, exists, func, insert, not_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from smq.engine.cursor import Cursor, HistoryEntry, Step
from smq.engine.errors import SmqError
from smq.engine.machine import StateMachine
from smq.repository.database import autocommit_engine, create_database_engine, ensure_schema, is_sqlite
from smq.repository.filters import ExecutionFilter
from smq.repository.leases import lease_is_free
from smq.repository.models import (
    FINAL_STATUSES,
    RUNNING,
)
from smq.repository.tables import CHAIN_LINKS, DEFINITIONS, EXECUTIONS, HISTORY
from smq.repository.writes import CoreWrites, PostgresWrites, SQLiteWrites


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


def _execution(row: Any) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=row.id,
        name=row.name,
        state_machine_id=row.state_machine_id,
        version=row.version,
        status=row.status,
        input=row.input,
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
    )


def _history(row: Any) -> HistoryRecord:
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
    )


def _step_values(
    step: Step, seen_history_length: int, start_time: float, now: datetime, ended_in: Cursor | None = None
) -> dict[str, Any]:
    """The execution columns a step writes: the new cursor, or the final status and output."""
    entries = step.entries
    values: dict[str, Any] = {"history_length": seen_history_length + len(entries), "updated_at": now}
    cursor = step.cursor or step.failed_at or ended_in
    if cursor is not None:
        values["cursor"] = cursor.to_dict()
        values["current_state"] = cursor.state
    if step.cursor is None:
        stop = utc(entries[-1].exited_at) if entries else now
        values.update(
            status=step.status,
            output=step.output,
            error=step.error,
            cause=step.cause,
            # The cursor is kept: it is where the last state started, which redrive restarts from.
            stop_time=stop,
            duration_ms=max(0, round((stop.timestamp() - start_time) * 1000)),
        )
    return values


def _history_rows(
    execution_id: str, first_sequence: int, entries: list[HistoryEntry]
) -> list[dict[str, Any]]:
    return [
        {
            "execution_id": execution_id,
            "sequence": first_sequence + offset,
            "state_name": entry.state_name,
            "state_type": entry.state_type,
            "status": entry.status,
            "scope": entry.scope,
            "attempt": entry.attempt,
            "input": entry.input,
            "output": entry.output,
            "error": entry.error,
            "cause": entry.cause,
            "entered_at": utc(entry.entered_at),
            "exited_at": utc(entry.exited_at),
        }
        for offset, entry in enumerate(entries)
    ]


@dataclass(frozen=True)
class ExecutionKey:
    """What identifies an execution, without its payloads (for streaming millions of sources)."""

    execution_id: str
    name: str
    state_machine_id: str


class Repository:
    """Definitions, executions, history and chain links in one SQLAlchemy database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # Reads and single-statement writes go through `reader` (autocommit on PostgreSQL).
        self.reader = autocommit_engine(engine)
        self._writes: CoreWrites
        if engine.dialect.name == "postgresql":
            self._writes = PostgresWrites(engine, self.reader)
        elif engine.dialect.name == "sqlite":
            self._writes = SQLiteWrites(engine)
        else:
            self._writes = CoreWrites(engine)
        self._machines: dict[tuple[str, int], StateMachine] = {}
        self._machines_lock = threading.Lock()
        # Latest version per machine as last seen here. Only a hint: an insert that relies on it is
        # guarded in SQL (StaleDefinition), so another process's new version is never missed.
        self._latest: dict[str, int] = {}

    @property
    def single_statement_engine(self) -> Engine:
        """Where a one-statement write goes: autocommit on PostgreSQL (one round trip, no BEGIN and
        COMMIT); on SQLite the BEGIN IMMEDIATE engine, which waits its turn for the write lock."""
        return self.reader if self.engine.dialect.name == "postgresql" else self.engine

    @classmethod
    def open(cls, url: str, *, auto_upgrade: bool | None = None, **engine_options: Any) -> Repository:
        """Connect; the embedded SQLite default migrates itself, a shared database must be upgraded."""
        engine = create_database_engine(url, **engine_options)
        ensure_schema(engine, auto_upgrade=is_sqlite(engine) if auto_upgrade is None else auto_upgrade)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()

    # ------------------------------------------------------------------ definitions

    def put_definition(self, state_machine_id: str, definition: dict[str, Any]) -> DefinitionRecord:
        """Store `definition` (validated first). Unchanged → the latest version; changed → a new one."""
        check_state_machine_id(state_machine_id)
        StateMachine.from_definition(definition, id=state_machine_id)  # raises DefinitionError
        fingerprint = digest(definition)
        for attempt in range(100):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))  # back off from a racing writer
            latest = self._latest_definition_row(state_machine_id)
            if latest is not None and latest.digest == fingerprint:
                return DefinitionRecord(
                    state_machine_id, latest.version, latest.definition, latest.created_at
                )
            version = 1 if latest is None else latest.version + 1
            now = datetime.now(UTC)
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        insert(DEFINITIONS).values(
                            state_machine_id=state_machine_id,
                            version=version,
                            definition=definition,
                            digest=fingerprint,
                            created_at=now,
                        )
                    )
                self._latest[state_machine_id] = version
                return DefinitionRecord(state_machine_id, version, definition, now)
            except IntegrityError:
                continue  # someone else added this version first: look again
        raise SmqError(f"could not store a new version of {state_machine_id!r}: too much contention")

    def _latest_definition_row(self, state_machine_id: str) -> Any:
        with self.reader.connect() as connection:
            return connection.execute(
                select(DEFINITIONS)
                .where(DEFINITIONS.c.state_machine_id == state_machine_id)
                .order_by(DEFINITIONS.c.version.desc())
                .limit(1)
            ).first()

    def get_definition(self, state_machine_id: str, version: int | None = None) -> DefinitionRecord:
        if version is None:
            row = self._latest_definition_row(state_machine_id)
        else:
            with self.reader.connect() as connection:
                row = connection.execute(
                    select(DEFINITIONS).where(
                        DEFINITIONS.c.state_machine_id == state_machine_id, DEFINITIONS.c.version == version
                    )
                ).first()
        if row is None:
            what = f"version {version} of " if version is not None else ""
            raise NotFound(f"no {what}state machine {state_machine_id!r}")
        return DefinitionRecord(row.state_machine_id, row.version, row.definition, row.created_at)

    def list_definitions(self) -> list[dict[str, Any]]:
        """One row per state machine: latest version, number of versions, last change."""
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(
                    DEFINITIONS.c.state_machine_id,
                    func.max(DEFINITIONS.c.version).label("latest_version"),
                    func.count().label("versions"),
                    func.max(DEFINITIONS.c.created_at).label("updated_at"),
                )
                .group_by(DEFINITIONS.c.state_machine_id)
                .order_by(DEFINITIONS.c.state_machine_id)
            ).all()
        return [
            {
                "state_machine_id": row.state_machine_id,
                "latest_version": row.latest_version,
                "versions": row.versions,
                "updated_at": iso(
                    row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
                ),
            }
            for row in rows
        ]

    def state_machine(
        self, state_machine_id: str, version: int | None = None, *, cached_latest: bool = False
    ) -> tuple[StateMachine, int]:
        """The compiled machine for a stored definition (compiled once per version, then cached).

        `cached_latest`: for the latest version, trust the version last seen in this process (no
        query); only for callers that insert with `latest_guard`, which re-checks it in SQL.
        """
        if version is None and cached_latest and state_machine_id in self._latest:
            version = self._latest[state_machine_id]
        key = (state_machine_id, version) if version is not None else None
        machine = self._machines.get(key) if key is not None else None
        if machine is not None and version is not None:
            return machine, version
        record = self.get_definition(state_machine_id, version)
        key = (state_machine_id, record.version)
        with self._machines_lock:
            machine = self._machines.get(key)
            if machine is None:
                machine = StateMachine.from_definition(record.definition, id=state_machine_id)
                self._machines[key] = machine
            if version is None:
                self._latest[state_machine_id] = record.version
        return machine, record.version

    def forget_latest(self, state_machine_id: str) -> None:
        self._latest.pop(state_machine_id, None)

    # ------------------------------------------------------------------ executions

    def create_execution(
        self,
        cursor: Cursor,
        *,
        version: int,
        source_execution_id: str | None = None,
        source_state_name: str | None = None,
        transformer: str | None = None,
        latest_guard: bool = False,
    ) -> tuple[ExecutionRecord, bool]:
        """Insert a RUNNING execution; if its (state machine, name) exists, return that one instead.

        Returns (record, created). The chain link, when there is a source, is written atomically with
        the execution, so a crash never leaves an execution without its link or a link without it.
        """
        record = new_execution_record(
            cursor,
            version=version,
            source_execution_id=source_execution_id,
            source_state_name=source_state_name,
            transformer=transformer,
        )
        return self.insert_execution(record, latest_guard=latest_guard)

    def insert_execution(
        self,
        record: ExecutionRecord,
        *,
        latest_guard: bool = False,
        first_step: Step | None = None,
        ended_in: Cursor | None = None,
        lease_seconds: float = 0,
    ) -> tuple[ExecutionRecord, bool]:
        """Insert `record` (see `new_execution_record`); if its name is taken, return that one instead,
        taken over by `record.lease_owner` for `lease_seconds` when its lease holds no live process.

        With `first_step` (the side-effect-free states it began with, already run from its cursor) the
        execution is written as that step left it, with the step's history rows, atomically: it may
        even be written finished. Raises StaleDefinition when `latest_guard` is set and a newer version
        of the definition exists. `ended_in`: see `checkpoint`."""
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        values: dict[str, Any] = {"updated_at": now}
        if first_step is not None:
            values = _step_values(first_step, 0, record.start_time.timestamp(), now, ended_in)
            rows = _history_rows(record.execution_id, 1, first_step.entries)
        record = replace(record, **values)
        try:
            if not self._writes.insert_execution(record, now, latest_guard=latest_guard, history=rows):
                self.forget_latest(record.state_machine_id)
                raise StaleDefinition(
                    f"state machine {record.state_machine_id!r} has a version newer than {record.version}"
                )
        except IntegrityError:
            existing = None
            if record.lease_owner is not None and lease_seconds > 0:
                # Most often a continuation (or a redelivery) of an execution nobody holds: take it over
                # and read it in one statement. Held by a live process, or finished: read it as it is.
                existing = self.take_over(
                    record.state_machine_id, record.name, record.lease_owner, lease_seconds
                )
            if existing is None:
                existing = self.find_execution(record.state_machine_id, record.name)
            if existing is None:
                raise
            return existing, False
        return record, True

    def take_over(
        self, state_machine_id: str, name: str, owner: str, seconds: float
    ) -> ExecutionRecord | None:
        """Lease the RUNNING execution `state_machine_id`/`name` to `owner` for `seconds` if its lease
        holds no live process (`lease_is_free`); the execution as taken over, or None (also where the
        database has no UPDATE ... RETURNING, SQLite before 3.35: the caller then claims it by id)."""
        if not self.engine.dialect.update_returning:
            return None
        now = datetime.now(UTC)
        c = EXECUTIONS.c
        with self.single_statement_engine.begin() as connection:
            row = connection.execute(
                update(EXECUTIONS)
                .where(
                    c.state_machine_id == state_machine_id,
                    c.name == name,
                    c.status == RUNNING,
                    lease_is_free(now),
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
                .returning(*EXECUTIONS.c)
            ).first()
        return None if row is None else _execution(row)

    def checkpoint(
        self,
        execution_id: str,
        seen_history_length: int,
        step: Step,
        *,
        start_time: float,
        ended_in: Cursor | None = None,
    ) -> dict[str, Any]:
        """Record one step: its history rows and the execution's new cursor/status, atomically.

        `ended_in`: for a final step that stands for several (written together), the cursor of the
        state the execution ended in, which a step-by-step run would have written before it.

        Returns the execution columns written (`history_length` is the new length). Raises CheckpointConflict when another writer got there first
        (the update is conditional on the history length this writer saw, and on RUNNING).
        """
        now = datetime.now(UTC)
        values = _step_values(step, seen_history_length, start_time, now, ended_in)
        rows = _history_rows(execution_id, seen_history_length + 1, step.entries)
        if not self._writes.checkpoint(execution_id, seen_history_length, values, rows):
            raise CheckpointConflict(
                f"execution {execution_id} moved on without this writer (expected history length "
                f"{seen_history_length}); another process is running it or it has finished"
            )
        return values

    def finish(
        self,
        execution_id: str,
        seen_history_length: int,
        status: str,
        error: str | None,
        cause: str | None,
        *,
        start_time: float,
    ) -> None:
        """End an execution without a step (a timeout or an abort decided by the driver)."""
        step = Step([], status=status, error=error, cause=cause)
        self.checkpoint(execution_id, seen_history_length, step, start_time=start_time)

    def get_execution(self, execution_id: str) -> ExecutionRecord:
        with self.reader.connect() as connection:
            row = connection.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id)).first()
        if row is None:
            raise NotFound(f"no execution with id {execution_id!r}")
        return _execution(row)

    def find_execution(self, state_machine_id: str, name: str) -> ExecutionRecord | None:
        with self.reader.connect() as connection:
            row = connection.execute(
                select(EXECUTIONS).where(
                    EXECUTIONS.c.state_machine_id == state_machine_id, EXECUTIONS.c.name == name
                )
            ).first()
        return None if row is None else _execution(row)

    def resolve_execution(self, reference: str) -> ExecutionRecord:
        """An execution by id, or by `STATE_MACHINE_ID/NAME`."""
        try:
            return self.get_execution(reference)
        except NotFound:
            if "/" in reference:
                machine_id, _, name = reference.partition("/")
                found = self.find_execution(machine_id, name)
                if found is not None:
                    return found
            raise NotFound(f"no execution with id {reference!r} (or STATE_MACHINE_ID/NAME)") from None

    # ------------------------------------------------------------------ queries

    def _where(self, flt: ExecutionFilter) -> list[Any]:
        clauses: list[Any] = []
        c = EXECUTIONS.c
        if flt.state_machine_id is not None:
            clauses.append(c.state_machine_id == flt.state_machine_id)
        if flt.statuses:
            clauses.append(c.status.in_(flt.statuses))
        if flt.name_prefix is not None:
            clauses.append(c.name.startswith(flt.name_prefix, autoescape=True))
        if flt.name_contains is not None:
            clauses.append(c.name.contains(flt.name_contains, autoescape=True))
        if flt.started_after is not None:
            clauses.append(c.start_time > flt.started_after)
        if flt.started_before is not None:
            clauses.append(c.start_time < flt.started_before)
        if flt.current_state is not None:
            clauses.append(c.current_state == flt.current_state)
        if flt.source_execution_id is not None:
            clauses.append(c.source_execution_id == flt.source_execution_id)
        if flt.not_chained_into is not None:
            clauses.append(
                not_(
                    exists().where(
                        CHAIN_LINKS.c.source_execution_id == c.id,
                        CHAIN_LINKS.c.target_state_machine_id == flt.not_chained_into,
                    )
                )
            )
        return clauses

    def list_executions(self, flt: ExecutionFilter | None = None) -> list[ExecutionRecord]:
        flt = flt or ExecutionFilter()
        query = (
            select(EXECUTIONS)
            .where(and_(True, *self._where(flt)))
            .order_by(EXECUTIONS.c.start_time, EXECUTIONS.c.id)
            .offset(flt.offset)
        )
        if flt.limit is not None:
            query = query.limit(flt.limit)
        with self.reader.connect() as connection:
            return [_execution(row) for row in connection.execute(query)]

    def count_executions(self, flt: ExecutionFilter | None = None) -> int:
        flt = flt or ExecutionFilter()
        query = select(func.count()).select_from(EXECUTIONS).where(and_(True, *self._where(flt)))
        with self.reader.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def stream_executions(
        self, flt: ExecutionFilter | None = None, *, page_size: int = 1000
    ) -> Iterator[ExecutionRecord]:
        """Every matching execution in (start_time, id) order, one page in memory at a time.

        Keyset pagination: each page starts after the last (start_time, id) seen, so the cost of a page
        does not grow with its position and memory stays flat for millions of rows.
        """
        for row in self._keyset(flt, page_size, [EXECUTIONS]):
            yield _execution(row)

    def stream_execution_keys(
        self, flt: ExecutionFilter | None = None, *, page_size: int = 1000
    ) -> Iterator[ExecutionKey]:
        """Like `stream_executions`, but only what names a chained execution: no payloads are read."""
        c = EXECUTIONS.c
        for row in self._keyset(flt, page_size, [c.id, c.name, c.state_machine_id]):
            yield ExecutionKey(row.id, row.name, row.state_machine_id)

    def _keyset(self, flt: ExecutionFilter | None, page_size: int, columns: list[Any]) -> Iterator[Any]:
        flt = flt or ExecutionFilter()
        c = EXECUTIONS.c
        remaining = flt.limit
        after: tuple[datetime, str] | None = None
        skip = flt.offset
        wanted = [*columns, c.start_time.label("_keyset_start"), c.id.label("_keyset_id")]
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining + skip)
            query = select(*wanted).where(and_(True, *self._where(flt)))
            if after is not None:
                start, last_id = after
                # A row-value comparison, so the index range starts right after the last row seen.
                query = query.where(tuple_(c.start_time, c.id) > tuple_(start, last_id))
            query = query.order_by(c.start_time, c.id).limit(size)
            with self.reader.connect() as connection:
                rows = connection.execute(query).all()
            if not rows:
                return
            after = (rows[-1]._keyset_start, rows[-1]._keyset_id)
            for row in rows:
                if skip:
                    skip -= 1
                    continue
                yield row
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return
            if len(rows) < size:
                return

    def history(self, execution_id: str) -> list[HistoryRecord]:
        self.get_execution(execution_id)  # NotFound for an unknown id rather than an empty list
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(HISTORY).where(HISTORY.c.execution_id == execution_id).order_by(HISTORY.c.sequence)
            ).all()
        return [_history(row) for row in rows]

    def last_output_of_state(self, execution_id: str, state_name: str) -> Any:
        """The output of the last successful visit of a top-level state (for chaining from a state)."""
        with self.reader.connect() as connection:
            row = connection.execute(
                select(HISTORY.c.output)
                .where(
                    HISTORY.c.execution_id == execution_id,
                    HISTORY.c.state_name == state_name,
                    HISTORY.c.scope == "",
                    HISTORY.c.status.in_(("SUCCEEDED", "CAUGHT")),
                )
                .order_by(HISTORY.c.sequence.desc())
                .limit(1)
            ).first()
        if row is None:
            raise NotFound(f"execution {execution_id} has no completed visit of state {state_name!r}")
        return row.output

    def chained_targets(self, source_execution_id: str) -> list[ExecutionRecord]:
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(EXECUTIONS)
                .join(CHAIN_LINKS, CHAIN_LINKS.c.target_execution_id == EXECUTIONS.c.id)
                .where(CHAIN_LINKS.c.source_execution_id == source_execution_id)
                .order_by(EXECUTIONS.c.start_time, EXECUTIONS.c.id)
            ).all()
        return [_execution(row) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        """Executions per status, all machines together (cheap: one grouped count)."""
        c = EXECUTIONS.c
        with self.reader.connect() as connection:
            rows = connection.execute(select(c.status, func.count()).group_by(c.status).order_by(c.status))
            return {status: int(count) for status, count in rows}

    def stats(self, state_machine_id: str | None = None) -> list[dict[str, Any]]:
        """Per state machine and status: count, and mean/p50/p95/p99 duration of finished executions."""
        c = EXECUTIONS.c
        query = select(
            c.state_machine_id, c.status, func.count().label("count"), func.avg(c.duration_ms).label("mean")
        )
        if state_machine_id is not None:
            query = query.where(c.state_machine_id == state_machine_id)
        query = query.group_by(c.state_machine_id, c.status).order_by(c.state_machine_id, c.status)
        results = []
        with self.reader.connect() as connection:
            for row in connection.execute(query).all():
                entry: dict[str, Any] = {
                    "state_machine_id": row.state_machine_id,
                    "status": row.status,
                    "count": row.count,
                    "mean_ms": None if row.mean is None else round(float(row.mean), 3),
                }
                finished = connection.execute(
                    select(func.count()).where(
                        c.state_machine_id == row.state_machine_id,
                        c.status == row.status,
                        c.duration_ms.is_not(None),
                    )
                ).scalar_one()
                for label, fraction in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
                    entry[label] = None
                    if finished:
                        rank = min(finished - 1, max(0, math.ceil(fraction * finished) - 1))  # nearest rank
                        entry[label] = connection.execute(
                            select(c.duration_ms)
                            .where(
                                c.state_machine_id == row.state_machine_id,
                                c.status == row.status,
                                c.duration_ms.is_not(None),
                            )
                            .order_by(c.duration_ms)
                            .offset(rank)
                            .limit(1)
                        ).scalar_one()
                results.append(entry)
        return results


def open_repository(url: str | None = None) -> Repository:
    """The repository at `url`, or at SMQ_DATABASE_URL (default: ./smq.db, SQLite)."""
    from smq.settings import Settings

    return Repository.open(url or Settings.from_env().database_url)
