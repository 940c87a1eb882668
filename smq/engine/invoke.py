"""Calling a Task's handler: error naming, TimeoutSeconds and HeartbeatSeconds.

Without a timeout the handler runs inline, the fast path. With one it runs on its own daemon thread
while this thread watches the clock and the heartbeat; a timed-out handler cannot be killed (Python
has no safe way), so it is abandoned and its `ctx.heartbeat()` raises TaskCancelled from then on.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from smq.engine import errors
from smq.engine.errors import StatesError
from smq.engine.handlers import ResolvedHandler, TaskContext, TaskError
from smq.engine.runtime import ExecutionAborted, ExecutionTimedOut

_POLL_SECONDS = 0.05


def error_of(
    exc: BaseException, pass_through: tuple[type[BaseException], ...] = errors.PASS_THROUGH
) -> StatesError:
    """The ASL error an exception stands for: an explicit name, else the exception's class name.
    Exceptions of the `pass_through` types are not the workflow's: they propagate as they are."""
    if isinstance(exc, pass_through):
        raise exc
    if isinstance(exc, StatesError):
        return exc
    if isinstance(exc, TaskError):
        return StatesError(exc.error, exc.cause)
    explicit = getattr(exc, "error_name", None)
    name = explicit if isinstance(explicit, str) and explicit else type(exc).__name__
    return StatesError(name, str(exc) or type(exc).__name__)


def lambda_error(error: StatesError) -> StatesError:
    """A handler's exception as AWS reports a Lambda function's: the same error name, and a Cause that
    is the JSON object Lambda returns (errorMessage, errorType, requestId, stackTrace), which
    definitions parse (`States.StringToJson($.Cause)`). Explicit errors (TaskError, StatesError) and
    smq's own (timeouts) keep their cause."""
    exc = error.__cause__
    if exc is None or isinstance(exc, (StatesError, TaskError)):
        return error
    cause = {
        "errorMessage": str(exc),
        "errorType": error.error,
        "requestId": str(uuid.uuid4()),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }
    converted = StatesError(error.error, json.dumps(cause))
    converted.__cause__ = exc
    return converted


def call_handler(
    handler: ResolvedHandler,
    payload: Any,
    ctx: TaskContext,
    *,
    timeout: float | None,
    heartbeat: float | None,
    execution_remaining: float | None,
    cancelled: Callable[[], bool],
    pass_through: tuple[type[BaseException], ...] = errors.PASS_THROUGH,
) -> Any:
    """Run the handler; raise StatesError for its failure or a timeout (`pass_through` types as they are)."""
    if timeout is None and heartbeat is None and execution_remaining is None:
        try:
            return handler(payload, ctx)
        except Exception as exc:  # any handler failure becomes an ASL error
            raise error_of(exc, pass_through) from exc
    return _call_watched(
        handler, payload, ctx, timeout, heartbeat, execution_remaining, cancelled, pass_through
    )


def _call_watched(
    handler: ResolvedHandler,
    payload: Any,
    ctx: TaskContext,
    timeout: float | None,
    heartbeat: float | None,
    execution_remaining: float | None,
    cancelled: Callable[[], bool],
    pass_through: tuple[type[BaseException], ...],
) -> Any:
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["result"] = handler(payload, ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the watching thread
            outcome["error"] = exc
        finally:
            done.set()

    started = time.monotonic()
    ctx.deadline = started + timeout if timeout is not None else None
    ctx._last_heartbeat = started
    # In the caller's context variables: the handler's log lines name the execution (smq.logs).
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(target,), name=f"smq-task-{ctx.state_name}", daemon=True
    )
    thread.start()
    while not done.wait(_POLL_SECONDS):
        now = time.monotonic()
        if cancelled():
            ctx._cancelled.set()
            raise ExecutionAborted("the execution was stopped")
        if timeout is not None and now - started >= timeout:
            ctx._cancelled.set()
            raise StatesError(errors.TIMEOUT, f"Task '{ctx.state_name}' timed out after {timeout:g} seconds")
        if heartbeat is not None and now - ctx._last_heartbeat >= heartbeat:
            ctx._cancelled.set()
            raise StatesError(
                errors.HEARTBEAT_TIMEOUT,
                f"Task '{ctx.state_name}' sent no heartbeat for {heartbeat:g} seconds",
            )
        if execution_remaining is not None and now - started >= execution_remaining:
            ctx._cancelled.set()
            raise ExecutionTimedOut("the execution exceeded its TimeoutSeconds")
    if "error" in outcome:
        exc = outcome["error"]
        raise error_of(exc, pass_through) from exc
    return outcome.get("result")
