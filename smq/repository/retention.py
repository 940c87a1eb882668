"""Retention: deleting executions with everything recorded about them, and state machines.

An execution's rows live in several tables: its history, its waits (timers, message and callback waits,
branch waits), a parked fan-out's iteration rows, the chain links that name it as source or target, and its name's claim in the enqueue
ledger. They go together, in batches (`batch_size` executions per transaction, 500 by default), so a
prune of millions of rows never holds a lock for long: each batch takes only the rows it deletes
(PostgreSQL skips rows another transaction is updating right now, SQLite holds its write lock for one
batch), and workers, the scheduler and the CLI go on between batches.

Each batch re-checks, under its lock, that the executions are still in a status it may delete, so an
execution redriven meanwhile is kept whole.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, select, tuple_

from smq.engine.errors import SmqError
from smq.engine.status import FINAL_STATUSES
from smq.repository.records import NotFound
from smq.repository.tables import (
    BRANCHES,
    CHAIN_LINKS,
    CHILD_LINKS,
    DEFINITIONS,
    ENQUEUED,
    EXECUTIONS,
    HISTORY,
    RECOVERY_POLICIES,
    WAITS,
)

DEFAULT_BATCH_SIZE = 500
FINAL = tuple(sorted(FINAL_STATUSES))
# Rows that belong to one execution, by the column naming it: deleted with it.
EXECUTION_ROWS = (
    (HISTORY, HISTORY.c.execution_id, "history"),
    (WAITS, WAITS.c.execution_id, "waits"),
    (BRANCHES, BRANCHES.c.execution_id, "branches"),  # a parked fan-out's per-iteration rows
)


class DefinitionInUse(SmqError):
    """A state machine whose executions are not all final cannot be deleted (without force)."""


@dataclass
class Deleted:
    """What a deletion removed, table by table."""

    executions: int = 0
    history: int = 0
    waits: int = 0
    branches: int = 0
    chain_links: int = 0
    child_links: int = 0  # nested executions' links, naming them as parent or as child
    ledger: int = 0
    batches: int = 0

    def add(self, other: Deleted) -> Deleted:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def to_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


class Retention:
    """Deletes executions in batches of `batch_size`. After each batch it pauses `pause_ratio` times as
    long as the batch took: SQLite has one write lock and no queue for it, so a batch right after
    a batch would starve every other writer (their busy handler retries every 100 ms or so); a pause as
    long as the batch lets them in. PostgreSQL locks only the deleted rows: no pause (0) by default."""

    def __init__(
        self, engine: Engine, *, batch_size: int = DEFAULT_BATCH_SIZE, pause_ratio: float | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.engine = engine
        self.batch_size = batch_size
        self.pause_ratio = (
            (1.0 if engine.dialect.name == "sqlite" else 0.0) if pause_ratio is None else pause_ratio
        )

    # ------------------------------------------------------------------ executions

    def prune(
        self,
        older_than: datetime,
        *,
        statuses: Sequence[str] = FINAL,
        state_machine_id: str | None = None,
        max_seconds: float | None = None,
    ) -> Deleted:
        """Delete the executions in `statuses` (final ones only) that stopped before `older_than`,
        oldest first, batch by batch; with `max_seconds`, stop after the batch that passes it (the
        scheduler's chore: the rest is for its next run)."""
        chosen = tuple(statuses)
        not_final = sorted(set(chosen) - FINAL_STATUSES)
        if not chosen or not_final:
            raise ValueError(f"statuses: only final ones can be pruned ({', '.join(FINAL)}), got {not_final}")
        c = EXECUTIONS.c
        total = Deleted()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        # One status at a time: each batch is then a range of the index (status, stop_time, id), oldest
        # first, without sorting what lies beyond it.
        for status in chosen:
            clauses = [c.status == status, c.stop_time < older_than]
            if state_machine_id is not None:
                clauses.append(c.state_machine_id == state_machine_id)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = self._delete_in_batches(clauses, (c.stop_time, c.id), chosen, left)
            total.add(done)
            if done.batches and deadline is not None and time.monotonic() >= deadline:
                break  # a status with nothing to delete takes no batch, and no time
        return total

    def count_prunable(
        self, older_than: datetime, *, statuses: Sequence[str] = FINAL, state_machine_id: str | None = None
    ) -> int:
        c = EXECUTIONS.c
        query = select(func.count()).where(c.status.in_(tuple(statuses)), c.stop_time < older_than)
        if state_machine_id is not None:
            query = query.where(c.state_machine_id == state_machine_id)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def delete_matching(self, clauses: list[Any], *, force: bool = False) -> Deleted:
        """Delete every execution the filter `clauses` match (`Repository.filter_clauses`): final
        ones, or all of them with `force` (a worker running one finds its next checkpoint refused)."""
        c = EXECUTIONS.c
        allowed = _allowed(force)
        return self._delete_in_batches([*clauses, c.status.in_(allowed)], (c.start_time, c.id), allowed, None)

    def delete_executions(self, execution_ids: Sequence[str], *, force: bool = False) -> Deleted:
        """Delete these executions (those in a status it may delete; see `delete_matching`)."""
        total = Deleted()
        allowed = _allowed(force)
        for start in range(0, len(execution_ids), self.batch_size):
            total.add(self._delete_batch(list(execution_ids[start : start + self.batch_size]), allowed))
        return total

    def _delete_in_batches(
        self, clauses: list[Any], keyset: tuple[Any, Any], allowed: Sequence[str], max_seconds: float | None
    ) -> Deleted:
        total = Deleted()
        started = time.monotonic()
        after: tuple[Any, Any] | None = None
        while True:
            query = select(keyset[0], keyset[1]).where(and_(*clauses))
            if after is not None:
                query = query.where(tuple_(*keyset) > tuple_(*after))
            with self.engine.connect() as connection:
                candidates = connection.execute(query.order_by(*keyset).limit(self.batch_size)).all()
            if not candidates:
                return total
            after = tuple(candidates[-1])
            began = time.monotonic()
            total.add(self._delete_batch([row[1] for row in candidates], allowed))
            if len(candidates) < self.batch_size:
                return total
            if self.pause_ratio:
                time.sleep((time.monotonic() - began) * self.pause_ratio)
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                return total

    def _delete_batch(self, execution_ids: list[str], allowed: Sequence[str]) -> Deleted:
        """One transaction: lock the executions still in `allowed` (skipping any another transaction
        holds), then delete their rows and them."""
        c = EXECUTIONS.c
        deleted = Deleted(batches=1)
        with self.engine.begin() as connection:
            locked = select(c.id, c.state_machine_id, c.name).where(
                c.id.in_(execution_ids), c.status.in_(tuple(allowed))
            )
            if connection.dialect.name == "postgresql":
                locked = locked.with_for_update(skip_locked=True)
            rows = connection.execute(locked).all()
            if not rows:
                return deleted
            ids = [row.id for row in rows]
            for table, column, label in EXECUTION_ROWS:
                setattr(deleted, label, _rowcount(connection, delete(table).where(column.in_(ids))))
            # Links naming them as source or as target: two statements, each a range of its own index
            # (one OR of both is planned as a scan of the table).
            deleted.chain_links = sum(
                _rowcount(connection, delete(CHAIN_LINKS).where(column.in_(ids)))
                for column in (CHAIN_LINKS.c.source_execution_id, CHAIN_LINKS.c.target_execution_id)
            )
            deleted.child_links = sum(
                _rowcount(connection, delete(CHILD_LINKS).where(column.in_(ids)))
                for column in (CHILD_LINKS.c.child_execution_id, CHILD_LINKS.c.parent_execution_id)
            )
            # Ledger claims by machine, then names: a range of its primary key each (a row-value IN list
            # of (machine, name) pairs is planned as one index probe per pair, 4x slower).
            by_machine: dict[str, list[str]] = {}
            for row in rows:
                by_machine.setdefault(row.state_machine_id, []).append(row.name)
            deleted.ledger = sum(
                _rowcount(
                    connection,
                    delete(ENQUEUED).where(
                        ENQUEUED.c.state_machine_id == machine, ENQUEUED.c.name.in_(names)
                    ),
                )
                for machine, names in by_machine.items()
            )
            deleted.executions = _rowcount(connection, delete(EXECUTIONS).where(c.id.in_(ids)))
        return deleted

    # ------------------------------------------------------------------ state machines

    def delete_definition(
        self, state_machine_id: str, *, force: bool = False, with_executions: bool = False
    ) -> dict[str, Any]:
        """Delete every version of a state machine and its recovery policy. Refused (DefinitionInUse)
        while any of its executions is RUNNING, WAITING or PAUSED, unless `force`. Its finished
        executions stay readable, or go too `with_executions` (in batches). Its unstarted claims in the
        enqueue ledger go with it (nothing could run them)."""
        c = EXECUTIONS.c
        with self.engine.connect() as connection:
            versions = connection.execute(
                select(func.count()).where(DEFINITIONS.c.state_machine_id == state_machine_id)
            ).scalar_one()
            active = connection.execute(
                select(func.count()).where(c.state_machine_id == state_machine_id, c.status.not_in(FINAL))
            ).scalar_one()
        if not versions:
            raise NotFound(f"no state machine {state_machine_id!r}")
        if active and not force:
            raise DefinitionInUse(
                f"state machine {state_machine_id!r} has {active} execution(s) not final (RUNNING, WAITING "
                "or PAUSED): let them end, stop them (smq executions stop), or give --force"
            )
        executions = Deleted()
        if with_executions:
            executions = self.delete_matching([c.state_machine_id == state_machine_id], force=force)
        with self.engine.begin() as connection:
            removed = _rowcount(
                connection, delete(DEFINITIONS).where(DEFINITIONS.c.state_machine_id == state_machine_id)
            )
            connection.execute(
                delete(RECOVERY_POLICIES).where(RECOVERY_POLICIES.c.state_machine_id == state_machine_id)
            )
            unstarted = _rowcount(
                connection,
                delete(ENQUEUED).where(
                    ENQUEUED.c.state_machine_id == state_machine_id, ENQUEUED.c.payload.is_not(None)
                ),
            )
        return {
            "state_machine_id": state_machine_id,
            "versions": removed,
            "not_final_executions": active,
            "unstarted_claims": unstarted,
            "executions": executions.to_dict(),
        }


def _allowed(force: bool) -> tuple[str, ...]:
    from smq.engine.status import Status

    return tuple(Status) if force else FINAL


def _rowcount(connection: Connection, statement: Any) -> int:
    return int(connection.execute(statement).rowcount or 0)
