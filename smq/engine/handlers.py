"""Task handlers: plain Python functions registered under a resource name.

A Task state's `Resource` is resolved against a `HandlerRegistry`: exactly, by the function name at the
end of a Lambda ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`), or, for the
`arn:aws:states:::lambda:invoke` integration, by `Parameters.FunctionName`.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smq.engine.errors import SmqError, UnknownResourceError

Handler = Callable[..., Any]

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"


class TaskError(SmqError):
    """Raise from a handler to fail the Task with an explicit ASL error name and cause."""

    def __init__(self, error: str, cause: str | None = None):
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else error)


class TaskCancelled(SmqError):
    """Raised by `TaskContext.heartbeat()` once the engine has given up on the task (timeout)."""


@dataclass
class TaskContext:
    """What a handler knows about the call it serves."""

    execution_id: str
    execution_name: str
    state_name: str
    attempt: int  # 1 for the first attempt, 2 for the first retry, ...
    deadline: float | None  # time.monotonic() value after which the task times out, or None
    task_token: str | None = None  # `.waitForTaskToken` tasks: the token that completes this attempt
    _last_heartbeat: float = field(default_factory=time.monotonic, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def heartbeat(self) -> None:
        """Tell the engine the handler is alive (HeartbeatSeconds). Raises TaskCancelled if abandoned."""
        if self._cancelled.is_set():
            raise TaskCancelled(f"task {self.state_name!r} was abandoned after a timeout")
        self._last_heartbeat = time.monotonic()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def remaining_seconds(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class _Registered:
    fn: Handler
    wants_context: bool


def _wants_context(fn: Handler) -> bool:
    """Pass the TaskContext when the handler has a second positional parameter that is meant for it:
    required, named ctx/context, or annotated TaskContext. `def f(payload, retries=3)` gets none."""
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        return True
    if len(params) < 2:
        return False
    second = params[1]
    if second.kind is second.VAR_POSITIONAL:
        return True
    annotation = second.annotation
    named_for_it = second.name in ("ctx", "context") or annotation in (TaskContext, "TaskContext")
    return second.default is second.empty or named_for_it


class HandlerRegistry:
    """Resource name → handler. Handlers take `(input)` or `(input, ctx: TaskContext)`."""

    def __init__(self) -> None:
        self._handlers: dict[str, _Registered] = {}

    def register(self, name: str, fn: Handler) -> Handler:
        if not name or not isinstance(name, str):
            raise ValueError("a handler needs a non-empty resource name")
        self._handlers[name] = _Registered(fn, _wants_context(fn))
        return fn

    def handler(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.handler("process-order")`; the function name is the default."""

        def decorate(fn: Handler) -> Handler:
            return self.register(name or fn.__name__, fn)

        return decorate

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def update(self, other: HandlerRegistry) -> None:
        self._handlers.update(other._handlers)

    def resolve_name(self, resource: str, function_name: Any = None) -> str:
        """The registered name a Resource (and, for lambda:invoke, its FunctionName) refers to."""
        base = resource[: -len(WAIT_FOR_TASK_TOKEN)] if resource.endswith(WAIT_FOR_TASK_TOKEN) else resource
        candidates = [base]
        if base == LAMBDA_INVOKE and isinstance(function_name, str):
            candidates = [function_name, *_lambda_function_names(function_name)]
            if ":" in function_name and ":function:" not in function_name:
                candidates.append(function_name.split(":", 1)[0])  # "name:alias" / "name:version"
        else:
            candidates.extend(_lambda_function_names(base))
            if ":" in base:
                candidates.append(base.rsplit(":", 1)[-1])
        for name in candidates:
            if name in self._handlers:
                return name
        known = ", ".join(self.names()) or "none registered"
        shown = f"{resource} (FunctionName {function_name})" if function_name is not None else resource
        raise UnknownResourceError(f"no handler registered for resource {shown!r} (known: {known})")

    def call(self, name: str, payload: Any, ctx: TaskContext) -> Any:
        entry = self._handlers[name]
        return entry.fn(payload, ctx) if entry.wants_context else entry.fn(payload)


def _lambda_function_names(arn: str) -> list[str]:
    """`arn:aws:lambda:r:a:function:NAME[:QUALIFIER]` → [NAME:QUALIFIER, NAME]."""
    marker = ":function:"
    if marker not in arn:
        return []
    tail = arn.split(marker, 1)[1]
    names = [tail]
    if ":" in tail:
        names.append(tail.split(":", 1)[0])
    return names


default_registry = HandlerRegistry()


def handler(name: str | None = None) -> Callable[[Handler], Handler]:
    """Register a function in the default registry: `@smq.handler("process-order")`."""
    return default_registry.handler(name)
