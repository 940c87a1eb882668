"""`.sync` Tasks: start a job, then check on it until it ends, holding nothing in between.

A handler registered for a resource ending in `.sync` (`glue:startJobRun.sync`, or the whole
`arn:aws:states:::glue:startJobRun.sync`) is a `SyncJob`: `start(input, ctx)` starts the job and
returns a reference to it (any JSON value), `check(job, ctx)` says how it stands: `Running()`,
`Succeeded(output)` or `Failed(error, cause)`. The Task runs in steps, like a callback Task:

    start    -> pending {"kind": "poll", "job": REF, "interval": S, "until": EPOCH | None,
                         "heartbeat": SECONDS | None, "beat_at": EPOCH, "started_at": EPOCH}
                with `not_before` the next check
    check    -> Running: the same pending, `not_before` moved on (at most `max_interval` apart)
                Succeeded: the Task's result, through ResultSelector/ResultPath as usual
                Failed: its error, through Retry and Catch

Between checks the execution waits on a durable timer (on workers a poll always parks, whatever
SMQ_PARK_AFTER says, so no worker slot is held); a resumed poll checks at once. TimeoutSeconds ends it
with States.Timeout, HeartbeatSeconds with States.HeartbeatTimeout unless a check reports progress
(`Running(progress=True)`) within that many seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from smq.engine.handlers import TaskContext

POLL = "poll"  # `pending` kind of a `.sync` Task between two checks


@dataclass(frozen=True)
class Running:
    """The job has not ended. `progress`: it moved since the last check (counts as a heartbeat)."""

    progress: bool = False


@dataclass(frozen=True)
class Succeeded:
    output: Any = None


@dataclass(frozen=True)
class Failed:
    error: str = "States.TaskFailed"
    cause: str | None = None


JobStatus = Running | Succeeded | Failed


@runtime_checkable
class SyncHandler(Protocol):
    """What smq needs of a `.sync` handler (a `SyncJob`, or any object with these methods)."""

    def start(self, payload: Any, ctx: TaskContext) -> Any: ...

    def check(self, job: Any, ctx: TaskContext) -> JobStatus: ...


@dataclass(frozen=True)
class SyncJob:
    """A `.sync` handler from two functions. `interval`: seconds before the first check, doubled after
    each check that finds the job running, up to `max_interval`. `cancel(job, ctx)`, if given, is
    called (best effort) when the Task gives up on the job (TimeoutSeconds, HeartbeatSeconds)."""

    start_fn: Callable[[Any, TaskContext], Any]
    check_fn: Callable[[Any, TaskContext], JobStatus]
    interval: float = 1.0
    max_interval: float = 30.0
    cancel_fn: Callable[[Any, TaskContext], None] | None = None

    def start(self, payload: Any, ctx: TaskContext) -> Any:
        return self.start_fn(payload, ctx)

    def check(self, job: Any, ctx: TaskContext) -> JobStatus:
        return self.check_fn(job, ctx)

    def cancel(self, job: Any, ctx: TaskContext) -> None:
        if self.cancel_fn is not None:
            self.cancel_fn(job, ctx)


def is_sync_resource(resource: str) -> bool:
    """`...startJobRun.sync`, `...startExecution.sync:2`: a Task that waits for the job it starts."""
    tail = resource.rsplit(".", 1)[-1] if "." in resource else ""
    return tail == "sync" or (tail.startswith("sync:") and tail[5:].isdigit())


def poll_pending(pending: Any) -> dict[str, Any] | None:
    """`pending` when it is a `.sync` Task between two checks, else None."""
    return pending if isinstance(pending, dict) and pending.get("kind") == POLL else None


def awaits_check(pending: Any) -> bool:
    """A `.sync` job between two checks, here or in a paused branch of a Parallel/Map (nested ones
    included): resumed, it checks at once; between checks it always parks (smq.engine.driver)."""
    if poll_pending(pending) is not None:
        return True
    if not isinstance(pending, dict) or pending.get("kind") != "fanout":
        return False
    jobs = pending.get("jobs")
    return isinstance(jobs, dict) and any(
        isinstance(job, dict)
        and job.get("status") == "WAITING"
        and awaits_check((job.get("cursor") or {}).get("pending"))
        for job in jobs.values()
    )


def intervals(handler: Any) -> tuple[float, float]:
    """(first interval, largest interval) of a `.sync` handler; 1 and 30 seconds by default."""
    first = getattr(handler, "interval", None)
    first = 1.0 if first is None else float(first)
    largest = float(getattr(handler, "max_interval", None) or 30.0)
    return max(first, 0.0), max(largest, first)


def next_check(pending: dict[str, Any], now: float) -> float:
    """When to check next: `interval` from now, never past the timeout or the heartbeat deadline."""
    moment = now + float(pending.get("interval") or 0.0)
    until = pending.get("until")
    if until is not None:
        moment = min(moment, until)
    heartbeat = pending.get("heartbeat")
    if heartbeat:
        moment = min(moment, float(pending.get("beat_at") or now) + heartbeat)
    return moment
