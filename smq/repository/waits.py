"""Parked executions and what wakes them: messages, callback tokens and durable timers.

An execution parks (status WAITING) with one wait row, or, parked in a Parallel/Map, with one row per
branch waiting for a delivery (the `branch` column) and one timer for the earliest paused branch.
Branch rows live from one park to the next while their branch still waits (a token stays answerable
while the execution runs its other branches); a delivery to a branch of a running execution is held
on its row and applied when the execution parks again. Waking it is one transaction: the wait goes
WAITING -> RESOLVED by a conditional update, which has exactly one winner when a message and a
timeout race, and the execution goes back to RUNNING with the delivery written into its cursor. The
caller then enqueues the continuation (or runs it in-process). A continuation that arrives for an
execution no longer RUNNING (stopped, already resumed) does nothing.

A fan-out parked in rows mode (smq.engine.branch_rows) keeps its branches' progress in smq_branches:
an answer then goes to its branch's row (READY) instead of the cursor, and parking again moves only
the wait rows of the branches that run changed, so an answer costs the same however many branches
wait. An answer that reaches no waiting branch (held for a branch that has ended since, or for one
whose row waits for something else) is never dropped: its wait becomes UNDELIVERED with the answer
on it, `undelivered` lists them (`smq executions show`), and the caller is told (Woken.undelivered).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, insert, select, update

from smq.engine import branch_rows
from smq.engine.cursor import branch_waits, check_delivery, deliver_at
from smq.engine.errors import SmqError
from smq.repository import branches as branch_store
from smq.repository.models import RUNNING, WAITING
from smq.repository.tables import EXECUTIONS, MESSAGES, WAITS

RESOLVED = "RESOLVED"
CANCELLED = "CANCELLED"
# A branch's wait resolved while its execution was running (woken by another branch, or not parked
# yet): the delivery is held on the row and applied when the execution next parks.
HELD = "HELD"
# An answer that reached no wait: its branch no longer waited for it when it could be applied (its
# Parallel or Map ended, or went on without it). Kept on the row with the answer, shown by
# `smq executions show`; never dropped silently.
UNDELIVERED = branch_store.UNDELIVERED

_NOT_IN_ROWS = object()  # `_resolve_in_rows`: the branch keeps its progress in the cursor

# What `WaitStore.park` did.
PARKED = "parked"
MOVED_ON = "moved_on"  # the execution was no longer at that checkpoint: nothing parked
DELIVERED = "delivered"  # deliveries held for its branches were applied: RUNNING, go on now


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
    # The answer went to a branch of an execution that is running: held for it, nothing to continue.
    held: bool = False
    # When the wait was due, for one the dispatcher resolved because it was (a timer, a timeout).
    due_at: datetime | None = None
    # The answer reached its execution but no branch waits for it any more: recorded UNDELIVERED.
    undelivered: bool = False
    wait_id: str | None = None  # the wait the answer resolved


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
        had_branches: bool = False,
    ) -> str:
        """RUNNING -> WAITING at this checkpoint, with its wait rows: PARKED. MOVED_ON if the execution
        moved on. DELIVERED when deliveries held for its branches fit what they wait for: they are
        written into its cursor instead, it stays RUNNING (and leased), and the caller goes on.

        `deadline` (the execution's TimeoutSeconds, as an epoch) bounds every timer: a parked execution
        is woken by then at the latest, and its continuation records TIMED_OUT. `had_branches`: the run
        resumed from a park with branches, whose rows must be moved or cancelled even if none waits
        now (without either, parking costs no query about branches)."""
        pending = cursor.get("pending") or {}
        if branch_rows.just_parked(pending):
            return self._park_rows(execution_id, history_length, pending, queue, deadline)
        kind = pending.get("kind") or "timer"
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        branches = branch_waits(pending)
        if kind in ("message", "callback"):
            rows.append(self._wait_row(execution_id, history_length, queue, now, deadline, pending))
        elif cursor.get("not_before") is not None:
            not_before = cursor["not_before"]
            rows.append(
                {
                    **self._row_base(execution_id, history_length, queue, now, deadline),
                    "kind": "timer",
                    "due_at": _earliest(_moment(not_before), _moment(deadline)),
                    "timeout_at": _moment(not_before),
                }
            )
        elif not branches:
            raise ValueError(f"execution {execution_id}: nothing to wait for in its cursor")
        with self.engine.begin() as connection:
            at_checkpoint = (
                EXECUTIONS.c.id == execution_id,
                EXECUTIONS.c.status == RUNNING,
                EXECUTIONS.c.history_length == history_length,
            )
            # Locks in one order everywhere, wait rows then the execution: a branch's delivery racing
            # this park is either held (and seen below) or resolves the row once it has moved here.
            track_branches = bool(branches) or had_branches
            if track_branches:
                self._lock_waits(connection, execution_id)
                if self._lock_execution(connection, *at_checkpoint) is None:
                    return MOVED_ON
                if branches and (delivered := self._apply_held(connection, execution_id, cursor)) is not None:
                    connection.execute(
                        update(EXECUTIONS).where(*at_checkpoint).values(cursor=delivered, updated_at=now)
                    )
                    return DELIVERED
                if not branches:  # its Parallel or Map has ended: what was held for it reaches nothing
                    self._undeliver_held(connection, execution_id)
            if not _parked(connection, at_checkpoint, now):
                return MOVED_ON
            for row in rows:
                exists_ = connection.execute(select(WAITS.c.id).where(WAITS.c.id == row["id"])).first()
                if exists_ is None:
                    connection.execute(insert(WAITS).values(**row))
                else:  # parked again at the same checkpoint (a recovered execution): wait anew
                    connection.execute(update(WAITS).where(WAITS.c.id == row["id"]).values(**row))
            if track_branches:
                self._keep_branch_waits(
                    connection, execution_id, history_length, queue, now, deadline, branches
                )
        return PARKED

    def _park_rows(
        self,
        execution_id: str,
        history_length: int,
        pending: dict[str, Any],
        queue: str,
        deadline: float | None,
    ) -> str:
        """`park` in rows mode (smq.engine.branch_rows): only the branches this run changed get wait
        rows; the others keep theirs. Answers held while it ran go to their rows (READY): then it stays
        RUNNING and goes on (DELIVERED); one whose branch no longer waits is recorded UNDELIVERED."""
        now = datetime.now(UTC)
        changes: dict[str, dict[str, Any]] = pending.get(branch_rows.CHANGES) or {}
        fresh = bool(pending.get(branch_rows.FRESH))
        waiting = [
            (path, job["cursor"]["pending"])
            for path, job in changes.items()
            if job.get("status") == WAITING and branch_rows.waits_directly(job.get("cursor"))
        ]
        with self.engine.begin() as connection:
            at_checkpoint = (
                EXECUTIONS.c.id == execution_id,
                EXECUTIONS.c.status == RUNNING,
                EXECUTIONS.c.history_length == history_length,
            )
            if fresh:
                self._lock_waits(connection, execution_id)  # as `park` does: wait rows, then the execution
            if self._lock_execution(connection, *at_checkpoint) is None:
                return MOVED_ON
            delivered = self._held_to_rows(connection, execution_id)
            if delivered or branch_store.ready_exists(connection, execution_id):
                return DELIVERED
            if not _parked(connection, at_checkpoint, now):
                return MOVED_ON
            self._keep_branch_waits(
                connection,
                execution_id,
                history_length,
                queue,
                now,
                deadline,
                waiting,
                only=None if fresh else list(changes),
            )
        return PARKED

    def _held_to_rows(self, connection: Connection, execution_id: str) -> bool:
        """Answers held while the execution ran, moved to their branch rows (READY); True if any was.
        One whose branch no longer waits for it is recorded UNDELIVERED."""
        held = connection.execute(
            select(WAITS).where(WAITS.c.execution_id == execution_id, WAITS.c.status == HELD)
        ).all()
        delivered = False
        now = datetime.now(UTC)
        for wait in held:
            row = branch_store.branch_row(connection, execution_id, wait.branch)
            if row is not None and self._row_waits_for(row, wait):
                branch_store.mark_ready(connection, execution_id, row.idx, wait.id, wait.delivery or {})
                connection.execute(
                    update(WAITS).where(WAITS.c.id == wait.id).values(status=RESOLVED, resolved_at=now)
                )
                delivered = True
            else:
                self._set_aside(connection, wait, "branch no longer waiting")
        return delivered

    @staticmethod
    def _row_waits_for(row: Any, wait: Any) -> bool:
        """Does the branch row still wait for what `wait` is (the same token, or message key/value)?"""
        if row.status != branch_store.WAITING:
            return False
        pending = (row.cursor or {}).get("pending")
        if not isinstance(pending, dict) or "delivery" in pending or pending.get("kind") != wait.kind:
            return False
        if wait.kind == "callback":
            return str(pending.get("token")) == wait.token
        return (str(pending.get("key")), canonical(pending.get("value"))) == (
            wait.correlation_key,
            wait.correlation_value,
        )

    def _row_base(
        self, execution_id: str, history_length: int, queue: str, now: datetime, deadline: float | None
    ) -> dict[str, Any]:
        return {
            "id": f"{execution_id}:{history_length}",
            "execution_id": execution_id,
            "history_length": history_length,
            "status": WAITING,
            "queue": queue,
            "created_at": now,
            "deadline_at": _moment(deadline),
            "resolution": None,  # parked again at the same checkpoint: an open wait, not a resolved one
            "resolved_at": None,
        }

    def _wait_row(
        self,
        execution_id: str,
        history_length: int,
        queue: str,
        now: datetime,
        deadline: float | None,
        pending: dict[str, Any],
        branch: str | None = None,
    ) -> dict[str, Any]:
        """The row of a message or callback wait (the execution's own, or a branch's)."""
        row = self._row_base(execution_id, history_length, queue, now, deadline)
        row["kind"] = pending["kind"]
        if branch is not None:
            # Unique whatever happened before at this checkpoint (a row lives on across parks).
            row.update(id=f"{execution_id}:{history_length}:{uuid.uuid4().hex[:12]}", branch=branch)
        if pending["kind"] == "message":
            row.update(
                correlation_key=str(pending["key"]),
                correlation_value=canonical(pending.get("value")),
                timeout_at=_moment(pending.get("until")),
                due_at=_earliest(_moment(pending.get("until")), _moment(deadline)),
            )
        else:
            timeout_at = _moment(pending.get("until"))
            heartbeat = pending.get("heartbeat")
            heartbeat_at = now + timedelta(seconds=heartbeat) if heartbeat else None
            row.update(
                token=str(pending["token"]),
                timeout_at=timeout_at,
                heartbeat_seconds=int(heartbeat) if heartbeat else None,
                due_at=_earliest(timeout_at, heartbeat_at, _moment(deadline)),
            )
        return row

    def _lock_waits(self, connection: Connection, execution_id: str) -> None:
        """Lock the execution's open and held waits until the transaction ends (PostgreSQL)."""
        if self._lock_rows:
            connection.execute(
                select(WAITS.c.id)
                .where(WAITS.c.execution_id == execution_id, WAITS.c.status.in_((WAITING, HELD)))
                .with_for_update()
            ).all()

    def _lock_execution(self, connection: Connection, *conditions: Any) -> Any:
        """The execution row matching `conditions`, locked until the transaction ends (None: none)."""
        query = select(EXECUTIONS.c.id).where(*conditions)
        if self._lock_rows:
            query = query.with_for_update()
        return connection.execute(query).first()

    def _undeliver_held(self, connection: Connection, execution_id: str) -> int:
        """The execution's held answers, recorded UNDELIVERED: the branches they were for have ended."""
        held = connection.execute(
            select(WAITS.c.id, WAITS.c.delivery).where(
                WAITS.c.execution_id == execution_id, WAITS.c.status == HELD
            )
        ).all()
        for wait in held:
            self._set_aside(connection, wait, "branch ended")
        return len(held)

    @staticmethod
    def _set_aside(connection: Connection, wait: Any, reason: str) -> None:
        """A held delivery that reaches no branch: an answer is recorded UNDELIVERED; a timeout, which
        is no one's answer, is cancelled."""
        if (wait.delivery or {}).get("kind") in branch_store.TIMEOUTS:
            connection.execute(
                update(WAITS)
                .where(WAITS.c.id == wait.id)
                .values(status=CANCELLED, resolution=reason, resolved_at=datetime.now(UTC))
            )
        else:
            branch_store.mark_undelivered(connection, [wait.id], reason, None)

    def _apply_held(self, connection: Connection, execution_id: str, cursor: dict[str, Any]) -> Any:
        """Deliveries held for this execution's branches, written into `cursor` (None if none fits: a
        held delivery whose branch no longer waits for it is recorded UNDELIVERED)."""
        held = connection.execute(
            select(WAITS).where(WAITS.c.execution_id == execution_id, WAITS.c.status == HELD)
        ).all()
        if not held:
            return None
        now = datetime.now(UTC)
        delivered: dict[str, Any] | None = None
        for wait in held:
            target = deliver_at(delivered or cursor, wait.branch or "", wait.delivery or {})
            if target is None:  # its branch no longer waits for it: kept, shown, never dropped
                self._set_aside(connection, wait, "branch no longer waiting")
                continue
            delivered = target
            connection.execute(
                update(WAITS).where(WAITS.c.id == wait.id).values(status=RESOLVED, resolved_at=now)
            )
        return delivered

    def _keep_branch_waits(
        self,
        connection: Connection,
        execution_id: str,
        history_length: int,
        queue: str,
        now: datetime,
        deadline: float | None,
        waiting: list[tuple[str, dict[str, Any]]],
        only: list[str] | None = None,
    ) -> None:
        """One open row per branch waiting for a delivery: a row that still fits its branch moves to
        this checkpoint (a token stays the same row), any other open branch row is cancelled. `only`:
        the branches to consider (rows mode: those this run changed), the others' rows are left as
        they are."""
        wanted = {
            path: self._wait_row(execution_id, history_length, queue, now, deadline, pending, branch=path)
            for path, pending in waiting
        }
        which = WAITS.c.branch.is_not(None) if only is None else WAITS.c.branch.in_(only)
        open_rows: Sequence[Any] = []
        if only is None or only:
            open_rows = connection.execute(
                select(
                    WAITS.c.id, WAITS.c.branch, WAITS.c.kind, WAITS.c.token, WAITS.c.correlation_key,
                    WAITS.c.correlation_value,
                ).where(WAITS.c.execution_id == execution_id, WAITS.c.status == WAITING, which)
            ).all()  # fmt: skip
        kept: list[str] = []
        superseded: list[str] = []
        for existing in open_rows:
            row = wanted.get(existing.branch)
            same = row is not None and (
                row["kind"],
                row.get("token"),
                row.get("correlation_key"),
                row.get("correlation_value"),
            ) == (existing.kind, existing.token, existing.correlation_key, existing.correlation_value)
            if same:
                kept.append(existing.id)
                del wanted[existing.branch]
            else:
                superseded.append(existing.id)
        # Set-wise: a Map of a thousand waiting iterations moves its rows in one statement per park.
        if kept:
            connection.execute(
                update(WAITS).where(WAITS.c.id.in_(kept)).values(history_length=history_length)
            )
        if superseded:
            connection.execute(
                update(WAITS)
                .where(WAITS.c.id.in_(superseded))
                .values(status=CANCELLED, resolution="superseded", resolved_at=now)
            )
        if wanted:
            columns = {key for row in wanted.values() for key in row}  # message and callback rows differ
            connection.execute(
                insert(WAITS), [{key: row.get(key) for key in columns} for row in wanted.values()]
            )
        if only is not None:
            return  # rows mode, parked again: it had no timer (and scanning every branch's wait would
            # cost as much as the branches that wait)
        # The timer of an earlier park (the earliest paused branch then) is superseded by this one's.
        connection.execute(
            update(WAITS)
            .where(
                WAITS.c.execution_id == execution_id,
                WAITS.c.status == WAITING,
                WAITS.c.branch.is_(None),
                WAITS.c.history_length < history_length,
            )
            .values(status=CANCELLED, resolution="superseded", resolved_at=now)
        )

    # ------------------------------------------------------------------ waking

    def _resolve(
        self, connection: Connection, wait: Any, resolution: str, delivery: dict[str, Any]
    ) -> Woken | None:
        """Resolve one wait and wake its execution with `delivery` written into its cursor (into the
        waiting branch's, for a branch wait). A branch's delivery that finds its execution running is
        held on the row until the execution parks again."""
        now = datetime.now(UTC)
        won = connection.execute(
            update(WAITS)
            .where(WAITS.c.id == wait.id, WAITS.c.status == WAITING)
            .values(status=RESOLVED, resolution=resolution, resolved_at=now)
            .returning(WAITS.c.history_length)
        ).first()
        if won is None:
            return None  # the other side of the race got it
        if wait.branch is not None:
            in_rows = self._resolve_in_rows(connection, wait, resolution, delivery, now)
            if in_rows is not _NOT_IN_ROWS:
                return in_rows  # type: ignore[return-value]
        parked = (
            EXECUTIONS.c.id == wait.execution_id,
            EXECUTIONS.c.status == WAITING,
            EXECUTIONS.c.history_length == won.history_length,
        )
        query = select(EXECUTIONS.c.cursor, EXECUTIONS.c.state_machine_id, EXECUTIONS.c.name).where(*parked)
        if self._lock_rows:
            # Two answers for two branches of one execution: the second waits for the first to wake
            # it, then finds it running and holds its delivery (instead of writing a stale cursor).
            query = query.with_for_update()
        found = connection.execute(query).first()
        branch = wait.branch
        if found is None:
            if branch is not None:
                return self._hold(connection, wait, resolution, delivery)
            return None  # stopped, or resumed some other way: nothing to wake
        cursor = deliver_at(dict(found.cursor), branch or "", delivery)
        if cursor is None:
            return None  # the branch no longer waits for this (cannot happen while parked here)
        woke = connection.execute(
            update(EXECUTIONS).where(*parked).values(cursor=cursor, **self._awake(now))
        ).rowcount
        if woke != 1:  # cannot happen with the row locked above; never lose a delivery if it does
            raise RuntimeError(f"execution {wait.execution_id} changed while its wait {wait.id} was resolved")
        return Woken(wait.execution_id, found.state_machine_id, found.name, wait.queue, resolution)

    def _resolve_in_rows(
        self, connection: Connection, wait: Any, resolution: str, delivery: dict[str, Any], now: datetime
    ) -> Woken | None | object:
        """`_resolve` for a branch of a fan-out parked in rows mode (smq.engine.branch_rows): the answer
        goes to the branch's row (READY), not into the execution's cursor, and wakes the execution; it
        costs the same however many branches wait. `_NOT_IN_ROWS` when the branch has no row."""
        query = select(EXECUTIONS.c.status, EXECUTIONS.c.state_machine_id, EXECUTIONS.c.name).where(
            EXECUTIONS.c.id == wait.execution_id
        )
        if self._lock_rows:
            query = query.with_for_update()  # answers to one execution, one at a time (as below)
        execution = connection.execute(query).first()
        row = branch_store.branch_row(connection, wait.execution_id, wait.branch)
        if row is None:
            return _NOT_IN_ROWS
        if execution is None:
            return None
        if execution.status == RUNNING:
            return self._hold(connection, wait, resolution, delivery)  # moved to its row at the park
        if execution.status != WAITING:
            return None  # stopped or ended: its waits were cancelled
        found = (wait.execution_id, execution.state_machine_id, execution.name, wait.queue, resolution)
        if not self._row_waits_for(row, wait):
            branch_store.mark_undelivered(connection, [wait.id], "branch no longer waiting", delivery)
            return Woken(*found, undelivered=True, wait_id=wait.id)
        check_delivery(wait.kind, delivery)
        branch_store.mark_ready(connection, wait.execution_id, row.idx, wait.id, delivery)
        connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == wait.execution_id, EXECUTIONS.c.status == WAITING)
            .values(**self._awake(now))
        )
        return Woken(*found, wait_id=wait.id)

    def _hold(
        self, connection: Connection, wait: Any, resolution: str, delivery: dict[str, Any]
    ) -> Woken | None:
        """Keep a branch's delivery for when its running execution parks (None if it is not running:
        stopped or finished, nothing will take it)."""
        running = connection.execute(
            select(EXECUTIONS.c.state_machine_id, EXECUTIONS.c.name).where(
                EXECUTIONS.c.id == wait.execution_id, EXECUTIONS.c.status == RUNNING
            )
        ).first()
        if running is None:
            return None
        connection.execute(update(WAITS).where(WAITS.c.id == wait.id).values(status=HELD, delivery=delivery))
        return Woken(
            wait.execution_id,
            running.state_machine_id,
            running.name,
            wait.queue,
            resolution,
            held=True,
            wait_id=wait.id,
        )

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
                due_at=item.due_at,
            )
            for item in won
            if item.execution_id in found  # otherwise stopped, or resumed some other way
        ]

    def _waits(
        self,
        connection: Connection,
        *conditions: Any,
        limit: int | None = None,
        order: Any = None,
        skip_locked: bool = True,
    ) -> list[Any]:
        """Open waits, locked (PostgreSQL). `skip_locked` (timers: the next poll gets them) leaves out
        rows another transaction holds; without it (messages) each is waited for, then re-checked."""
        query = select(WAITS).where(WAITS.c.status == WAITING, *conditions)
        if order is not None:
            query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        if self._lock_rows:
            query = query.with_for_update(skip_locked=skip_locked)
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
                    order=WAITS.c.id,
                    skip_locked=False,  # a row a park holds right now must still get this message
                )
                if (wake := self._resolve(connection, wait, "message", {"kind": "message", "data": data}))
            ]
            connection.execute(
                insert(MESSAGES).values(
                    correlation_key=key,
                    correlation_value=text,
                    data=data,
                    resumed=list(dict.fromkeys(w.execution_id for w in woken)),
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
                    woken.append(replace(wake, due_at=wait.due_at))
        return woken

    def fire_timers_of(self, execution_id: str, history_length: int) -> list[Woken]:
        """Fire now, due or not, the open timer of this execution parked at `history_length` (a nested
        child it checks on has ended: smq.execution.children); nothing if it parked elsewhere since."""
        with self.engine.begin() as connection:
            timers = self._waits(
                connection,
                WAITS.c.execution_id == execution_id,
                WAITS.c.history_length == history_length,
                WAITS.c.kind == "timer",
            )
            return self._fire_timers(connection, timers) if timers else []

    def cancel(self, connection: Connection, execution_id: str) -> int:
        """Cancel an execution's open waits (inside the caller's transaction): a late timer or message
        finds nothing to resolve."""
        return int(
            connection.execute(
                update(WAITS)
                .where(WAITS.c.execution_id == execution_id, WAITS.c.status.in_((WAITING, HELD)))
                .values(status=CANCELLED, resolution="cancelled", resolved_at=datetime.now(UTC))
            ).rowcount
        )

    def cancel_branch_waits(self, execution_id: str, applied: Collection[int] = ()) -> int:
        """Cancel the open and held waits of an execution's branches once it has ended (its Parallel
        or Map failed, or was caught, while other branches still waited): a late answer finds nothing."""
        with self.engine.begin() as connection:
            self._undeliver_held(connection, execution_id)  # accepted, never applied: kept and shown
            branch_store.drop(connection, execution_id, applied)
            return int(
                connection.execute(
                    update(WAITS)
                    .where(
                        WAITS.c.execution_id == execution_id,
                        WAITS.c.status == WAITING,
                        WAITS.c.branch.is_not(None),
                    )
                    .values(status=CANCELLED, resolution="branch ended", resolved_at=datetime.now(UTC))
                ).rowcount
            )

    def end_branch_rows(self, execution_id: str, applied: Collection[int] = ()) -> None:
        """The execution's fan-out has left rows mode (ended, or went on with its progress in the
        cursor): drop its branch rows, recording answers READY in them and not `applied` by the run
        (branch indices) UNDELIVERED."""
        with self.engine.begin() as connection:
            branch_store.drop(connection, execution_id, applied)

    def undelivered(self, execution_id: str) -> list[dict[str, Any]]:
        """Answers that reached the execution but no waiting branch (UNDELIVERED waits), JSON-ready:
        what they answered (token or message key/value), the branch, why, when, and the answer."""
        shown = (
            "kind",
            "branch",
            "correlation_key",
            "correlation_value",
            "token",
            "resolution",
            "resolved_at",
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(WAITS)
                .where(WAITS.c.execution_id == execution_id, WAITS.c.status == UNDELIVERED)
                .order_by(WAITS.c.resolved_at)
            )
            return [{**_json_ready(row._mapping, shown), "answer": row.delivery} for row in rows]

    def wait_status(self, wait_id: str) -> str | None:
        """A wait's status now (UNDELIVERED: its held answer reached no branch); None if unknown."""
        with self.engine.connect() as connection:
            return connection.execute(select(WAITS.c.status).where(WAITS.c.id == wait_id)).scalar()

    def waiting_for(self, execution_id: str) -> list[dict[str, Any]]:
        """What a parked execution waits for, as an operator (or Flower) needs it: the kind, the
        correlation key and value or the token, the due time or timeout, the branch; JSON-ready."""
        shown = (
            "kind",
            "branch",
            "correlation_key",
            "correlation_value",
            "token",
            "due_at",
            "timeout_at",
            "queue",
        )
        return [_json_ready(wait, shown) for wait in self.open_waits(execution_id)]

    def open_waits(self, execution_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(WAITS).where(WAITS.c.execution_id == execution_id, WAITS.c.status == WAITING)
            )
            return [dict(row._mapping) for row in rows]

    def summary(self, now: datetime) -> dict[str, tuple[int, int, datetime | None]]:
        """Per kind of open wait (timer, message, callback): how many are open, how many of them are
        due by `now` and not fired yet, and the earliest due time among those. Two indexed counts."""
        open_waits = WAITS.c.status == WAITING
        with self.engine.connect() as connection:
            counts: dict[str, int] = dict(
                connection.execute(  # type: ignore[arg-type]
                    select(WAITS.c.kind, func.count()).where(open_waits).group_by(WAITS.c.kind)
                ).all()
            )
            due = {
                row.kind: (int(row.n), row.oldest)
                for row in connection.execute(
                    select(WAITS.c.kind, func.count().label("n"), func.min(WAITS.c.due_at).label("oldest"))
                    .where(open_waits, WAITS.c.due_at <= now)
                    .group_by(WAITS.c.kind)
                )
            }
        return {kind: (int(count), *due.get(kind, (0, None))) for kind, count in counts.items()}

    def next_due(self) -> datetime | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(WAITS.c.due_at)
                .where(WAITS.c.status == WAITING, WAITS.c.due_at.is_not(None))
                .order_by(WAITS.c.due_at)
                .limit(1)
            ).scalar()


def _parked(connection: Connection, at_checkpoint: tuple[Any, ...], now: datetime) -> bool:
    """Mark the execution WAITING, its lease let go, if it is still at the checkpoint that parks it."""
    parked = connection.execute(
        update(EXECUTIONS)
        .where(*at_checkpoint)
        .values(status=WAITING, lease_owner=None, lease_expires_at=None, updated_at=now)
    ).rowcount
    return bool(parked == 1)


def _json_ready(wait: Mapping[Any, Any], shown: Collection[str]) -> dict[str, Any]:
    """The `shown` columns of a wait that are set, times as ISO-8601 text."""
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in wait.items()
        if key in shown and value is not None
    }
