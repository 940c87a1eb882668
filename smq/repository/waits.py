"""Parked executions and what wakes them: messages, callback tokens and durable timers.

An execution parks (status WAITING) with one wait row. Waking it is one transaction: the wait goes
WAITING -> RESOLVED by a conditional update, which has exactly one winner when a message and a
timeout race, and the execution goes back to RUNNING with the delivery written into its cursor. The
caller then enqueues the continuation (or runs it in-process). A continuation that arrives for an
execution no longer RUNNING (stopped, already resumed) does nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, exists, insert, select, update

from smq.engine.errors import SmqError
from smq.repository.models import RUNNING, WAITING, ExecutionRow, MessageRow, WaitRow

WAITS = cast(Table, WaitRow.__table__)
MESSAGES = cast(Table, MessageRow.__table__)
EXECUTIONS = cast(Table, ExecutionRow.__table__)

RESOLVED = "RESOLVED"
CANCELLED = "CANCELLED"


class UnknownToken(SmqError, LookupError):
    """No execution ever waited on this callback token."""


class TokenNotWaiting(SmqError):
    """The token's wait was already resolved (answered, timed out, or its execution stopped)."""


def canonical(value: Any) -> str:
    """The one text of a JSON value, so that {"b":1,"a":2} and {"a":2,"b":1} correlate alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _moment(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _earliest(*moments: datetime | None) -> datetime | None:
    given = [moment for moment in moments if moment is not None]
    return min(given) if given else None


@dataclass(frozen=True)
class Woken:
    """An execution made RUNNING again; its continuation must be enqueued (or run) by the caller."""

    execution_id: str
    state_machine_id: str
    name: str
    queue: str
    resolution: str


class WaitStore:
    def __init__(self, engine: Engine, *, wake_grace_seconds: float = 300.0):
        self.engine = engine
        # A woken execution is RUNNING with no worker until its continuation starts: this lease lets
        # the recovery scanner re-enqueue it if the continuation is lost, without racing a busy queue.
        self.wake_grace = timedelta(seconds=wake_grace_seconds)
        self._lock_rows = engine.dialect.name == "postgresql"

    # ------------------------------------------------------------------ parking

    def park(
        self,
        execution_id: str,
        history_length: int,
        cursor: dict[str, Any],
        queue: str,
        *,
        deadline: float | None = None,
    ) -> bool:
        """RUNNING -> WAITING at this checkpoint, with its wait row. False if the execution moved on.

        `deadline` (the execution's TimeoutSeconds, as an epoch) bounds every timer: a parked execution
        is woken by then at the latest, and its continuation records TIMED_OUT."""
        pending = cursor.get("pending") or {}
        kind = pending.get("kind") or "timer"
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "id": f"{execution_id}:{history_length}",
            "execution_id": execution_id,
            "history_length": history_length,
            "kind": kind,
            "status": WAITING,
            "queue": queue,
            "created_at": now,
            "deadline_at": _moment(deadline),
            "resolution": None,  # parked again at the same checkpoint: an open wait, not a resolved one
            "resolved_at": None,
        }
        if kind == "message":
            row.update(
                correlation_key=str(pending["key"]),
                correlation_value=canonical(pending.get("value")),
                timeout_at=_moment(pending.get("until")),
                due_at=_earliest(_moment(pending.get("until")), _moment(deadline)),
            )
        elif kind == "callback":
            timeout_at = _moment(pending.get("until"))
            heartbeat = pending.get("heartbeat")
            heartbeat_at = now + timedelta(seconds=heartbeat) if heartbeat else None
            row.update(
                token=str(pending["token"]),
                timeout_at=timeout_at,
                heartbeat_seconds=int(heartbeat) if heartbeat else None,
                due_at=_earliest(timeout_at, heartbeat_at, _moment(deadline)),
            )
        else:
            not_before = cursor.get("not_before")
            if not_before is None:
                raise ValueError(f"execution {execution_id}: nothing to wait for in its cursor")
            row.update(
                kind="timer",
                due_at=_earliest(_moment(not_before), _moment(deadline)),
                timeout_at=_moment(not_before),
            )
        with self.engine.begin() as connection:
            parked = connection.execute(
                update(EXECUTIONS)
                .where(
                    EXECUTIONS.c.id == execution_id,
                    EXECUTIONS.c.status == RUNNING,
                    EXECUTIONS.c.history_length == history_length,
                )
                .values(status=WAITING, lease_owner=None, lease_expires_at=None, updated_at=now)
            ).rowcount
            if parked != 1:
                return False
            exists = connection.execute(select(WAITS.c.id).where(WAITS.c.id == row["id"])).first()
            if exists is None:
                connection.execute(insert(WAITS).values(**row))
            else:  # parked again at the same checkpoint (a recovered execution): wait anew
                connection.execute(update(WAITS).where(WAITS.c.id == row["id"]).values(**row))
        return True

    # ------------------------------------------------------------------ waking

    def _resolve(
        self, connection: Connection, wait: Any, resolution: str, delivery: dict[str, Any]
    ) -> Woken | None:
        """Resolve one wait and wake its execution with `delivery` written into its cursor."""
        now = datetime.now(UTC)
        won = connection.execute(
            update(WAITS)
            .where(WAITS.c.id == wait.id, WAITS.c.status == WAITING)
            .values(status=RESOLVED, resolution=resolution, resolved_at=now)
        ).rowcount
        if won != 1:
            return None  # the other side of the race got it
        parked = (
            EXECUTIONS.c.id == wait.execution_id,
            EXECUTIONS.c.status == WAITING,
            EXECUTIONS.c.history_length == wait.history_length,
        )
        found = connection.execute(
            select(EXECUTIONS.c.cursor, EXECUTIONS.c.state_machine_id, EXECUTIONS.c.name).where(*parked)
        ).first()
        if found is None:
            return None  # stopped, or resumed some other way: nothing to wake
        cursor = dict(found.cursor)
        cursor["pending"] = {**(cursor.get("pending") or {}), "delivery": delivery}
        connection.execute(update(EXECUTIONS).where(*parked).values(cursor=cursor, **self._awake(now)))
        return Woken(wait.execution_id, found.state_machine_id, found.name, wait.queue, resolution)

    def _awake(self, now: datetime) -> dict[str, Any]:
        """An execution's columns when it is woken: RUNNING, handed to the queue with no worker yet."""
        return {
            "status": RUNNING,
            "updated_at": now,
            "lease_owner": None,
            "lease_expires_at": now + self.wake_grace,
        }

    def _fire_timers(self, connection: Connection, timers: list[Any]) -> list[Woken]:
        """Resolve a batch of timers set-wise: one UPDATE of the waits and one of their executions,
        both conditional (WAITING), whatever the batch size. A timer delivers nothing, so the
        executions' cursors are not touched."""
        now = datetime.now(UTC)
        resolved = set(
            connection.execute(
                update(WAITS)
                .where(WAITS.c.id.in_([wait.id for wait in timers]), WAITS.c.status == WAITING)
                .values(status=RESOLVED, resolution="timer", resolved_at=now)
                .returning(WAITS.c.id)
            ).scalars()
        )
        won = [wait for wait in timers if wait.id in resolved]
        if not won:
            return []
        wait = WAITS.alias("wait")
        parked_at_its_wait = exists().where(
            wait.c.id.in_([item.id for item in won]),
            wait.c.execution_id == EXECUTIONS.c.id,
            wait.c.history_length == EXECUTIONS.c.history_length,
        )
        rows = connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.status == WAITING, parked_at_its_wait)
            .values(**self._awake(now))
            .returning(EXECUTIONS.c.id, EXECUTIONS.c.state_machine_id, EXECUTIONS.c.name)
        ).all()
        found = {row.id: row for row in rows}
        return [
            Woken(
                item.execution_id,
                found[item.execution_id].state_machine_id,
                found[item.execution_id].name,
                item.queue,
                "timer",
            )
            for item in won
            if item.execution_id in found  # otherwise stopped, or resumed some other way
        ]

    def _waits(
        self, connection: Connection, *conditions: Any, limit: int | None = None, order: Any = None
    ) -> list[Any]:
        query = select(WAITS).where(WAITS.c.status == WAITING, *conditions)
        if order is not None:
            query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        if self._lock_rows:
            query = query.with_for_update(skip_locked=True)
        return list(connection.execute(query))

    def send_message(self, key: str, value: Any, data: Any) -> list[Woken]:
        """Wake every execution waiting on (key, value) with `data`; the message is recorded either way."""
        text = canonical(value)
        with self.engine.begin() as connection:
            woken = [
                wake
                for wait in self._waits(
                    connection,
                    WAITS.c.kind == "message",
                    WAITS.c.correlation_key == key,
                    WAITS.c.correlation_value == text,
                )
                if (wake := self._resolve(connection, wait, "message", {"kind": "message", "data": data}))
            ]
            connection.execute(
                insert(MESSAGES).values(
                    correlation_key=key,
                    correlation_value=text,
                    data=data,
                    resumed=[w.execution_id for w in woken],
                    sent_at=datetime.now(UTC),
                )
            )
        return woken

    def complete_callback(self, token: str, delivery: dict[str, Any]) -> Woken:
        """Answer a callback token (success or failure); exactly once."""
        with self.engine.begin() as connection:
            wait = connection.execute(select(WAITS).where(WAITS.c.token == token)).first()
            if wait is None:
                raise UnknownToken(f"no execution waits on task token {token!r}")
            if wait.status != WAITING:
                raise TokenNotWaiting(
                    f"task token {token!r} is no longer waited on ({wait.resolution or wait.status})"
                )
            woken = self._resolve(connection, wait, str(delivery["kind"]), delivery)
            if woken is None:
                raise TokenNotWaiting(f"task token {token!r} is no longer waited on (resolved concurrently)")
            return woken

    def heartbeat(self, token: str) -> datetime | None:
        """Push a callback's heartbeat deadline out by HeartbeatSeconds; returns the new due time."""
        with self.engine.begin() as connection:
            wait = connection.execute(select(WAITS).where(WAITS.c.token == token)).first()
            if wait is None:
                raise UnknownToken(f"no execution waits on task token {token!r}")
            if wait.status != WAITING:
                raise TokenNotWaiting(
                    f"task token {token!r} is no longer waited on ({wait.resolution or wait.status})"
                )
            if not wait.heartbeat_seconds:
                return wait.due_at  # nothing to extend: the task has no HeartbeatSeconds
            due = datetime.now(UTC) + timedelta(seconds=wait.heartbeat_seconds)
            due = _earliest(due, wait.timeout_at, wait.deadline_at) or due
            connection.execute(
                update(WAITS).where(WAITS.c.id == wait.id, WAITS.c.status == WAITING).values(due_at=due)
            )
            return due

    def fire_due(self, *, now: datetime | None = None, limit: int = 500) -> list[Woken]:
        """Fire up to `limit` timers due by `now`, oldest first (catches up after downtime)."""
        moment = now or datetime.now(UTC)
        woken: list[Woken] = []
        with self.engine.begin() as connection:
            due = self._waits(connection, WAITS.c.due_at <= moment, limit=limit, order=WAITS.c.due_at)
            timers = [wait for wait in due if wait.kind == "timer"]
            if timers:
                woken.extend(self._fire_timers(connection, timers))
            for wait in due:
                if wait.kind == "timer":
                    continue
                if wait.kind == "callback" and (wait.timeout_at is None or wait.timeout_at > moment):
                    resolution, delivery = "heartbeat_timeout", {"kind": "heartbeat_timeout"}
                else:
                    resolution, delivery = "timeout", {"kind": "timeout"}
                wake = self._resolve(connection, wait, resolution, delivery)
                if wake is not None:
                    woken.append(wake)
        return woken

    def cancel(self, connection: Connection, execution_id: str) -> int:
        """Cancel an execution's open waits (inside the caller's transaction): a late timer or message
        finds nothing to resolve."""
        return int(
            connection.execute(
                update(WAITS)
                .where(WAITS.c.execution_id == execution_id, WAITS.c.status == WAITING)
                .values(status=CANCELLED, resolution="cancelled", resolved_at=datetime.now(UTC))
            ).rowcount
        )

    def open_waits(self, execution_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(WAITS).where(WAITS.c.execution_id == execution_id, WAITS.c.status == WAITING)
            )
            return [dict(row._mapping) for row in rows]

    def next_due(self) -> datetime | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(WAITS.c.due_at)
                .where(WAITS.c.status == WAITING, WAITS.c.due_at.is_not(None))
                .order_by(WAITS.c.due_at)
                .limit(1)
            ).scalar()
