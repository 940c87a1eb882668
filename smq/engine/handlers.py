"""Task handlers: plain Python functions registered under a resource name.

A Task state's `Resource` is resolved against a `HandlerRegistry` by the names `lookup_names` gives:
exactly, by the function name at the end of a Lambda ARN (`arn:aws:lambda:REGION:ACCOUNT:function:
NAME[:QUALIFIER]`), for the `arn:aws:states:::lambda:invoke` integration by `Parameters.FunctionName`,
for any other `arn:aws:states:::` integration by its path (`dynamodb:putItem`). Only then are the
registry's providers asked (the built-in AWS integrations of `smq.integrations`), so a handler you
register always wins over a built-in one.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from smq.engine.errors import SmqError, UnknownResourceError

Handler = Callable[..., Any]

INTEGRATION_PREFIX = "arn:aws:states:::"
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
    execution_arn: str | None = None  # `$$.Execution.Id`, as AWS's integrations name the caller
    state_machine_arn: str | None = None  # `$$.StateMachine.Id`
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


class HandlerProvider(Protocol):
    """Built-in handlers for a family of resources (`smq.integrations`), asked only when no handler
    registered by name answers: what the user registers always wins."""

    def handler_for(self, resource: str) -> Handler | None:
        """The handler serving `resource` (its `.waitForTaskToken` suffix removed), or None."""

    def why_not(self, resource: str) -> str | None:
        """For an error message: why this provider serves no handler for `resource`, when it would
        have (an extra not installed, a switch turned off, an API that does not exist)."""


@dataclass(frozen=True)
class ResolvedHandler:
    """The handler a Task's resource resolved to, and how it is called."""

    name: str  # the registered name it was found under, or the resource a built-in serves
    builtin: bool  # served by a HandlerProvider, not registered by name
    # lambda:invoke only: the handler takes all of Parameters and returns the whole Invoke result (a
    # handler registered under the integration, or the built-in one); a handler registered for a
    # function takes `Payload` and its result becomes the result's `Payload`.
    whole_request: bool
    entry: _Registered = field(repr=False)

    def __call__(self, payload: Any, ctx: TaskContext) -> Any:
        return self.entry.fn(payload, ctx) if self.entry.wants_context else self.entry.fn(payload)


class HandlerRegistry:
    """Resource name → handler. Handlers take `(input)` or `(input, ctx: TaskContext)`."""

    def __init__(self) -> None:
        self._handlers: dict[str, _Registered] = {}
        self._providers: list[HandlerProvider] = []

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

    def add_provider(self, provider: HandlerProvider) -> None:
        """Serve what no registered name answers from `provider` (asked in the order added)."""
        if provider not in self._providers:
            self._providers.append(provider)

    @property
    def providers(self) -> tuple[HandlerProvider, ...]:
        return tuple(self._providers)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def __bool__(self) -> bool:
        """A registry is one even with no name registered (its providers may serve everything)."""
        return True

    def update(self, other: HandlerRegistry) -> None:
        self._handlers.update(other._handlers)
        for provider in other._providers:
            self.add_provider(provider)

    def resolve(self, resource: str, function_name: Any = None) -> ResolvedHandler:
        """The handler a Resource (and, for lambda:invoke, its FunctionName) refers to: a registered
        name (`lookup_names`, first match), else a provider's built-in. Raises UnknownResourceError."""
        for name, whole_request in lookup_names(resource, function_name):
            entry = self._handlers.get(name)
            if entry is not None:
                return ResolvedHandler(name, False, whole_request, entry)
        base = strip_wait_for_token(resource)
        for provider in self._providers:
            fn = provider.handler_for(base)
            if fn is not None:
                return ResolvedHandler(base, True, True, _Registered(fn, _wants_context(fn)))
        known = ", ".join(self.names()) or "none registered"
        shown = f"{resource} (FunctionName {function_name})" if function_name is not None else resource
        hints = [hint for provider in self._providers if (hint := provider.why_not(base))]
        tail = "".join(f"; {hint}" for hint in hints)
        raise UnknownResourceError(f"no handler registered for resource {shown!r} (known: {known}){tail}")

    def resolve_name(self, resource: str, function_name: Any = None) -> str:
        """The registered name (or, for a built-in, the resource) a Resource refers to."""
        return self.resolve(resource, function_name).name

    def call(self, name: str, payload: Any, ctx: TaskContext) -> Any:
        entry = self._handlers[name]
        return entry.fn(payload, ctx) if entry.wants_context else entry.fn(payload)


def strip_wait_for_token(resource: str) -> str:
    return resource[: -len(WAIT_FOR_TASK_TOKEN)] if resource.endswith(WAIT_FOR_TASK_TOKEN) else resource


def lookup_names(resource: str, function_name: Any = None) -> list[tuple[str, bool]]:
    """The names a handler may be registered under for `resource`, most specific first, each with
    whether that handler takes the whole lambda:invoke request (see ResolvedHandler). The
    `.waitForTaskToken` suffix is never part of a name. Two integrations never share a name:
    `arn:aws:states:::dynamodb:putItem` answers to `dynamodb:putItem`, `arn:aws:states:::aws-sdk:
    dynamodb:putItem` to `aws-sdk:dynamodb:putItem`, neither to `putItem`."""
    base = strip_wait_for_token(resource)
    if base == LAMBDA_INVOKE:
        names: list[tuple[str, bool]] = []
        if isinstance(function_name, str) and function_name:
            functions = [function_name, *_lambda_function_names(function_name)]
            if ":" in function_name and ":function:" not in function_name:
                functions.append(function_name.split(":", 1)[0])  # "name:alias" / "name:version"
            names = [(name, False) for name in functions]
        return [*names, (LAMBDA_INVOKE, True), (LAMBDA_INVOKE[len(INTEGRATION_PREFIX) :], True)]
    if base.startswith(INTEGRATION_PREFIX):
        return [(base, False), (base[len(INTEGRATION_PREFIX) :], False)]
    functions = _lambda_function_names(base)
    if functions:
        return [(name, False) for name in (base, *functions)]
    if ":" in base:  # an activity ARN or a name of your own: its last segment
        return [(base, False), (base.rsplit(":", 1)[-1], False)]
    return [(base, False)]


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
