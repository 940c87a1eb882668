"""The local driver: runs `run_state` until the execution ends, honouring pauses and deadlines.

Other drivers (persistence, Celery workers, durable timers) follow the same loop: take a cursor,
run one state, checkpoint the step, and decide how to wait for `cursor.not_before`.
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

Checkpoint = Callable[[Step], None]

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
ABORTED = "ABORTED"


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
    """Run from `cursor` to the end (or for `stop_after` steps). Every step goes to `on_step` first."""
    history: list[HistoryEntry] = []
    steps = 0
    try:
        while True:
            if cursor.not_before is not None:
                runtime.wait_until(cursor.not_before)
            elif runtime.deadline is not None and runtime.clock() >= runtime.deadline:
                raise ExecutionTimedOut("the execution exceeded its TimeoutSeconds")
            if runtime.cancelled():
                raise ExecutionAborted("the execution was stopped")
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
                return Outcome(step.status, step.output, step.error, step.cause, history, cursor)
            cursor = step.cursor
            steps += 1
            if stop_after is not None and steps >= stop_after:
                return Outcome("RUNNING", history=history, cursor=cursor)
    except ExecutionTimedOut as exc:
        return Outcome(TIMED_OUT, error=errors.TIMEOUT, cause=str(exc), history=history, cursor=cursor)
    except ExecutionAborted as exc:
        return Outcome(ABORTED, error="States.Aborted", cause=str(exc), history=history, cursor=cursor)
