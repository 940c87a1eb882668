"""The two hot writes (create an execution, checkpoint a step), tuned per backend.

On PostgreSQL each is ONE statement in autocommit mode: a checkpoint is an UPDATE ... RETURNING in a
CTE feeding an INSERT of every history row from a single JSON parameter, so a state transition costs
one network round trip and stays atomic. SQLite has no DML in CTEs; there the same work is one short
BEGIN IMMEDIATE transaction, which costs no network at all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, Table, func, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from smq.repository.models import RUNNING, ChainLinkRow, DefinitionRow, ExecutionRow, HistoryRow

if TYPE_CHECKING:
    from smq.repository.repository import ExecutionRecord

executions = cast(Table, ExecutionRow.__table__)
history = cast(Table, HistoryRow.__table__)
chain_links = cast(Table, ChainLinkRow.__table__)
definitions = cast(Table, DefinitionRow.__table__)


def execution_row(record: ExecutionRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": record.execution_id,
        "name": record.name,
        "state_machine_id": record.state_machine_id,
        "version": record.version,
        "status": record.status,
        "input": record.input,
        "current_state": record.current_state,
        "cursor": record.cursor,
        "history_length": 0,
        "start_time": record.start_time,
        "updated_at": now,
        "source_execution_id": record.source_execution_id,
        "source_state_name": record.source_state_name,
        "transformer": record.transformer,
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

    def insert_execution(self, record: ExecutionRecord, now: datetime, *, latest_guard: bool = False) -> bool:
        """Insert; with `latest_guard`, only if `record.version` is still the latest definition version
        (the caller used a cached one). False when the guard failed; IntegrityError on a duplicate."""
        with self.engine.begin() as connection:
            if latest_guard:
                latest = connection.execute(_latest_version(record.state_machine_id)).scalar()
                if latest != record.version:
                    return False
            connection.execute(insert(executions), execution_row(record, now))
            if record.source_execution_id is not None:
                connection.execute(insert(chain_links), link_row(record, now))
        return True

    def checkpoint(
        self, execution_id: str, seen: int, values: dict[str, Any], rows: list[dict[str, Any]]
    ) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                update(executions)
                .where(
                    executions.c.id == execution_id,
                    executions.c.history_length == seen,
                    executions.c.status == RUNNING,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                return False
            if rows:
                connection.execute(insert(history), rows)
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

    def insert_execution(self, record: ExecutionRecord, now: datetime, *, latest_guard: bool = False) -> bool:
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
                cursor.executemany(
                    _SQLITE_HISTORY_INSERT,
                    [
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
                    ],
                )
        return True


_SQLITE_LATEST_VERSION = "SELECT max(version) FROM smq_definitions WHERE state_machine_id = ?"


def _sqlite_value(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return _json(value)
    if isinstance(value, datetime):
        return _sqlite_time(value)
    return value


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_HISTORY_COLUMNS = (
    "sequence int, state_name text, state_type text, status text, scope text, attempt int, input jsonb, "
    "output jsonb, error text, cause text, entered_at timestamptz, exited_at timestamptz"
)
_HISTORY_NAMES = "sequence, state_name, state_type, status, scope, attempt, input, output, error, cause, entered_at, exited_at"
_JSON_COLUMNS = frozenset({"cursor", "output", "input"})


class PostgresWrites(CoreWrites):
    """One round trip per write: single atomic statements in autocommit mode."""

    def __init__(self, engine: Engine, autocommit: Engine):
        super().__init__(engine)
        self.autocommit = autocommit
        self._checkpoint_sql: dict[tuple[str, ...], Any] = {}
        self._insert_sql: dict[tuple[bool, bool], Any] = {}

    def insert_execution(self, record: ExecutionRecord, now: datetime, *, latest_guard: bool = False) -> bool:
        """One statement (pre-written SQL): INSERT ... SELECT with the latest-version guard in its WHERE
        clause, and the chain link in the same statement (a data-modifying CTE) when there is a source."""
        row = execution_row(record, now)
        params = {name: _json(value) if name in _JSON_COLUMNS else value for name, value in row.items()}
        key = (latest_guard, record.source_execution_id is not None)
        statement = self._insert_sql.get(key)
        if statement is None:
            statement = self._insert_sql[key] = text(_insert_execution_sql(list(row), *key))
        if record.source_execution_id is not None:
            params["link_created_at"] = now
        with self.autocommit.connect() as connection:
            return connection.execute(statement, params).first() is not None

    def checkpoint(
        self, execution_id: str, seen: int, values: dict[str, Any], rows: list[dict[str, Any]]
    ) -> bool:
        columns = tuple(sorted(values))
        statement = self._checkpoint_sql.get(columns)
        if statement is None:
            assignments = ", ".join(
                f"{name} = CAST(:{name} AS jsonb)" if name in _JSON_COLUMNS else f"{name} = :{name}"
                for name in columns
            )
            update_sql = (
                f"UPDATE smq_executions SET {assignments} "
                f"WHERE id = :execution_id AND history_length = :seen AND status = '{RUNNING}' RETURNING id"
            )
            statement = (
                text(update_sql),
                text(
                    f"WITH moved AS ({update_sql}) "
                    f"INSERT INTO smq_history (execution_id, {_HISTORY_NAMES}) "
                    f"SELECT moved.id, {_HISTORY_NAMES} FROM moved "
                    f"CROSS JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) AS h({_HISTORY_COLUMNS}) RETURNING 1"
                ),
            )
            self._checkpoint_sql[columns] = statement
        params = {name: _json(value) if name in _JSON_COLUMNS else value for name, value in values.items()}
        params["execution_id"] = execution_id
        params["seen"] = seen
        with self.autocommit.connect() as connection:
            if not rows:
                return connection.execute(statement[0], params).first() is not None
            params["rows"] = json.dumps(
                [
                    {
                        **row,
                        "entered_at": row["entered_at"].isoformat(),
                        "exited_at": row["exited_at"].isoformat(),
                    }
                    for row in rows
                ],
                separators=(",", ":"),
                ensure_ascii=False,
            )
            return len(connection.execute(statement[1], params).all()) == len(rows)


def _insert_execution_sql(columns: list[str], latest_guard: bool, linked: bool) -> str:
    # INSERT ... SELECT gives the parameters no column context: cast each to its column's type.
    dialect = postgresql.dialect()
    values = ", ".join(
        f"CAST(:{name} AS jsonb)"
        if name in _JSON_COLUMNS
        else f"CAST(:{name} AS {executions.c[name].type.compile(dialect=dialect)})"
        for name in columns
    )
    guard = (
        " WHERE (SELECT max(version) FROM smq_definitions WHERE state_machine_id = :state_machine_id) = :version"
        if latest_guard
        else ""
    )
    insert_sql = f"INSERT INTO smq_executions ({', '.join(columns)}) SELECT {values}{guard} RETURNING id"
    if not linked:
        return insert_sql
    return (
        f"WITH created AS ({insert_sql}) "
        "INSERT INTO smq_chain_links (source_execution_id, target_execution_id, target_state_machine_id, "
        "source_state_name, created_at) SELECT CAST(:source_execution_id AS VARCHAR), created.id, "
        "CAST(:state_machine_id AS VARCHAR), CAST(:source_state_name AS VARCHAR), "
        "CAST(:link_created_at AS TIMESTAMP WITH TIME ZONE) FROM created RETURNING id"
    )


def _latest_version(state_machine_id: str) -> Any:
    return select(func.max(definitions.c.version)).where(definitions.c.state_machine_id == state_machine_id)
