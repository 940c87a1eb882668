"""The compiled form of a state machine: one frozen object per state, paths and templates precompiled.

Built by `smq.engine.compiler` from a validated definition; read by the interpreter. Nothing here
parses text at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from smq.engine.choice import Predicate
from smq.engine.handlers import WAIT_FOR_TASK_TOKEN
from smq.engine.jsonata import Expression
from smq.engine.paths import Path
from smq.engine.templates import Template


class NullPath:
    """`"InputPath": null` / `"OutputPath": null`: the state sees (or emits) `{}`."""

    def __repr__(self) -> str:
        return "NULL_PATH"


NULL_PATH = NullPath()


@dataclass(frozen=True, slots=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: float | None = None
    jitter: str = "NONE"


@dataclass(frozen=True, slots=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: Path | None  # None: discard the error output, keep the input
    assign: Template | None = None
    output: Template | None = None  # JSONata: the state's output ($states.errorOutput when absent)


@dataclass(frozen=True, slots=True)
class ChoiceBranch:
    predicate: Predicate
    next: str
    assign: Template | None = None
    output: Template | None = None  # JSONata: the Choice state's output when this rule matches


@dataclass(frozen=True, slots=True)
class IntOrPath:
    """A numeric field given literally (`TimeoutSeconds`), by path (`TimeoutSecondsPath`) or, in a
    JSONata state, by expression (`"TimeoutSeconds": "{% ... %}"`)."""

    field_name: str
    value: float | None = None
    path: Path | None = None
    expression: Expression | None = None


@dataclass(frozen=True)
class State:
    name: str
    type: str
    next: str | None = None
    end: bool = False
    input_path: Path | NullPath | None = None  # None: "$" (identity)
    output_path: Path | NullPath | None = None
    assign: Template | None = None
    jsonata: bool = False  # QueryLanguage JSONata: Arguments/Output/expressions, no paths
    output: Template | None = None  # JSONata Output; absent: the result (or the input)


@dataclass(frozen=True)
class ResultState(State):
    """States that produce a result: Pass, Task, Parallel, Map."""

    parameters: Template | None = None
    arguments: Template | None = None  # JSONata: the task's (or branches') input
    result_selector: Template | None = None
    result_path: Path | None = None  # set when result_path_mode == "path"
    result_path_mode: str = "replace"  # "replace" ($), "path", "discard" (null)
    retriers: tuple[Retrier, ...] = ()
    catchers: tuple[Catcher, ...] = ()


@dataclass(frozen=True)
class PassState(ResultState):
    result: Any = None
    has_result: bool = False


@dataclass(frozen=True)
class TaskState(ResultState):
    resource: str = ""
    function_name: str | None = None  # literal Parameters.FunctionName of arn:aws:states:::lambda:invoke
    timeout: IntOrPath | None = None
    heartbeat: IntOrPath | None = None
    wait_for_token: bool = False  # Resource ends in `.waitForTaskToken`: a callback task
    sync: bool = False  # Resource ends in `.sync` / `.sync:N`: start a job, check on it until it ends
    nested: str | None = None  # `states:startExecution`: "async", "sync", "sync:2" or "token"

    @property
    def base_resource(self) -> str:
        """The Resource without its `.waitForTaskToken` suffix."""
        return self.resource[: -len(WAIT_FOR_TASK_TOKEN)] if self.wait_for_token else self.resource


@dataclass(frozen=True)
class MessageState(State):
    """smq's `Type: Message`: park until a message correlated by (key, value) arrives, or a timeout."""

    correlation_key: str = ""
    correlation_value_path: Path | None = None  # None: the whole effective input is the value
    timeout: IntOrPath | None = None  # TimeoutSeconds / TimeoutSecondsPath
    timeout_next: str | None = None  # TimeoutPath: the state to go to on timeout
    result_path: Path | None = None  # set when result_path_mode == "path"
    result_path_mode: str = "replace"  # "replace" ($), "path", "discard" (null)


@dataclass(frozen=True)
class ChoiceState(State):
    branches: tuple[ChoiceBranch, ...] = ()
    default: str | None = None


@dataclass(frozen=True)
class WaitState(State):
    seconds: int | None = None
    seconds_path: Path | None = None
    timestamp: str | None = None
    timestamp_path: Path | None = None
    seconds_expression: Expression | None = None  # JSONata
    timestamp_expression: Expression | None = None


@dataclass(frozen=True)
class SucceedState(State):
    pass


@dataclass(frozen=True)
class FailState(State):
    error: str | None = None
    cause: str | None = None
    error_expr: Template | None = None  # ErrorPath: a path or an intrinsic call
    cause_expr: Template | None = None
    error_expression: Expression | None = None  # JSONata Error / Cause
    cause_expression: Expression | None = None


@dataclass(frozen=True)
class ParallelState(ResultState):
    branches: tuple[Machine, ...] = ()


@dataclass(frozen=True)
class MapState(ResultState):
    items_path: Path | None = None
    items: Template | None = None  # JSONata Items given as a JSON array (expressions inside)
    items_expression: Expression | None = None  # JSONata Items given as one expression
    item_selector: Template | None = None
    processor: Machine | None = None
    mode: str = "INLINE"
    max_concurrency: IntOrPath | None = None
    tolerated_failure_percentage: IntOrPath | None = None
    tolerated_failure_count: IntOrPath | None = None
    max_items_per_batch: IntOrPath | None = None
    batch_input: Template | None = None


@dataclass(frozen=True)
class Machine:
    """A state machine or a sub-machine (Parallel branch, Map item processor)."""

    start_at: str
    states: dict[str, State]
    timeout_seconds: int | None = None
    comment: str | None = None
    pure: bool = field(default=True)  # no Task or Wait anywhere inside: safe to run sequentially
    definition: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def resources(self) -> tuple[tuple[str, TaskState], ...]:
        """Every Task state in this machine and its sub-machines, with its scope-qualified name (found
        once: the handlers are checked against them before every run)."""
        return self._resources

    @cached_property
    def _resources(self) -> tuple[tuple[str, TaskState], ...]:
        found: list[tuple[str, TaskState]] = []
        for name, state in self.states.items():
            if isinstance(state, TaskState):
                found.append((name, state))
            elif isinstance(state, ParallelState):
                for branch in state.branches:
                    found.extend(branch.resources())
            elif isinstance(state, MapState) and state.processor is not None:
                found.extend(state.processor.resources())
        return tuple(found)
