"""The repository: every read and write smq makes to its database, in short transactions.

Written with SQLAlchemy Core on the hot path (a checkpoint is one UPDATE plus a multi-row INSERT in
one transaction). A checkpoint is conditional on the history length the writer saw, so two processes
resuming the same execution can never both record a state: the loser gets CheckpointConflict.

This module holds the writes and the compiled-machine cache; the reads are `smq.repository.queries`',
the records and errors `smq.repository.records`' (imported from here as well).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import IntegrityError

from smq.engine.cursor import Cursor, HistoryEntry, Step
from smq.engine.errors import SmqError
from smq.engine.machine import StateMachine
from smq.repository.branches import step_branch_writes
from smq.repository.database import autocommit_engine, create_database_engine, ensure_schema, is_sqlite
from smq.repository.leases import lease_is_free
from smq.repository.models import RUNNING
from smq.repository.queries import Reads
from smq.repository.records import (
    STATE_MACHINE_ID,
    CheckpointConflict,
    DefinitionRecord,
    ExecutionKey,
    ExecutionRecord,
    HistoryRecord,
    InvalidId,
    NotFound,
    StaleDefinition,
    check_state_machine_id,
    digest,
    execution_record,
    iso,
    new_execution_record,
    utc,
)
from smq.repository.tables import DEFINITIONS, EXECUTIONS
from smq.repository.writes import CoreWrites, PostgresWrites, SQLiteWrites

__all__ = [
    "STATE_MACHINE_ID",
    "CheckpointConflict",
    "DefinitionRecord",
    "ExecutionKey",
    "ExecutionRecord",
    "HistoryRecord",
    "InvalidId",
    "NotFound",
    "Repository",
    "StaleDefinition",
    "check_state_machine_id",
    "digest",
    "iso",
    "lease_is_free",
    "new_execution_record",
    "utc",
]


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


class Repository(Reads):
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
        branch_writes = None
        if first_step is not None:
            first_step, branch_writes = step_branch_writes(first_step)
            values = _step_values(first_step, 0, record.start_time.timestamp(), now, ended_in)
            rows = _history_rows(record.execution_id, 1, first_step.entries)
        record = replace(record, **values)
        try:
            if branch_writes is not None:
                inserted = self._writes.insert_with(
                    record, now, latest_guard=latest_guard, history=rows, extra=branch_writes
                )
            else:
                inserted = self._writes.insert_execution(record, now, latest_guard=latest_guard, history=rows)
            if not inserted:
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
        return None if row is None else execution_record(row)

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
        step, branch_writes = step_branch_writes(step)
        values = _step_values(step, seen_history_length, start_time, now, ended_in)
        rows = _history_rows(execution_id, seen_history_length + 1, step.entries)
        if branch_writes is not None:  # a fan-out parks: its branch rows in the same transaction
            written = self._writes.checkpoint_with(
                execution_id, seen_history_length, values, rows, branch_writes
            )
        else:
            written = self._writes.checkpoint(execution_id, seen_history_length, values, rows)
        if not written:
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
