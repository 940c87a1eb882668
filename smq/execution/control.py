"""Operator actions on one execution: stop it, redrive it after a failure, resume it after a pause.

Each is one conditional update, so it cannot race a worker: a worker whose execution was stopped finds
its next checkpoint refused (the execution is no longer RUNNING) and steps aside.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from smq.engine.cursor import Cursor
from smq.engine.errors import SmqError
from smq.engine.fanout import kept_for_redrive
from smq.repository.models import ABORTED, FAILED, PAUSED, RUNNING, TIMED_OUT, WAITING
from smq.repository.queue_records import DEAD_LETTERED
from smq.repository.repository import ExecutionRecord, Repository
from smq.repository.tables import EXECUTIONS
from smq.repository.waits import WaitStore

REDRIVABLE = (FAILED, TIMED_OUT, ABORTED)
STOPPABLE = (RUNNING, WAITING, PAUSED)


class NotAllowed(SmqError):
    """The execution is not in a status that allows this action; the message says which it is in."""


def stop_execution(
    repository: Repository, reference: str, *, error: str = "States.Aborted", cause: str | None = None
) -> ExecutionRecord:
    """Abort a RUNNING, WAITING or PAUSED execution; its open waits are cancelled with it."""
    record = repository.resolve_execution(reference)
    if record.status not in STOPPABLE:
        raise NotAllowed(
            f"execution {record.execution_id} is {record.status}: only {', '.join(STOPPABLE)} can be stopped"
        )
    now = datetime.now(UTC)
    waits = WaitStore(repository.engine)
    with repository.engine.begin() as connection:
        stopped = connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == record.execution_id, EXECUTIONS.c.status.in_(STOPPABLE))
            .values(
                status=ABORTED,
                error=error,
                cause=cause or "stopped by an operator",
                stop_time=now,
                duration_ms=max(0, round((now - record.start_time).total_seconds() * 1000)),
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        ).rowcount
        if stopped != 1:
            raise NotAllowed(f"execution {record.execution_id} finished while being stopped")
        waits.cancel(connection, record.execution_id)
    return repository.get_execution(record.execution_id)


def _restart(
    repository: Repository,
    record: ExecutionRecord,
    from_statuses: tuple[str, ...],
    cursor: dict[str, Any],
    grace: float,
    queue: str | None,
) -> ExecutionRecord:
    now = datetime.now(UTC)
    moved_to = {} if queue is None else {"queue": queue}
    with repository.engine.begin() as connection:
        moved = connection.execute(
            update(EXECUTIONS)
            .where(
                EXECUTIONS.c.id == record.execution_id,
                EXECUTIONS.c.status.in_(from_statuses),
                EXECUTIONS.c.history_length == record.history_length,
            )
            .values(
                status=RUNNING,
                cursor=cursor,
                current_state=cursor["state"],
                output=None,
                error=None,
                cause=None,
                stop_time=None,
                duration_ms=None,
                updated_at=now,
                recovery_attempts=0,
                lease_owner=None,
                # Until a worker (or this process) takes it: then the recovery scanner re-enqueues it.
                lease_expires_at=now + timedelta(seconds=grace),
                **moved_to,
            )
        ).rowcount
    if moved != 1:
        raise NotAllowed(f"execution {record.execution_id} changed while being restarted; look again")
    return repository.get_execution(record.execution_id)


def redrive_execution(
    repository: Repository, reference: str, *, grace: float = 300.0, queue: str | None = None
) -> ExecutionRecord:
    """Make a FAILED, TIMED_OUT or ABORTED execution RUNNING again from the state that failed (one
    failed by the dead letters: from its last checkpoint).

    States that succeeded stay recorded and are not run again; the failed state starts afresh (its
    retry counters reset) and `$$.Execution.RedriveCount` goes up by one. `queue`, when given, becomes
    the execution's queue. The caller runs or enqueues the continuation."""
    record = repository.resolve_execution(reference)
    if record.status not in REDRIVABLE:
        raise NotAllowed(
            f"execution {record.execution_id} is {record.status}: only {', '.join(REDRIVABLE)} executions can be redriven"
        )
    if record.cursor is None:
        raise NotAllowed(f"execution {record.execution_id} has no recorded position to redrive from")
    cursor = Cursor.from_dict(record.cursor)
    info = cursor.execution
    counted = type(info)(**{**info.to_dict(), "redrive_count": info.redrive_count + 1})
    if record.error == DEAD_LETTERED:
        # The queue gave up on it mid-run: its cursor is its last checkpoint, nothing there failed.
        return _restart(
            repository, record, REDRIVABLE, cursor.moved(execution=counted).to_dict(), grace, queue
        )
    fresh = cursor.moved(
        execution=counted,
        pending=None,
        not_before=None,
        attempt=1,
        retry_counts=(),
        entered_at=None,
        kept_results=kept_for_redrive(cursor),
    )
    return _restart(repository, record, REDRIVABLE, fresh.to_dict(), grace, queue)


def resume_paused(
    repository: Repository, reference: str, *, grace: float = 300.0, queue: str | None = None
) -> ExecutionRecord:
    """A PAUSED execution (recovery strategy "pause") goes on from its last checkpoint (on `queue`,
    when given, from now on)."""
    record = repository.resolve_execution(reference)
    if record.status != PAUSED:
        raise NotAllowed(
            f"execution {record.execution_id} is {record.status}: only PAUSED executions can be resumed"
        )
    if record.cursor is None:
        raise NotAllowed(f"execution {record.execution_id} has no checkpoint to resume from")
    return _restart(repository, record, (PAUSED,), record.cursor, grace, queue)
