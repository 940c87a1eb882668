"""Operator actions on one execution: stop it, redrive it after a failure, resume it after a pause.

Each is one conditional update, so it cannot race a worker: a worker whose execution was stopped finds
its next checkpoint refused (the execution is no longer RUNNING) and steps aside.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from smq.engine.cursor import Cursor
from smq.engine.errors import SmqError
from smq.engine.fanout import kept_for_redrive
from smq.logs import ended_fields, log_end
from smq.repository.branches import ExecutionBranches, restore_inputs
from smq.repository.models import ABORTED, FAILED, PAUSED, RUNNING, TIMED_OUT, WAITING
from smq.repository.operator_actions import OperatorAction, default_actor
from smq.repository.queue_records import DEAD_LETTERED
from smq.repository.repository import ExecutionRecord, Repository
from smq.repository.transitions import abort_execution, restart_execution

log = logging.getLogger("smq.control")

REDRIVABLE = (FAILED, TIMED_OUT, ABORTED)
STOPPABLE = (RUNNING, WAITING, PAUSED)


class NotAllowed(SmqError):
    """The execution is not in a status that allows this action; the message says which it is in."""


def _audit(record: ExecutionRecord, action: str, actor: str | None, **detail: Any) -> OperatorAction:
    """The operator action recorded with the change (`actor`: who; default the user running this)."""
    shown = {key: value for key, value in detail.items() if value is not None}
    return OperatorAction(
        record.execution_id, action, actor or default_actor(), {"from": record.status, **shown}
    )


def stop_execution(
    repository: Repository,
    reference: str,
    *,
    error: str = "States.Aborted",
    cause: str | None = None,
    actor: str | None = None,
) -> ExecutionRecord:
    """Abort a RUNNING, WAITING or PAUSED execution; its open waits are cancelled with it. The stop is
    recorded with its history (`actor`: who stopped it)."""
    record = repository.resolve_execution(reference)
    if record.status not in STOPPABLE:
        raise NotAllowed(
            f"execution {record.execution_id} is {record.status}: only {', '.join(STOPPABLE)} can be stopped"
        )
    cause = cause or "stopped by an operator"
    stopped = abort_execution(
        repository.engine,
        record.execution_id,
        from_statuses=STOPPABLE,
        error=error,
        cause=cause,
        start_time=record.start_time,
        now=datetime.now(UTC),
        audit=_audit(record, "stop", actor, error=error, cause=cause),
    )
    if not stopped:
        raise NotAllowed(f"execution {record.execution_id} finished while being stopped")
    stopped_record = repository.get_execution(record.execution_id)
    log_end(log, {**ended_fields(stopped_record), "queue": stopped_record.queue})
    return stopped_record


def _restart(
    repository: Repository,
    record: ExecutionRecord,
    from_statuses: tuple[str, ...],
    cursor: dict[str, Any],
    grace: float,
    queue: str | None,
    audit: OperatorAction,
) -> ExecutionRecord:
    moved = restart_execution(
        repository.engine,
        record.execution_id,
        from_statuses=from_statuses,
        history_length=record.history_length,
        cursor=cursor,
        now=datetime.now(UTC),
        grace=grace,
        queue=queue,
        audit=audit,
    )
    if not moved:
        raise NotAllowed(f"execution {record.execution_id} changed while being restarted; look again")
    return repository.get_execution(record.execution_id)


def reopen_dead_lettered(
    repository: Repository,
    state_machine_id: str,
    name: str,
    *,
    grace: float = 300.0,
    actor: str | None = None,
    task_id: str | None = None,
) -> ExecutionRecord | None:
    """What `smq dead retry` does before it publishes the dead letter again: the execution the dead
    letters failed (error smq.DeadLettered) becomes RUNNING from its last checkpoint, handed to the
    queue as a redrive's is. None when there is none to reopen (never started, redriven since, or not
    failed by the dead letters)."""
    record = repository.find_execution(state_machine_id, name)
    if record is None or record.status != FAILED or record.error != DEAD_LETTERED or record.cursor is None:
        return None
    audit = _audit(record, "dead_letter_retry", actor, task_id=task_id)
    return _restart(repository, record, (FAILED,), record.cursor, grace, None, audit)


def redrive_execution(
    repository: Repository,
    reference: str,
    *,
    grace: float = 300.0,
    queue: str | None = None,
    actor: str | None = None,
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
    cursor = Cursor.from_dict(restore_inputs(repository.engine, record.cursor, record.input))
    info = cursor.execution
    counted = type(info)(**{**info.to_dict(), "redrive_count": info.redrive_count + 1})
    audit = _audit(record, "redrive", actor, state=record.current_state, queue=queue)
    if record.error == DEAD_LETTERED:
        # The queue gave up on it mid-run: its cursor is its last checkpoint, nothing there failed.
        return _restart(
            repository, record, REDRIVABLE, cursor.moved(execution=counted).to_dict(), grace, queue, audit
        )
    fresh = cursor.moved(
        execution=counted,
        pending=None,
        not_before=None,
        attempt=1,
        retry_counts=(),
        entered_at=None,
        kept_results=kept_for_redrive(cursor, ExecutionBranches(repository.engine, record.execution_id)),
    )
    return _restart(repository, record, REDRIVABLE, fresh.to_dict(), grace, queue, audit)


def resume_paused(
    repository: Repository,
    reference: str,
    *,
    grace: float = 300.0,
    queue: str | None = None,
    actor: str | None = None,
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
    audit = _audit(record, "resume", actor, state=record.current_state, queue=queue)
    return _restart(repository, record, (PAUSED,), record.cursor, grace, queue, audit)
