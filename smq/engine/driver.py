"""The local driver: runs `run_state` until the execution ends, honouring pauses and deadlines.

Other drivers (persistence, Celery workers, durable timers) follow the same loop: take a cursor,
run one state, checkpoint the step, and decide how to wait for `cursor.not_before`.

`drive` returns WAITING, with the cursor to resume from, when the execution cannot go on in this
process: the cursor is parked on a message or a callback token (`Cursor.parked`: resume it with a
delivery), or `runtime.park_after` is set and the next pause (`cursor.not_before`: a Wait, a retry
back-off) ends more than `park_after` seconds from now (resume it once `not_before` has passed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smq.engine import errors
from smq.engine.cursor import Cursor, HistoryEntry, Step
from smq.engine.interpreter import run_state
from smq.engine.model import Machine
from smq.engine.runtime import ExecutionAborted, ExecutionTimedOut, Runtime
from smq.engine.status import Status
from smq.engine.sync import awaits_check

Checkpoint = Callable[[Step], None]

# Outcome statuses (smq.engine.status). RUNNING: stopped by `stop_after`; WAITING: parked (see the
# module docstring).
RUNNING, WAITING, SUCCEEDED = Status.RUNNING, Status.WAITING, Status.SUCCEEDED
FAILED, TIMED_OUT, ABORTED = Status.FAILED, Status.TIMED_OUT, Status.ABORTED


@dataclass
class Outcome:
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    cursor: Cursor | None = None  # the last cursor reached (where a stopped execution would resume)


def drive(
    machine: Machine,
    cursor: Cursor,
    runtime: Runtime,
    *,
    scope: str = "",
    on_step: Checkpoint | None = None,
    stop_after: int | None = None,
) -> Outcome:
    """Run from `cursor` to the end, to a park (WAITING) or for `stop_after` steps (RUNNING).

    Every step goes to `on_step` first, the step that parks included, so its cursor is checkpointed.
    A parked cursor is never run; the execution TimeoutSeconds and a stop still apply to it (TIMED_OUT,
    ABORTED take precedence over WAITING)."""
    history: list[HistoryEntry] = []
    steps = 0
    try:
        while True:
            polling = cursor.not_before is not None and awaits_check(cursor.pending)
            if polling and steps == 0 and cursor.not_before is not None:
                # A `.sync` job's check, resumed (its timer, or woken early because the job ended):
                # check at once.
                if runtime.deadline is not None and runtime.clock() >= runtime.deadline:
                    raise ExecutionTimedOut("the execution exceeded its TimeoutSeconds")
            elif cursor.not_before is not None and not cursor.parked:
                if runtime.park_after is not None:
                    # Park unless the pause (or the execution deadline, if sooner) is due shortly; a
                    # `.sync` job's next check always parks, holding nothing until then.
                    wake = cursor.not_before
                    if runtime.deadline is not None:
                        wake = min(wake, runtime.deadline)
                    if wake - runtime.clock() > (0.0 if polling else runtime.park_after):
                        return Outcome(WAITING, history=history, cursor=cursor)
                runtime.wait_until(cursor.not_before)
            elif runtime.deadline is not None and runtime.clock() >= runtime.deadline:
                raise ExecutionTimedOut("the execution exceeded its TimeoutSeconds")
            if runtime.cancelled():
                raise ExecutionAborted("the execution was stopped")
            if cursor.parked:
                return Outcome(WAITING, history=history, cursor=cursor)
            if cursor.transitions >= runtime.max_transitions:
                return Outcome(
                    FAILED,
                    error=errors.RUNTIME,
                    cause=f"the execution exceeded {runtime.max_transitions} state transitions",
                    history=history,
                    cursor=cursor,
                )
            step = run_state(machine, cursor, runtime)
            if scope:
                for entry in step.entries:
                    entry.scope = f"{scope}/{entry.scope}" if entry.scope else scope
            if on_step is not None:
                on_step(step)
            history.extend(step.entries)
            if step.cursor is None:
                assert step.status is not None
                # A fan-out that failed for good ends where a redrive keeps its succeeded branches.
                final = step.failed_at or cursor
                return Outcome(step.status, step.output, step.error, step.cause, history, final)
            cursor = step.cursor
            steps += 1
            if stop_after is not None and steps >= stop_after:
                return Outcome(WAITING if cursor.parked else RUNNING, history=history, cursor=cursor)
    except ExecutionTimedOut as exc:
        return Outcome(TIMED_OUT, error=errors.TIMEOUT, cause=str(exc), history=history, cursor=cursor)
    except ExecutionAborted as exc:
        return Outcome(ABORTED, error="States.Aborted", cause=str(exc), history=history, cursor=cursor)
