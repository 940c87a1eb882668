"""`StateMachine`: the public face of the engine. Compile once, run many times.

    sm = StateMachine.from_definition(text_or_dict)
    result = sm.run({"order_id": 7}, handlers=registry)
    result.status, result.output, result.history

For resumable use (what persistence and the workers build on): `begin()` makes the first cursor,
`step()` runs one state, `resume()` drives a cursor (possibly read back from JSON) to the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from smq.engine import errors
from smq.engine.compiler import compile_machine
from smq.engine.cursor import AwsIdentity, Cursor, ExecutionInfo, HistoryEntry, Step
from smq.engine.definition_source import load_definition
from smq.engine.driver import FAILED, Outcome, drive
from smq.engine.errors import UnknownResourceError
from smq.engine.handlers import LAMBDA_INVOKE, HandlerRegistry, default_registry
from smq.engine.interpreter import run_state
from smq.engine.jsontext import compact
from smq.engine.model import Machine
from smq.engine.runtime import DEFAULT_PAYLOAD_LIMIT, Runtime
from smq.engine.status import Status

_UNSET: Any = object()


@dataclass
class ExecutionResult:
    """How an execution ended or where it stopped.

    `status` is SUCCEEDED, FAILED, TIMED_OUT or ABORTED when it ended; RUNNING when `stop_after`
    stopped it; WAITING when it is parked (on a message, a callback token, or with `park_after` a
    long pause): `cursor` is where to resume it (`StateMachine.resume`)."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    execution_id: str = ""
    name: str = ""
    cursor: Cursor | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == Status.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "output": self.output, "error": self.error, "cause": self.cause}


class StateMachine:
    """A compiled, validated state machine."""

    def __init__(self, machine: Machine, *, id: str | None = None, name: str | None = None):
        self.machine = machine
        self.definition = machine.definition
        self.name = name or id or "state-machine"
        self.id = id or self.name

    @classmethod
    def from_definition(
        cls, source: str | bytes | dict[str, Any], *, id: str | None = None, name: str | None = None
    ) -> StateMachine:
        """Compile a definition (dict, JSON text or YAML text). Raises DefinitionError listing every problem."""
        return cls(compile_machine(load_definition(source)), id=id, name=name)

    @classmethod
    def from_file(cls, path: str | FilePath, *, id: str | None = None) -> StateMachine:
        file_path = FilePath(path)
        return cls.from_definition(file_path.read_text(encoding="utf-8"), id=id, name=id or file_path.stem)

    # ---------------------------------------------------------------- resources

    def check_handlers(self, handlers: HandlerRegistry) -> None:
        """Fail before anything runs if a Task names a resource no handler answers to."""
        missing = []
        for state_name, task in self.machine.resources():
            if task.base_resource == LAMBDA_INVOKE and task.function_name is None:
                continue  # FunctionName.$ is dynamic: checked when the state runs
            if task.nested is not None:
                continue  # nested executions are smq's own (smq.engine.nested), not a handler's
            try:
                handlers.resolve_name(task.resource, task.function_name)
            except UnknownResourceError as exc:
                missing.append(f"States.{state_name}.Resource: {exc}")
        if missing:
            raise UnknownResourceError("\n".join(missing))

    # ---------------------------------------------------------------- running

    def begin(
        self,
        input: Any = None,
        *,
        name: str | None = None,
        execution_id: str | None = None,
        start_time: float | None = None,
        clock: Callable[[], float] | None = None,
        identity: AwsIdentity | None = None,
        parent_id: str | None = None,
    ) -> Cursor:
        """The cursor of a new execution, positioned on StartAt. Runs nothing. `identity`: the region
        and account of the ARNs the Context object gives (`$$.Execution.Id`); `parent_id`: the
        execution that started it (a nested execution)."""
        identity = identity or AwsIdentity()
        execution_input = {} if input is None else input
        execution_id = execution_id or str(uuid.uuid4())
        info = ExecutionInfo(
            id=execution_id,
            name=name or execution_id,
            input=execution_input,
            start_time=start_time if start_time is not None else (clock or time.time)(),
            state_machine_id=self.id,
            state_machine_name=self.name,
            region=identity.region,
            account=identity.account,
            parent_id=parent_id,
        )
        return Cursor(execution=info, state=self.machine.start_at, input=execution_input)

    def runtime(
        self,
        *,
        handlers: HandlerRegistry | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        payload_limit: int | None = _UNSET,
        start_time: float | None = None,
        **options: Any,
    ) -> Runtime:
        if clock is not None:
            options["clock"] = clock
        if sleep is not None:
            options["sleep"] = sleep
        runtime = Runtime(handlers=handlers if handlers is not None else default_registry, **options)
        runtime.payload_limit = DEFAULT_PAYLOAD_LIMIT if payload_limit is _UNSET else payload_limit
        if self.machine.timeout_seconds is not None and start_time is not None:
            runtime.deadline = start_time + self.machine.timeout_seconds
        return runtime

    def step(self, cursor: Cursor, runtime: Runtime | None = None) -> Step:
        """Run exactly one state from `cursor` (after any pause it carries has passed)."""
        runtime = runtime or self.runtime(start_time=cursor.execution.start_time)
        if cursor.not_before is not None:
            runtime.wait_until(cursor.not_before)
        return run_state(self.machine, cursor, runtime)

    def resume(
        self,
        cursor: Cursor | str | dict[str, Any],
        *,
        handlers: HandlerRegistry | None = None,
        runtime: Runtime | None = None,
        on_step: Callable[[Step], None] | None = None,
        stop_after: int | None = None,
        check_handlers: bool = True,
        **runtime_options: Any,
    ) -> ExecutionResult:
        """Drive an execution from a cursor (object, dict or JSON) to its end, or until it parks.

        A parked cursor (`cursor.parked`) comes back WAITING until a delivery is added to it
        (`cursor.deliver(...)`). With `park_after=SECONDS` among the runtime options, a pause longer
        than that (a Wait, a retry back-off) also returns WAITING instead of sleeping; resume the
        returned cursor once its `not_before` (or the execution deadline, if sooner) has passed."""
        if isinstance(cursor, str):
            cursor = Cursor.from_json(cursor)
        elif isinstance(cursor, dict):
            cursor = Cursor.from_dict(cursor)
        if runtime is None:
            runtime = self.runtime(
                handlers=handlers, start_time=cursor.execution.start_time, **runtime_options
            )
        if check_handlers:
            self.check_handlers(runtime.handlers)
        outcome = self._start_checks(cursor, runtime) or drive(
            self.machine, cursor, runtime, on_step=on_step, stop_after=stop_after
        )
        return ExecutionResult(
            status=outcome.status,
            output=outcome.output,
            error=outcome.error,
            cause=outcome.cause,
            history=outcome.history,
            execution_id=cursor.execution.id,
            name=cursor.execution.name,
            cursor=outcome.cursor,
        )

    def run(
        self,
        input: Any = None,
        *,
        handlers: HandlerRegistry | None = None,
        name: str | None = None,
        execution_id: str | None = None,
        on_step: Callable[[Step], None] | None = None,
        identity: AwsIdentity | None = None,
        **runtime_options: Any,
    ) -> ExecutionResult:
        """Run one execution in this process and return how it ended."""
        clock = runtime_options.get("clock")
        cursor = self.begin(input, name=name, execution_id=execution_id, clock=clock, identity=identity)
        return self.resume(cursor, handlers=handlers, on_step=on_step, **runtime_options)

    def _start_checks(self, cursor: Cursor, runtime: Runtime) -> Outcome | None:
        if cursor.transitions == 0 and cursor.pending is None and runtime.payload_limit is not None:
            size = len(compact(cursor.execution.input).encode("utf-8"))
            if size > runtime.payload_limit:
                return Outcome(
                    FAILED,
                    error=errors.DATA_LIMIT_EXCEEDED,
                    cause=f"the execution input is {size} bytes, above the limit of {runtime.payload_limit} bytes",
                    cursor=cursor,
                )
        return None
