"""`execute_state_machine`: the one Celery task. It runs one named execution to its end on a worker.

At-least-once delivery yields exactly one execution per name: the task creates the execution, or finds
it (redelivery, retry, duplicate enqueue) and resumes it from its last checkpoint; a finished one is
returned as it is. Outcomes:

- the workflow SUCCEEDED: the task's result; it parks (a Wait, a message, a task token): a result
  that says what it waits for and until when;
- the workflow ends FAILED, TIMED_OUT or ABORTED: Celery's FAILURE state with `<Error>: <Cause>` and
  the state (WorkflowFailed), so Flower counts it; never retried (`smq redrive` is its remedy);
- a malformed payload, an unknown state machine, a bad chain source: rejected at once into the dead
  letters with the reason (FAILURE, DeadLettered), never retried (retrying cannot fix them);
- the execution is being run right now by another live process (a duplicate message, a recovery
  re-publish): not run twice at once; the task publishes itself again for when that process's lease
  would expire, and then finds the execution finished, or takes it over if that process died;
- anything else (database or Redis down, a handler's InfrastructureError, the soft time limit):
  retried with exponential backoff and jitter from the last checkpoint; when retries run out, or the
  hard time limit kills the process, the task lands in the dead letters.
"""

from __future__ import annotations

import json
import logging
import random
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from celery import Task, signals
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request

from smq.distributed.app import app
from smq.distributed.payload import (
    ExecutionPayload,
    InvalidTaskPayload,
    parse_payload,
    payload_max_retries,
)
from smq.distributed.resources import (
    worker_dead_letters,
    worker_metrics,
    worker_observer,
    worker_repository,
    worker_settings,
)
from smq.distributed.task_names import LEGACY_TASK_NAMES, TASK_NAME, TASK_NAMES
from smq.engine.errors import PASS_THROUGH, InfrastructureError, SmqError
from smq.engine.handlers import default_registry
from smq.engine.status import Status
from smq.execution.leases import ExecutionHeld
from smq.execution.runner import start_execution
from smq.logs import execution_context
from smq.repository.waits import WaitStore

log = logging.getLogger("smq.tasks")

# A soft time limit interrupts whatever runs: it must reach the task, not become an ASL error.
WORKER_PASS_THROUGH = (*PASS_THROUGH, SoftTimeLimitExceeded)


def retry_countdown(retries: int, delays: Sequence[float], rng: random.Random | None = None) -> float:
    """The wait before retry `retries + 1`: its delay from the curve (the last one repeats), +-20%
    jitter so tasks that failed together do not all come back in the same instant."""
    if not delays:
        return 0.0
    delay = delays[min(retries, len(delays) - 1)]
    return delay * (0.8 + (rng or random).uniform(0, 0.4))


def _queue_of(task: Task, payload: Any = None) -> str:
    """The queue the task came from; where Celery gives no request (a hard time limit is reported in the
    worker's main process), the queue the client recorded in the payload's options."""
    info = task.request.delivery_info or {}
    queue = info.get("routing_key") or info.get("exchange")
    if not queue and isinstance(payload, dict) and isinstance(payload.get("options"), dict):
        queue = payload["options"].get("queue")
    return str(queue or "default")


class WorkflowFailed(Exception):  # noqa: N818 - an outcome, named as Flower shows it
    """The execution ended FAILED, TIMED_OUT or ABORTED. The task ends in Celery's FAILURE state with
    `<Error>: <Cause>` and the state, so Flower counts what failed; never retried, never dead-lettered
    (the workflow's failure is a result: `smq redrive` is its remedy)."""

    def __init__(self, status: str, error: str | None, cause: str | None, state: str | None, execution: str):
        self.status, self.error, self.cause = status, error, cause
        self.state, self.execution = state, execution
        super().__init__(f"{error}: {cause} (state {state!r}, {status}, execution {execution})")

    def __reduce__(self) -> Any:  # Celery hands a task's exception from pool child to parent pickled
        return type(self), (self.status, self.error, self.cause, self.state, self.execution)


class DeadLettered(Exception):  # noqa: N818 - an outcome, named as Flower shows it
    """The task went to the dead letters: FAILURE in Flower, with the dead letter's reason. `recorded`:
    the dead letter is written already (a rejected payload); otherwise `task_failure` writes it."""

    def __init__(self, reason: str, error: str, recorded: bool):
        self.reason, self.error, self.recorded = reason, error, recorded
        super().__init__(f"{reason}: {error}")

    def __reduce__(self) -> Any:  # as WorkflowFailed's
        return type(self), (self.reason, self.error, self.recorded)


def _reject(task: Task, payload: Any, reason: str, error: str, first_attempt_at: str | None) -> DeadLettered:
    worker_dead_letters().record(
        task_id=str(task.request.id),
        task_name=task.name,
        queue=_queue_of(task, payload),
        reason=reason,
        payload=payload,
        error=error,
        traceback=None,
        attempts=task.request.retries + 1,
        first_attempt_at=_parse_time(first_attempt_at),
    )
    log.warning("task %s rejected into the dead letters: %s", task.request.id, error)
    return DeadLettered(reason, error, True)


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class ExecutionRequest(Request):  # type: ignore[misc]
    """A pool process that dies mid-task (an OOM kill, a segfault) is one failed attempt, retried by
    Celery (task_retry_on_worker_lost) from the worker's main process. Celery would wait the task's
    flat `default_retry_delay` and count against the task's `max_retries`; for that one decision the
    task is given smq's policy instead: the payload's max_retries, exponential backoff with jitter."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # billiard wraps it in ExceptionWithTraceback
        if not isinstance(exc, WorkerLostError):
            return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        task, conf = self.task, self.task.app.conf
        args = self.args or ()
        limit = payload_max_retries(args[0] if args else None)
        retries = int(self.request_dict.get("retries") or 0)
        saved = task.max_retries, task.default_retry_delay
        task.max_retries = conf.smq_max_retries if limit is None else limit
        task.default_retry_delay = retry_countdown(retries, conf.smq_retry_delays)
        try:  # the main process runs one callback at a time: nobody else sees the task meanwhile
            return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        finally:
            task.max_retries, task.default_retry_delay = saved

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """A hard time limit is reported (task_failure included) from the worker's main process, where
        the task's request is empty: without its own context pushed, the dead letter would record the
        wrong attempt number (always 1) and no delivery info. Celery pushes it for on_failure already."""
        if soft:
            return super().on_timeout(soft, timeout)  # type: ignore[no-any-return]
        self.task.request_stack.push(self._context)
        try:
            return super().on_timeout(soft, timeout)  # type: ignore[no-any-return]
        finally:
            self.task.request_stack.pop()


# How the task is registered, under the design's name and (for messages queued before, or published by
# older clients) under its old names: the same function, the same behaviour.
TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    # Celery's own retry of a task whose pool process died (task_retry_on_worker_lost) follows smq's
    # policy: see ExecutionRequest. These are its defaults, not Celery's 3 retries after 180 s.
    "max_retries": app.conf.smq_max_retries,
    "default_retry_delay": app.conf.smq_retry_delays[0] if app.conf.smq_retry_delays else 0,
    "Request": ExecutionRequest,
    # Outcomes, not crashes: Celery marks them FAILURE and logs one line, without a traceback.
    "throws": (WorkflowFailed, DeadLettered),
    # Arguments that do not fit, a content type but JSON: dead-lettered before the task is run.
    "Strategy": "smq.distributed.intake:checked_strategy",
}


def run_state_machine_task(self: Task, payload: Any, first_attempt_at: str | None = None) -> dict[str, Any]:
    """Create or resume the execution described by `payload` and run it to its end."""
    first_attempt_at = first_attempt_at or datetime.now(UTC).isoformat()
    try:
        parsed = parse_payload(payload)
    except InvalidTaskPayload as exc:
        raise _reject(self, payload, "invalid_payload", str(exc), first_attempt_at) from None
    # Every line logged while this delivery runs names the execution, its attempt and queue; the runner
    # adds the id and the state, and logs the line of its end.
    queue = _queue_of(self, payload)
    with execution_context(
        state_machine_id=parsed.state_machine_id,
        execution_name=parsed.name,
        attempt=self.request.retries + 1,
        queue=queue,
        task_id=self.request.id,
    ):
        return _run_delivery(self, payload, parsed, queue, first_attempt_at)


execute_state_machine = app.task(name=TASK_NAME, **TASK_OPTIONS)(run_state_machine_task)
legacy_tasks = [app.task(name=name, **TASK_OPTIONS)(run_state_machine_task) for name in LEGACY_TASK_NAMES]


def _run_delivery(
    task: Task, payload: Any, parsed: ExecutionPayload, queue: str, first_attempt_at: str
) -> dict[str, Any]:
    settings = worker_settings()
    try:
        record = start_execution(
            worker_repository(),
            parsed.start_request(),
            handlers=default_registry,
            payload_limit=settings.payload_limit,
            identity=settings.aws_identity,
            max_transitions=settings.max_transitions,
            # Waits longer than this park on a durable timer instead of holding the worker slot.
            park_after=settings.park_after,
            # Recorded with a new execution: its continuations (park, crash, redrive) come back here.
            queue=queue,
            lease_seconds=settings.lease_seconds,
            checkpoints=settings.checkpoints,
            defer_held=True,
            # A checkpoint the database cannot take is retried, results kept, instead of rerunning a Task.
            outage_budget=settings.outage_budget,
            # Metrics and traces of the run, as SMQ_METRICS and SMQ_TRACING say.
            observer=worker_observer(),
            pass_through=WORKER_PASS_THROUGH,
            # Nested executions (states:startExecution) are enqueued for the workers too.
            child_launch="queue",
            state_machine_arns=settings.state_machine_arns,
            wake_grace=settings.wake_grace,
        )
    except ExecutionHeld as held:
        return _check_again_later(
            task, payload, held, settings.lease_seconds, parsed.max_retries, first_attempt_at
        )
    except InfrastructureError as exc:
        raise _retry_or_die(task, exc, parsed.max_retries, payload, first_attempt_at) from exc
    except SmqError as exc:
        raise _reject(task, payload, "rejected", f"{type(exc).__name__}: {exc}", first_attempt_at) from exc
    except Exception as exc:
        raise _retry_or_die(task, exc, parsed.max_retries, payload, first_attempt_at) from exc
    execution = f"{record.state_machine_id}/{record.name}"
    if record.status in (Status.FAILED, Status.TIMED_OUT, Status.ABORTED):
        raise WorkflowFailed(record.status, record.error, record.cause, record.current_state, execution)
    result: dict[str, Any] = {
        "execution": execution,
        "execution_id": record.execution_id,
        "status": record.status,
        "state": record.current_state,
    }
    if record.status == Status.WAITING:
        # What it parked on and until when: Flower shows the result of a task that parked.
        result["waiting_for"] = WaitStore(worker_repository().engine).waiting_for(record.execution_id)
    return result


def _check_again_later(
    task: Task,
    payload: Any,
    held: ExecutionHeld,
    lease_seconds: float,
    max_retries: int | None,
    first_attempt_at: str,
) -> dict[str, Any]:
    """Publish this task again for just after the holder's lease would expire (it renews it every third
    of the lease while alive), and let this delivery go. Not a Celery retry: it spends no attempt."""
    countdown = min(held.seconds_left(), lease_seconds) + 1 + random.uniform(0, 1)
    queue = _queue_of(task, payload)
    try:
        task.apply_async(
            args=(payload,), kwargs={"first_attempt_at": first_attempt_at}, countdown=countdown, queue=queue
        )
    except Exception as exc:
        raise _retry_or_die(task, exc, max_retries, payload, first_attempt_at) from None
    log.info("task %s: %s; checking again in %.1fs", task.request.id, held, countdown)
    return {
        "status": "DEFERRED",
        "execution_id": held.execution_id,
        "held_by": held.owner,
        "countdown": countdown,
    }


def _retry_or_die(
    task: Task, exc: BaseException, max_retries: int | None, payload: Any, first_attempt_at: str
) -> BaseException:
    """The exception to raise: Celery's Retry while attempts remain, else DeadLettered (Celery then marks
    the task failed and `task_failure` records the dead letter; raise it `from exc` to keep the trace)."""
    conf = task.app.conf
    limit = conf.smq_max_retries if max_retries is None else max_retries
    retries = task.request.retries
    if retries >= limit:
        return DeadLettered("retries_exhausted", f"{type(exc).__name__}: {exc}", False)
    countdown = retry_countdown(retries, conf.smq_retry_delays)
    metrics = worker_metrics()
    if metrics is not None:
        metrics.task_retried(exc)
    log.warning(
        "task %s attempt %d failed (%s: %s); retrying in %.1fs",
        task.request.id,
        retries + 1,
        type(exc).__name__,
        exc,
        countdown,
    )
    try:
        return task.retry(
            args=(payload,),
            kwargs={"first_attempt_at": first_attempt_at},
            exc=exc,
            countdown=countdown,
            max_retries=limit,
            throw=False,
        )
    except Exception as publish_error:
        # The broker itself is down: leave the message unacknowledged; it comes back after the
        # visibility timeout, and the execution resumes from its checkpoint then.
        log.warning(
            "task %s: cannot publish its retry (%s); message left to redeliver",
            task.request.id,
            publish_error,
        )
        return Reject(str(publish_error), requeue=True)


@signals.task_failure.connect
def _record_dead_letter(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """Every final failure of the task becomes a dead letter (retries spent, hard time limit, lost worker).

    Runs in the pool child, or in the worker's main process for a hard time limit. Keyed by task id:
    Celery may report one failure twice."""
    if sender is None or getattr(sender, "name", None) not in TASK_NAMES or task_id is None:
        return
    if isinstance(exception, WorkflowFailed) or (isinstance(exception, DeadLettered) and exception.recorded):
        return  # a workflow's own failure is a result; a rejected payload is dead-lettered already
    kwargs = kwargs or {}
    payload = args[0] if args else kwargs.get("payload")
    error = f"{type(exception).__name__}: {exception}" if exception is not None else "unknown failure"
    if isinstance(exception, DeadLettered):
        reason, error = exception.reason, exception.error
    elif isinstance(exception, TimeLimitExceeded):
        reason = "time_limit"
    elif isinstance(exception, WorkerLostError):
        reason = "worker_lost"
    else:
        reason = "retries_exhausted"
    request = sender.request
    text = "".join(traceback.format_exception(exception)) if exception is not None else None
    if einfo is not None and getattr(einfo, "traceback", None):
        text = str(einfo.traceback)
    try:
        worker_dead_letters().record(
            task_id=task_id,
            task_name=str(sender.name),
            queue=_queue_of(sender, payload),
            reason=reason,
            payload=payload,
            error=error,
            traceback=text,
            attempts=(request.retries or 0) + 1,
            first_attempt_at=_parse_time(kwargs.get("first_attempt_at")),
        )
    except Exception:
        # Last resort: the payload goes to the log, so the task is never silently lost.
        log.exception(
            "task %s failed and its dead letter could not be written; payload: %s",
            task_id,
            json.dumps(payload, default=str)[:100_000],
        )
