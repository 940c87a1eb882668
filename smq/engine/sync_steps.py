"""The steps of `.sync` Tasks and nested executions (see `smq.engine.sync` and `smq.engine.nested`).

The interpreter calls these from a Task's body: `start_job` starts the job and parks the cursor on
its first check, `check_job` checks it and either gives the Task's result, raises its error (for
Retry and Catch), or parks on the next check. `start_child` serves the nested forms that do not poll
(startExecution alone, and `.waitForTaskToken`, which then waits for its token as any callback Task).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from smq.engine import errors
from smq.engine.cursor import Cursor, Step
from smq.engine.errors import StatesError
from smq.engine.handlers import TaskContext
from smq.engine.invoke import error_of
from smq.engine.jsontext import compact
from smq.engine.model import TaskState
from smq.engine.nested import NestedHost, NestedSync, child_request, started
from smq.engine.runtime import Runtime
from smq.engine.sync import POLL, Failed, Running, Succeeded, SyncHandler, intervals, next_check

log = logging.getLogger("smq.engine")


def task_context(state: TaskState, cursor: Cursor, token: str | None = None) -> TaskContext:
    return TaskContext(
        execution_id=cursor.execution.id,
        execution_name=cursor.execution.name,
        state_name=state.name,
        attempt=cursor.attempt,
        deadline=None,
        task_token=token,
        execution_arn=cursor.execution.execution_arn,
        state_machine_arn=cursor.execution.state_machine_arn,
    )


def _host(state: TaskState, runtime: Runtime) -> NestedHost:
    if runtime.host is None:
        raise StatesError(
            errors.TASK_FAILED,
            f"state '{state.name}' starts a nested execution ({state.resource}), which needs smq's "
            "repository: run it with `smq run`/`smq start` or smq.execution.runner.start_execution",
        )
    host: NestedHost = runtime.host
    return host


def sync_handler(state: TaskState, runtime: Runtime) -> SyncHandler:
    """What starts and checks this `.sync` Task's job: smq's own for startExecution, else the handler
    registered for the resource, which must have `start` and `check` (a `smq.SyncJob`)."""
    if state.nested is not None:
        return NestedSync(_host(state, runtime), state.nested)
    try:
        resolved = runtime.handlers.resolve(state.resource)
    except Exception as exc:
        raise StatesError(
            errors.RUNTIME, f"An error occurred while executing the state '{state.name}'. {exc}"
        ) from None
    handler = resolved.entry.fn
    if not isinstance(handler, SyncHandler):
        raise StatesError(
            errors.RUNTIME,
            f"An error occurred while executing the state '{state.name}'. The handler for "
            f"'{state.resource}' ({resolved.name}) is not a .sync job: register a smq.SyncJob (start and "
            "check) for a resource ending in .sync",
        )
    return handler


def _json(state: TaskState, value: Any, what: str) -> Any:
    try:
        return json.loads(compact(value))
    except (TypeError, ValueError) as exc:
        raise StatesError(
            errors.TASK_FAILED, f"the {what} of '{state.resource}' in state '{state.name}' is not JSON: {exc}"
        ) from None


def start_job(
    state: TaskState,
    cursor: Cursor,
    payload: Any,
    runtime: Runtime,
    timeout: float | None,
    heartbeat: float | None,
    attempt_start: float,
    entered_at: float,
) -> Step:
    """Start the job, then park on its first check (no history entry yet: the Task has not ended)."""
    handler = sync_handler(state, runtime)
    ctx = task_context(state, cursor)
    try:
        job = handler.start(json.loads(compact(payload)), ctx)
    except Exception as exc:
        raise error_of(exc, runtime.pass_through) from exc
    first, largest = intervals(handler)
    now = runtime.clock()
    pending = {
        "kind": POLL,
        "job": _json(state, job, "job reference its start returned"),
        "interval": first,
        "max_interval": largest,
        "until": None if timeout is None else attempt_start + timeout,
        "heartbeat": heartbeat,
        "beat_at": now,
        "started_at": attempt_start,
    }
    return Step(
        [], cursor=cursor.moved(pending=pending, not_before=next_check(pending, now), entered_at=entered_at)
    )


def check_job(
    state: TaskState, cursor: Cursor, poll: dict[str, Any], runtime: Runtime, entered_at: float
) -> Any:
    """The job's result once it has succeeded; its error once it has failed, timed out or stopped
    beating; else a Step parked on the next check."""
    handler = sync_handler(state, runtime)
    ctx = task_context(state, cursor)
    job = poll.get("job")
    try:
        status = handler.check(job, ctx)
    except Exception as exc:
        raise error_of(exc, runtime.pass_through) from exc
    if isinstance(status, Succeeded):
        return _json(state, status.output, "result its check returned")
    if isinstance(status, Failed):
        raise StatesError(status.error, status.cause)
    if not isinstance(status, Running):
        raise StatesError(
            errors.RUNTIME,
            f"An error occurred while executing the state '{state.name}'. The check of '{state.resource}' "
            f"returned {status!r}: expected Running(), Succeeded(output) or Failed(error, cause)",
        )
    now = runtime.clock()
    beat_at = now if status.progress else float(poll.get("beat_at") or now)
    until, heartbeat = poll.get("until"), poll.get("heartbeat")
    if until is not None and now >= until:
        _give_up(handler, job, ctx)
        raise StatesError(
            errors.TIMEOUT, f"Task '{state.name}' timed out: its .sync job did not end within TimeoutSeconds"
        )
    if heartbeat and now - beat_at >= heartbeat:
        _give_up(handler, job, ctx)
        raise StatesError(
            errors.HEARTBEAT_TIMEOUT,
            f"Task '{state.name}' saw no progress of its .sync job within {heartbeat} seconds",
        )
    interval = float(poll.get("interval") or 0.0)
    grown = min(interval * 2 if interval > 0 else 1.0, float(poll.get("max_interval") or 30.0))
    pending = {**poll, "beat_at": beat_at, "interval": grown}
    return Step(
        [], cursor=cursor.moved(pending=pending, not_before=next_check(pending, now), entered_at=entered_at)
    )


def _give_up(handler: SyncHandler, job: Any, ctx: TaskContext) -> None:
    """Tell the job it is abandoned (best effort: its failure does not change the Task's error)."""
    cancel = getattr(handler, "cancel", None)
    if cancel is None:
        return
    try:
        cancel(job, ctx)
    except Exception:  # the Task's own error wins; the failure is logged
        log.warning("could not cancel the .sync job of %s", ctx.state_name, exc_info=True)


def start_child(state: TaskState, cursor: Cursor, payload: Any, runtime: Runtime, token: str | None) -> Any:
    """startExecution (its result: ExecutionArn, StartDate) or its `.waitForTaskToken` form (the
    child's input carries the token; the Task then waits for it like any callback Task)."""
    host = _host(state, runtime)
    request = child_request(json.loads(compact(payload)), host.arns)
    child = host.start_child(request, task_context(state, cursor, token), state.nested or "async")
    return started(child)
