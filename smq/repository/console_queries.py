"""The console's reads that no command makes: executions per machine and status in a time window,
what is waiting (with deadlines, never a callback's token), the newest dead letters, a machine's
versions. Read-only, like `smq.repository.queries`; the console adds no SQL of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from smq.repository.models import WAITING
from smq.repository.tables import DEAD_LETTERS, DEFINITIONS, EXECUTIONS, WAITS

# What a wait row may show: its token is a capability (whoever holds it completes the task).
WAIT_COLUMNS = (
    "id",
    "kind",
    "branch",
    "correlation_key",
    "correlation_value",
    "due_at",
    "timeout_at",
    "deadline_at",
    "heartbeat_seconds",
    "queue",
    "created_at",
)


@dataclass(frozen=True)
class OpenWait:
    wait: dict[str, Any]  # WAIT_COLUMNS
    execution_id: str
    name: str
    state_machine_id: str
    current_state: str | None
    status: str


class ConsoleQueries:
    def __init__(self, engine: Engine):
        self.engine = engine

    def counts_since(self, since: datetime) -> dict[str, dict[str, int]]:
        """Executions started since `since`: state machine -> status -> count."""
        c = EXECUTIONS.c
        query = (
            select(c.state_machine_id, c.status, func.count())
            .where(c.start_time >= since)
            .group_by(c.state_machine_id, c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for machine, status, count in connection.execute(query):
                counts.setdefault(machine, {})[status] = int(count)
        return counts

    def wait_counts(self) -> dict[str, int]:
        """Open waits, and of them the durable timers (those with a due time)."""
        w = WAITS.c
        with self.engine.connect() as connection:
            row = connection.execute(
                select(func.count(), func.count(w.due_at)).select_from(WAITS).where(w.status == WAITING)
            ).one()
        return {"open_waits": int(row[0]), "timers": int(row[1])}

    def dead_letter_count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(DEAD_LETTERS)).scalar_one())

    def open_waits(
        self, *, kind: str | None = None, execution_id: str | None = None, limit: int = 200
    ) -> list[OpenWait]:
        """Open waits, the soonest deadline first (then the oldest), with their executions."""
        w, e = WAITS.c, EXECUTIONS.c
        deadline = func.coalesce(w.due_at, w.timeout_at, w.deadline_at)
        query = (
            select(
                *(w[name] for name in WAIT_COLUMNS),
                w.execution_id,
                e.name,
                e.state_machine_id,
                e.current_state,
                e.status,
            )
            .join(EXECUTIONS, e.id == w.execution_id)
            .where(w.status == WAITING)
            .order_by(deadline.is_(None), deadline, w.created_at, w.id)
            .limit(limit)
        )
        if kind is not None:
            query = query.where(w.kind == kind)
        if execution_id is not None:
            query = query.where(w.execution_id == execution_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            OpenWait(
                {name: getattr(row, name) for name in WAIT_COLUMNS},
                row.execution_id,
                row.name,
                row.state_machine_id,
                row.current_state,
                row.status,
            )
            for row in rows
        ]

    def wait_target(self, wait_id: str) -> dict[str, Any] | None:
        """An open wait by id, token included: what the console answers it with (never shown)."""
        w = WAITS.c
        with self.engine.connect() as connection:
            row = connection.execute(
                select(w.id, w.execution_id, w.kind, w.token, w.correlation_key, w.correlation_value).where(
                    w.id == wait_id, w.status == WAITING
                )
            ).first()
        return None if row is None else dict(row._mapping)

    def versions(self, state_machine_id: str) -> list[dict[str, Any]]:
        d = DEFINITIONS.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(d.version, d.created_at, d.digest)
                .where(d.state_machine_id == state_machine_id)
                .order_by(d.version.desc())
            ).all()
        return [dict(row._mapping) for row in rows]
