"""Operator transitions of one execution: stop it, or make it RUNNING again (redrive, resume after a
pause). Each is one conditional update, so it cannot race a worker: a worker whose execution was
stopped finds its next checkpoint refused (the execution is no longer RUNNING) and steps aside.

Which statuses allow which action, and the cursor a restart goes on from, are decided in
`smq.execution.control`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update

from smq.repository.models import ABORTED, RUNNING
from smq.repository.operator_actions import OperatorAction, insert_action
from smq.repository.tables import EXECUTIONS
from smq.repository.waits import WaitStore

__all__ = ["abort_execution", "restart_execution"]


def abort_execution(
    engine: Engine,
    execution_id: str,
    *,
    from_statuses: Iterable[str],
    error: str,
    cause: str,
    start_time: datetime,
    now: datetime,
    audit: OperatorAction | None = None,
) -> bool:
    """End the execution ABORTED, if it is in one of `from_statuses`, and cancel its open waits in the
    same transaction (with `audit`, the operator's action too); whether it was."""
    c = EXECUTIONS.c
    with engine.begin() as connection:
        stopped = connection.execute(
            update(EXECUTIONS)
            .where(c.id == execution_id, c.status.in_(tuple(from_statuses)))
            .values(
                status=ABORTED,
                error=error,
                cause=cause,
                stop_time=now,
                duration_ms=max(0, round((now - start_time).total_seconds() * 1000)),
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        ).rowcount
        if stopped != 1:
            return False
        WaitStore(engine).cancel(connection, execution_id)
        if audit is not None:
            insert_action(connection, audit)
    return True


def restart_execution(
    engine: Engine,
    execution_id: str,
    *,
    from_statuses: Iterable[str],
    history_length: int,
    cursor: dict[str, Any],
    now: datetime,
    grace: float,
    queue: str | None,
    audit: OperatorAction | None = None,
) -> bool:
    """Make the execution RUNNING again from `cursor` (no output, error or stop time; recovery attempts
    counted from zero), if it is still in one of `from_statuses` at `history_length`; whether it was.
    It is handed to the queue: no process holds it, and the recovery scanner re-enqueues it when no
    worker has taken it within `grace` seconds. `queue`, when given, becomes its queue. `audit`, the
    operator's action, is recorded in the same transaction."""
    c = EXECUTIONS.c
    moved_to = {} if queue is None else {"queue": queue}
    with engine.begin() as connection:
        moved = connection.execute(
            update(EXECUTIONS)
            .where(
                c.id == execution_id,
                c.status.in_(tuple(from_statuses)),
                c.history_length == history_length,
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
        if moved == 1 and audit is not None:
            insert_action(connection, audit)
    return bool(moved == 1)
