"""What the database knows about queued work: dead letters and the enqueue ledger.

Celery on Redis keeps no dead set and does not deduplicate by task id, so smq keeps both here: the
database is the source of truth for what was given up on and for which named executions were handed to
the queue.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from smq.engine.jsontext import compact
from smq.repository.models import FAILED, RUNNING
from smq.repository.paging import Keyset
from smq.repository.tables import DEAD_LETTERS, ENQUEUED, EXECUTIONS

# Dead letters page by (failed_at, task_id): the index ix_smq_dead_letters_failed.
DEAD_LETTER_PAGES = Keyset("dead letters", (DEAD_LETTERS.c.failed_at, DEAD_LETTERS.c.task_id))

# The error of an execution whose task went to the dead letters (the dead letter's reason is its cause).
DEAD_LETTERED = "smq.DeadLettered"


def _insert(engine: Engine, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL have it)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    task_name: str
    queue: str
    reason: str
    state_machine_id: str | None
    execution_name: str | None
    payload: Any
    error: str
    traceback: str | None
    attempts: int
    first_attempt_at: datetime | None
    failed_at: datetime

    def to_dict(self, *, with_traceback: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "task_name": self.task_name,
            "queue": self.queue,
            "reason": self.reason,
            "state_machine_id": self.state_machine_id,
            "execution_name": self.execution_name,
            "payload": self.payload,
            "error": self.error,
            "attempts": self.attempts,
            "first_attempt_at": self.first_attempt_at.isoformat() if self.first_attempt_at else None,
            "failed_at": self.failed_at.isoformat(),
        }
        if with_traceback:
            data["traceback"] = self.traceback
        return data


class DeadLetters:
    """Dead letters keyed by task id: recording the same task twice (Celery can report one hard time
    limit twice) updates the one row."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(
        self,
        *,
        task_id: str,
        task_name: str,
        queue: str,
        reason: str,
        payload: Any,
        error: str,
        traceback: str | None,
        attempts: int,
        first_attempt_at: datetime | None = None,
    ) -> FailedExecution | None:
        """Write the dead letter, and fail its execution if it is RUNNING: returns that execution as it
        ended (for its end log line and metrics), else None."""
        identity = payload if isinstance(payload, dict) else {}
        values = {
            "task_id": task_id,
            "task_name": task_name,
            "queue": queue,
            "reason": reason,
            "state_machine_id": _short(identity.get("state_machine_id")),
            "execution_name": _short(identity.get("name")),
            "payload": payload,
            "error": error,
            "traceback": traceback,
            "attempts": attempts,
            "first_attempt_at": first_attempt_at,
            "failed_at": datetime.now(UTC),
        }
        statement = _insert(self.engine, DEAD_LETTERS).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["task_id"],
            set_={key: statement.excluded[key] for key in values if key != "task_id"},
        )
        with self.engine.begin() as connection:
            connection.execute(statement)
            if values["state_machine_id"] and values["execution_name"]:
                return _fail_dead_lettered(connection, values)
        return None

    def list(
        self, *, queue: str | None = None, limit: int | None = None, before: datetime | None = None
    ) -> list[DeadLetter]:
        """Oldest failure first; of one queue, and only those that failed before `before`, if given."""
        query = select(DEAD_LETTERS).order_by(DEAD_LETTERS.c.failed_at, DEAD_LETTERS.c.task_id)
        if queue is not None:
            query = query.where(DEAD_LETTERS.c.queue == queue)
        if before is not None:
            query = query.where(DEAD_LETTERS.c.failed_at < before)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [DeadLetter(**row._mapping) for row in connection.execute(query)]

    def page(
        self,
        *,
        queue: str | None = None,
        limit: int = 50,
        page_token: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[builtins.list[DeadLetter], str | None]:
        """A page of dead letters, the latest failure first unless `oldest_first`, and the next page's
        token."""
        query = select(DEAD_LETTERS)
        if queue is not None:
            query = query.where(DEAD_LETTERS.c.queue == queue)
        with self.engine.connect() as connection:
            rows, next_token = DEAD_LETTER_PAGES.page(
                connection, query, limit=limit, page_token=page_token, oldest_first=oldest_first
            )
        return [DeadLetter(**row._mapping) for row in rows], next_token

    def get(self, task_id: str) -> DeadLetter | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(DEAD_LETTERS).where(DEAD_LETTERS.c.task_id == task_id)).first()
        return None if row is None else DeadLetter(**row._mapping)

    def delete(self, task_ids: Iterable[str]) -> int:
        ids = list(task_ids)
        if not ids:
            return 0
        with self.engine.begin() as connection:
            return int(
                connection.execute(delete(DEAD_LETTERS).where(DEAD_LETTERS.c.task_id.in_(ids))).rowcount
            )

    def count_by_queue(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(DEAD_LETTERS.c.queue, func.count()).group_by(DEAD_LETTERS.c.queue)
            )
            return {queue: int(count) for queue, count in rows}


class FailedExecution(NamedTuple):
    """An execution a dead letter failed, as it ended (what an execution's end log line names)."""

    execution_id: str
    name: str
    state_machine_id: str
    current_state: str | None
    status: str
    error: str
    cause: str
    duration_ms: int


def _fail_dead_lettered(connection: Connection, values: dict[str, Any]) -> FailedExecution | None:
    """The execution of a dead-lettered task ends FAILED (error smq.DeadLettered, the reason as cause),
    where everybody sees it and nothing recovers it behind the operator's back. Its cursor stays at the
    last checkpoint: `smq dead retry` or `smq redrive` goes on from there."""
    found = connection.execute(
        select(EXECUTIONS.c.id, EXECUTIONS.c.start_time, EXECUTIONS.c.current_state).where(
            EXECUTIONS.c.state_machine_id == values["state_machine_id"],
            EXECUTIONS.c.name == values["execution_name"],
            EXECUTIONS.c.status == RUNNING,
        )
    ).first()
    if found is None:
        return None
    now = values["failed_at"]
    start = found.start_time if found.start_time.tzinfo else found.start_time.replace(tzinfo=UTC)
    ended = FailedExecution(
        execution_id=str(found.id),
        name=str(values["execution_name"]),
        state_machine_id=str(values["state_machine_id"]),
        current_state=found.current_state,
        status=FAILED,
        error=DEAD_LETTERED,
        cause=f"{values['reason']}: {values['error']}"[:4000],
        duration_ms=max(0, round((now - start).total_seconds() * 1000)),
    )
    failed = connection.execute(
        update(EXECUTIONS)
        .where(EXECUTIONS.c.id == found.id, EXECUTIONS.c.status == RUNNING)
        .values(
            status=FAILED,
            error=DEAD_LETTERED,
            cause=ended.cause,
            stop_time=now,
            duration_ms=ended.duration_ms,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
    ).rowcount
    return ended if failed else None


def _short(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


_CLAIM_SQL = """
INSERT INTO smq_enqueued (state_machine_id, name, task_id, queue, enqueued_at, payload)
SELECT %(machine)s::varchar, wanted.name, wanted.task_id, %(queue)s::varchar, %(now)s::timestamptz,
       wanted.payload::jsonb
FROM unnest(%(names)s::text[], %(task_ids)s::text[], %(payloads)s::text[]) AS wanted(name, task_id, payload)
WHERE NOT EXISTS (
    SELECT 1 FROM smq_executions AS e WHERE e.state_machine_id = %(machine)s::varchar AND e.name = wanted.name
)
ON CONFLICT (state_machine_id, name) DO NOTHING
RETURNING name
"""


@dataclass(frozen=True)
class Unstarted:
    """A claimed name with no execution yet, and the payload its message carried."""

    state_machine_id: str
    name: str
    task_id: str
    queue: str
    payload: Any


class EnqueueLedger:
    """Named executions already handed to the queue (or already run): claim before publishing, release
    what could not be published."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def claim(
        self,
        state_machine_id: str,
        tasks: dict[str, str],
        queue: str,
        payloads: dict[str, Any] | None = None,
    ) -> set[str]:
        """Claim `{name: task_id}`; returns the names claimed now. A name that already has an execution
        or an earlier claim is not claimed (it was enqueued or run before). `payloads` (by name) are
        kept until the execution starts, so a message the broker loses can be published again."""
        if not tasks:
            return set()
        payloads = payloads or {}
        now = datetime.now(UTC)
        if self.engine.dialect.name == "postgresql":
            return self._claim_postgresql(state_machine_id, tasks, queue, now, payloads)
        names = list(tasks)
        with self.engine.begin() as connection:
            existing = set(
                connection.execute(
                    select(EXECUTIONS.c.name).where(
                        EXECUTIONS.c.state_machine_id == state_machine_id, EXECUTIONS.c.name.in_(names)
                    )
                ).scalars()
            )
            fresh = [name for name in names if name not in existing]
            if not fresh:
                return set()
            statement = (
                _insert(self.engine, ENQUEUED)
                .values(
                    [
                        {
                            "state_machine_id": state_machine_id,
                            "name": name,
                            "task_id": tasks[name],
                            "queue": queue,
                            "enqueued_at": now,
                            "payload": payloads.get(name),
                        }
                        for name in fresh
                    ]
                )
                .on_conflict_do_nothing(index_elements=["state_machine_id", "name"])
                .returning(ENQUEUED.c.name)
            )
            return {row[0] for row in connection.execute(statement)}

    def _claim_postgresql(
        self,
        state_machine_id: str,
        tasks: dict[str, str],
        queue: str,
        now: datetime,
        payloads: dict[str, Any],
    ) -> set[str]:
        """The same claim as one pre-written statement over two arrays: a leader claims a whole chunk in
        one round trip, with no per-row SQL to compile (a 500-row VALUES list costs more than it sends)."""
        with self.engine.begin() as connection:
            rows = connection.exec_driver_sql(
                _CLAIM_SQL,
                {
                    "machine": state_machine_id,
                    "queue": queue,
                    "now": now,
                    "names": list(tasks),
                    "task_ids": list(tasks.values()),
                    "payloads": [
                        None if payloads.get(name) is None else compact(payloads[name]) for name in tasks
                    ],
                },
            )
            return {row[0] for row in rows}

    def release(self, state_machine_id: str, names: Iterable[str]) -> None:
        """Forget claims whose publish failed, so the next run enqueues them."""
        chosen = list(names)
        if not chosen:
            return
        with self.engine.begin() as connection:
            connection.execute(
                delete(ENQUEUED).where(
                    ENQUEUED.c.state_machine_id == state_machine_id, ENQUEUED.c.name.in_(chosen)
                )
            )

    def unstarted(self, state_machine_id: str, names: Iterable[str]) -> dict[str, str]:
        """`{name: task_id}` of the given names claimed here but with no execution yet: still queued, or
        lost by the broker before any worker created the execution."""
        chosen = list(names)
        if not chosen:
            return {}
        started = select(EXECUTIONS.c.id).where(
            EXECUTIONS.c.state_machine_id == ENQUEUED.c.state_machine_id, EXECUTIONS.c.name == ENQUEUED.c.name
        )
        query = select(ENQUEUED.c.name, ENQUEUED.c.task_id).where(
            ENQUEUED.c.state_machine_id == state_machine_id, ENQUEUED.c.name.in_(chosen), ~started.exists()
        )
        with self.engine.connect() as connection:
            return {name: task_id for name, task_id in connection.execute(query)}

    def stale_unstarted(self, older_than: datetime, limit: int = 1000) -> list[Unstarted]:
        """Claims made before `older_than` whose execution has not started and whose payload is kept:
        still queued behind a backlog, or lost by the broker (the caller asks the broker which)."""
        started = select(EXECUTIONS.c.id).where(
            EXECUTIONS.c.state_machine_id == ENQUEUED.c.state_machine_id, EXECUTIONS.c.name == ENQUEUED.c.name
        )
        query = (
            select(
                ENQUEUED.c.state_machine_id,
                ENQUEUED.c.name,
                ENQUEUED.c.task_id,
                ENQUEUED.c.queue,
                ENQUEUED.c.payload,
            )
            .where(ENQUEUED.c.payload.is_not(None), ENQUEUED.c.enqueued_at < older_than, ~started.exists())
            .order_by(ENQUEUED.c.enqueued_at)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [Unstarted(*row) for row in connection.execute(query)]

    def republished(self, item: Unstarted, task_id: str) -> None:
        """Record the new message of a claim published again (its clock starts again)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(ENQUEUED)
                .where(ENQUEUED.c.state_machine_id == item.state_machine_id, ENQUEUED.c.name == item.name)
                .values(task_id=task_id, enqueued_at=datetime.now(UTC))
            )

    def forget_started_payloads(self) -> int:
        """Clear the kept payloads of claims whose execution exists: nothing will publish them again."""
        started = select(EXECUTIONS.c.id).where(
            EXECUTIONS.c.state_machine_id == ENQUEUED.c.state_machine_id, EXECUTIONS.c.name == ENQUEUED.c.name
        )
        with self.engine.begin() as connection:
            cleared = connection.execute(
                update(ENQUEUED).where(ENQUEUED.c.payload.is_not(None), started.exists()).values(payload=None)
            ).rowcount
        return int(cleared)

    def is_claimed(self, state_machine_id: str, name: str) -> bool:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(ENQUEUED.c.task_id).where(
                    ENQUEUED.c.state_machine_id == state_machine_id, ENQUEUED.c.name == name
                )
            ).first()
        return row is not None
