"""The two hot writes (create an execution, checkpoint a step), tuned per backend.

On PostgreSQL each is ONE statement in autocommit mode: a checkpoint is an UPDATE ... RETURNING in a
CTE feeding an INSERT of every history row from a single JSON parameter, so a state transition costs
one network round trip and stays atomic. Both run on the psycopg connection directly (pre-written SQL,
positional parameters, server-side prepared), bypassing SQLAlchemy's per-statement machinery. SQLite
has no DML in CTEs; there the same work is one short BEGIN IMMEDIATE transaction on the sqlite3
connection, which costs no network at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError

from smq.engine.jsontext import compact, compact_encoder
from smq.repository.models import RUNNING
from smq.repository.records import ExecutionRecord
from smq.repository.tables import CHAIN_LINKS, DEFINITIONS, EXECUTIONS, HISTORY


def execution_row(record: ExecutionRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": record.execution_id,
        "name": record.name,
        "state_machine_id": record.state_machine_id,
        "version": record.version,
        "status": record.status,
        "input": record.input,
        "output": record.output,
        "error": record.error,
        "cause": record.cause,
        "current_state": record.current_state,
        "cursor": record.cursor,
        "history_length": record.history_length,
        "start_time": record.start_time,
        "stop_time": record.stop_time,
        "duration_ms": record.duration_ms,
        "updated_at": now,
        "source_execution_id": record.source_execution_id,
        "source_state_name": record.source_state_name,
        "transformer": record.transformer,
        "queue": record.queue,
        "lease_owner": record.lease_owner,
        "lease_expires_at": record.lease_expires_at,
        "execution_index": record.index,
        "tags": record.tags,
    }


def link_row(record: ExecutionRecord, now: datetime) -> dict[str, Any]:
    return {
        "source_execution_id": record.source_execution_id,
        "target_execution_id": record.execution_id,
        "target_state_machine_id": record.state_machine_id,
        "source_state_name": record.source_state_name,
        "created_at": now,
    }


class CoreWrites:
    """Portable SQLAlchemy Core writes, each in one short transaction (SQLite: BEGIN IMMEDIATE)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def insert_execution(
        self,
        record: ExecutionRecord,
        now: datetime,
        *,
        latest_guard: bool = False,
        history: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Insert, with its chain link and `history` rows; with `latest_guard`, only if `record.version`
        is still the latest definition version (the caller used a cached one). False when the guard
        failed; IntegrityError on a duplicate."""
        return self.insert_with(record, now, latest_guard=latest_guard, history=history)

    def insert_with(
        self,
        record: ExecutionRecord,
        now: datetime,
        *,
        latest_guard: bool = False,
        history: list[dict[str, Any]] | None = None,
        extra: Callable[[Connection], None] | None = None,
    ) -> bool:
        """`insert_execution` through SQLAlchemy Core, with `extra` written in the same transaction."""
        with self.engine.begin() as connection:
            if latest_guard:
                latest = connection.execute(_latest_version(record.state_machine_id)).scalar()
                if latest != record.version:
                    return False
            connection.execute(insert(EXECUTIONS), execution_row(record, now))
            if record.source_execution_id is not None:
                connection.execute(insert(CHAIN_LINKS), link_row(record, now))
            if history:
                connection.execute(insert(HISTORY), history)
            if extra is not None:
                extra(connection)
        return True

    def checkpoint(
        self, execution_id: str, seen: int, values: dict[str, Any], rows: list[dict[str, Any]]
    ) -> bool:
        return self.checkpoint_with(execution_id, seen, values, rows)

    def checkpoint_with(
        self,
        execution_id: str,
        seen: int,
        values: dict[str, Any],
        rows: list[dict[str, Any]],
        extra: Callable[[Connection], None] | None = None,
    ) -> bool:
        """Through SQLAlchemy Core: the conditional update of the execution and its history rows; `extra` writes more in the
        same transaction, once the update has won."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(EXECUTIONS)
                .where(
                    EXECUTIONS.c.id == execution_id,
                    EXECUTIONS.c.history_length == seen,
                    EXECUTIONS.c.status == RUNNING,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                return False
            if rows:
                connection.execute(insert(HISTORY), rows)
            if extra is not None:
                extra(connection)
        return True


_SQLITE_HISTORY_INSERT = (
    "INSERT INTO smq_history (execution_id, sequence, state_name, state_type, status, scope, attempt, input, "
    "output, error, cause, entered_at, exited_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's DateTime uses on SQLite (UTC, no zone), so the ORM reads it back."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class SQLiteWrites(CoreWrites):
    """Pre-written SQL on the driver connection inside `BEGIN IMMEDIATE ... COMMIT`: no statement
    building and no SQLAlchemy events on the hot path (SQLite has no network to hide that cost)."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self._update_sql: dict[tuple[str, ...], str] = {}

    @contextmanager
    def _immediate(self) -> Iterator[Any]:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        finally:
            connection.close()  # back to the pool

    def insert_execution(
        self,
        record: ExecutionRecord,
        now: datetime,
        *,
        latest_guard: bool = False,
        history: list[dict[str, Any]] | None = None,
    ) -> bool:
        row = execution_row(record, now)
        try:
            with self._immediate() as cursor:
                if latest_guard:
                    cursor.execute(_SQLITE_LATEST_VERSION, (record.state_machine_id,))
                    if cursor.fetchone()[0] != record.version:
                        return False
                cursor.execute(
                    f"INSERT INTO smq_executions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    tuple(_sqlite_value(name, value) for name, value in row.items()),
                )
                if record.source_execution_id is not None:
                    link = link_row(record, now)
                    cursor.execute(
                        f"INSERT INTO smq_chain_links ({', '.join(link)}) VALUES ({', '.join('?' * len(link))})",
                        tuple(_sqlite_value(name, value) for name, value in link.items()),
                    )
                if history:
                    cursor.executemany(_SQLITE_HISTORY_INSERT, _sqlite_history_params(history))
        except sqlite3.IntegrityError as exc:
            raise IntegrityError("INSERT INTO smq_executions", None, exc) from exc
        return True

    def checkpoint(
        self, execution_id: str, seen: int, values: dict[str, Any], rows: list[dict[str, Any]]
    ) -> bool:
        columns = tuple(values)
        sql = self._update_sql.get(columns)
        if sql is None:
            assignments = ", ".join(f"{name} = ?" for name in columns)
            sql = f"UPDATE smq_executions SET {assignments} WHERE id = ? AND history_length = ? AND status = '{RUNNING}'"
            self._update_sql[columns] = sql
        params = [_sqlite_value(name, value) for name, value in values.items()]
        params.extend((execution_id, seen))
        with self._immediate() as cursor:
            cursor.execute(sql, params)
            if cursor.rowcount != 1:
                return False
            if rows:
                cursor.executemany(_SQLITE_HISTORY_INSERT, _sqlite_history_params(rows))
        return True


def _sqlite_history_params(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            row["execution_id"],
            row["sequence"],
            row["state_name"],
            row["state_type"],
            row["status"],
            row["scope"],
            row["attempt"],
            _json(row["input"]),
            _json(row["output"]),
            row["error"],
            row["cause"],
            _sqlite_time(row["entered_at"]),
            _sqlite_time(row["exited_at"]),
        )
        for row in rows
    ]


_SQLITE_LATEST_VERSION = "SELECT max(version) FROM smq_definitions WHERE state_machine_id = ?"


def _sqlite_value(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return _json(value)
    if isinstance(value, datetime):
        return _sqlite_time(value)
    return value


def _json(value: Any) -> str | None:
    return None if value is None else compact(value)


_HISTORY_COLUMNS = (
    "sequence int, state_name text, state_type text, status text, scope text, attempt int, input jsonb, "
    "output jsonb, error text, cause text, entered_at timestamptz, exited_at timestamptz"
)
_HISTORY_NAMES = "sequence, state_name, state_type, status, scope, attempt, input, output, error, cause, entered_at, exited_at"
_JSON_COLUMNS = frozenset({"cursor", "output", "input", "tags"})


class PostgresWrites(CoreWrites):
    """One round trip per write: single atomic statements in autocommit mode.

    Executed on the psycopg connection itself (checked out of the autocommit engine's pool), with
    pre-written SQL and positional parameters, server-side prepared from the first use: no statement
    compilation, result wrapping or engine events on the hot path. Driver errors are re-raised as the
    matching SQLAlchemy exceptions (IntegrityError, DataError, ...), as if the engine had run them.
    """

    def __init__(self, engine: Engine, autocommit: Engine):
        super().__init__(engine)
        import psycopg  # only once PostgreSQL is in use: SQLite-only processes never load the driver

        self._driver_error: type[Exception] = psycopg.Error
        self.autocommit = autocommit
        self._checkpoint_sql: dict[tuple[str, ...], tuple[str, str]] = {}
        self._insert_sql: dict[tuple[bool, bool, bool], str] = {}

    def _execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run one statement (a transaction of its own: autocommit) and fetch its RETURNING rows."""
        pooled = self.autocommit.raw_connection()
        try:
            connection: Any = pooled.driver_connection
            try:
                return cast(list[tuple[Any, ...]], connection.execute(sql, params, prepare=True).fetchall())
            except self._driver_error as exc:
                disconnect = self.autocommit.dialect.is_disconnect(
                    cast(Any, exc), pooled.dbapi_connection, None
                )
                if disconnect:
                    pooled.invalidate(exc)
                raise DBAPIError.instance(
                    sql, params, exc, self._driver_error, connection_invalidated=disconnect
                ) from exc
        finally:
            pooled.close()  # back to the pool; autocommit, so there is nothing to reset

    def insert_execution(
        self,
        record: ExecutionRecord,
        now: datetime,
        *,
        latest_guard: bool = False,
        history: list[dict[str, Any]] | None = None,
    ) -> bool:
        """One statement (pre-written SQL): INSERT ... SELECT with the latest-version guard in its WHERE
        clause; the chain link (when there is a source) and the history rows (when the execution begins
        with steps already run) in the same statement, as data-modifying CTEs."""
        linked = record.source_execution_id is not None
        key = (latest_guard, linked, bool(history))
        sql = self._insert_sql.get(key)
        if sql is None:
            sql = self._insert_sql[key] = _insert_execution_sql(_INSERT_COLUMNS, *key)
        params: tuple[Any, ...] = (
            record.execution_id,
            record.name,
            record.state_machine_id,
            record.version,
            record.status,
            _json(record.input),
            _json(record.output),
            record.error,
            record.cause,
            record.current_state,
            _json(record.cursor),
            record.history_length,
            record.start_time,
            record.stop_time,
            record.duration_ms,
            now,
            record.source_execution_id,
            record.source_state_name,
            record.transformer,
            record.queue,
            record.lease_owner,
            record.lease_expires_at,
            record.index,
            _json(record.tags),
        )
        if latest_guard:
            params += (record.state_machine_id, record.version)
        if linked:
            params += (record.source_execution_id, record.state_machine_id, record.source_state_name, now)
        if history:
            params += (_history_json(history),)
        return bool(self._execute(sql, params))

    def checkpoint(
        self, execution_id: str, seen: int, values: dict[str, Any], rows: list[dict[str, Any]]
    ) -> bool:
        columns = tuple(values)
        statements = self._checkpoint_sql.get(columns)
        if statements is None:
            assignments = ", ".join(
                f"{name} = CAST(%s AS jsonb)" if name in _JSON_COLUMNS else f"{name} = %s" for name in columns
            )
            update_sql = (
                f"UPDATE smq_executions SET {assignments} "
                f"WHERE id = %s AND history_length = %s AND status = '{RUNNING}' RETURNING id"
            )
            statements = self._checkpoint_sql[columns] = (
                update_sql,
                f"WITH moved AS ({update_sql}) "
                f"INSERT INTO smq_history (execution_id, {_HISTORY_NAMES}) "
                f"SELECT moved.id, {_HISTORY_NAMES} FROM moved "
                f"CROSS JOIN jsonb_to_recordset(CAST(%s AS jsonb)) AS h({_HISTORY_COLUMNS}) RETURNING 1",
            )
        params = [_json(value) if name in _JSON_COLUMNS else value for name, value in values.items()]
        params.append(execution_id)
        params.append(seen)
        if not rows:
            return bool(self._execute(statements[0], tuple(params)))
        params.append(_history_json(rows))
        return len(self._execute(statements[1], tuple(params))) == len(rows)


# The smq_executions columns a new execution is inserted with, in the order of PostgresWrites' parameters.
_INSERT_COLUMNS = [
    "id", "name", "state_machine_id", "version", "status", "input", "output", "error", "cause",
    "current_state", "cursor", "history_length", "start_time", "stop_time", "duration_ms", "updated_at",
    "source_execution_id", "source_state_name", "transformer", "queue", "lease_owner", "lease_expires_at",
    "execution_index", "tags",
]  # fmt: skip


_history_json = compact_encoder({datetime: datetime.isoformat})
"""Every history row as one JSON array; timestamps as ISO 8601 (jsonb_to_recordset casts them)."""


def _insert_execution_sql(columns: list[str], latest_guard: bool, linked: bool, with_history: bool) -> str:
    """Positional (%s) parameters: the columns in order, then the guard's (state machine id, version),
    then the link's (source execution id, state machine id, source state name, created at), then the
    history rows as one JSON array. Returns a row per row written into the last table (none: not
    created, because the guard failed)."""
    # INSERT ... SELECT gives the parameters no column context: cast each to its column's type.
    dialect = postgresql.dialect()
    values = ", ".join(
        "CAST(%s AS jsonb)"
        if name in _JSON_COLUMNS
        else f"CAST(%s AS {EXECUTIONS.c[name].type.compile(dialect=dialect)})"
        for name in columns
    )
    guard = (
        " WHERE (SELECT max(version) FROM smq_definitions WHERE state_machine_id = %s) = %s"
        if latest_guard
        else ""
    )
    insert_sql = f"INSERT INTO smq_executions ({', '.join(columns)}) SELECT {values}{guard} RETURNING id"
    if not linked and not with_history:
        return insert_sql
    link_sql = (
        "INSERT INTO smq_chain_links (source_execution_id, target_execution_id, target_state_machine_id, "
        "source_state_name, created_at) SELECT CAST(%s AS VARCHAR), created.id, "
        "CAST(%s AS VARCHAR), CAST(%s AS VARCHAR), CAST(%s AS TIMESTAMP WITH TIME ZONE) FROM created RETURNING id"
    )
    if not with_history:
        return f"WITH created AS ({insert_sql}) {link_sql}"
    history_sql = (
        f"INSERT INTO smq_history (execution_id, {_HISTORY_NAMES}) SELECT created.id, {_HISTORY_NAMES} "
        f"FROM created CROSS JOIN jsonb_to_recordset(CAST(%s AS jsonb)) AS h({_HISTORY_COLUMNS}) RETURNING 1"
    )
    linked_cte = f", linked AS ({link_sql})" if linked else ""
    return f"WITH created AS ({insert_sql}){linked_cte} {history_sql}"


def _latest_version(state_machine_id: str) -> Any:
    return select(func.max(DEFINITIONS.c.version)).where(DEFINITIONS.c.state_machine_id == state_machine_id)
