"""Nested workflows: `arn:aws:states:::states:startExecution` run as smq executions, with AWS's shapes.

    ...states:startExecution                    start the child and go on: {"ExecutionArn", "StartDate"}
    ...states:startExecution.sync               wait for it: DescribeExecution, Input/Output as JSON text
    ...states:startExecution.sync:2             wait for it: DescribeExecution, Input/Output as JSON
    ...states:startExecution.waitForTaskToken   start it, then wait for its task token to be answered

The engine knows what to ask and what AWS answers; where children live (a repository, the workers) is
the `NestedHost` the execution layer puts on the Runtime (`smq.execution.children`). A child that does
not succeed fails the Task with States.TaskFailed and, as its Cause, the DescribeExecution JSON (Status
FAILED, TIMED_OUT or ABORTED, with the child's Error and Cause), as AWS reports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from smq.engine import errors
from smq.engine.errors import StatesError
from smq.engine.handlers import INTEGRATION_PREFIX, TaskContext
from smq.engine.jsontext import compact
from smq.engine.sync import Failed, JobStatus, Running, Succeeded

START_EXECUTION = f"{INTEGRATION_PREFIX}states:startExecution"
MODES = {
    START_EXECUTION: "async",
    f"{START_EXECUTION}.sync": "sync",
    f"{START_EXECUTION}.sync:2": "sync:2",
    f"{START_EXECUTION}.waitForTaskToken": "token",
}
ENDED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
DOES_NOT_EXIST = "StepFunctions.StateMachineDoesNotExistException"
INVALID_ARN = "StepFunctions.InvalidArnException"
ALREADY_EXISTS = "StepFunctions.ExecutionAlreadyExistsException"
INVALID_INPUT = "StepFunctions.InvalidExecutionInputException"


def nested_mode(resource: str) -> str | None:
    """ "async", "sync", "sync:2" or "token" for a startExecution resource, else None."""
    return MODES.get(resource)


@dataclass(frozen=True)
class ChildRequest:
    """A startExecution call's Parameters, read: which machine (and version), its input, its name."""

    state_machine_arn: str
    state_machine_id: str
    version: int | None
    input: Any
    name: str | None


@dataclass(frozen=True)
class ChildView:
    """What the parent sees of a child execution (DescribeExecution)."""

    execution_id: str
    execution_arn: str
    state_machine_arn: str
    name: str
    status: str
    start: float  # epoch seconds
    stop: float | None
    input: Any
    output: Any = None
    error: str | None = None
    cause: str | None = None


class NestedHost(Protocol):
    """Where child executions are started and looked at (`smq.execution.children`). `arns`: the
    configured StateMachineArn -> smq id mapping (SMQ_STATE_MACHINE_ARNS)."""

    arns: Mapping[str, str]

    def start_child(self, request: ChildRequest, ctx: TaskContext, mode: str) -> ChildView: ...

    def child(self, execution_id: str) -> ChildView: ...

    def stop_child(self, execution_id: str, cause: str) -> None: ...


def state_machine_of(arn: str, mapping: Mapping[str, str] | None = None) -> tuple[str, int | None]:
    """The smq state machine (id, version or None for the latest) a StateMachineArn names.

    A configured mapping (SMQ_STATE_MACHINE_ARNS) wins, for the ARN as given or without its qualifier;
    else the name after `:stateMachine:`, whose qualifier, when a number, is the version (an alias
    qualifier means the latest). Anything that is not an ARN is taken as an smq id."""
    if mapping:
        if arn in mapping:
            return mapping[arn], None
    if not arn.startswith("arn:"):
        return arn, None
    marker = ":stateMachine:"
    if marker not in arn:
        raise StatesError(INVALID_ARN, f"Invalid Arn: 'Resource type not valid in this context: {arn}'")
    tail = arn.split(marker, 1)[1]
    name, _, qualifier = tail.partition(":")
    if mapping:
        unqualified = arn[: len(arn) - len(tail)] + name
        if unqualified in mapping:
            return mapping[unqualified], int(qualifier) if qualifier.isdigit() else None
    if not name:
        raise StatesError(INVALID_ARN, f"Invalid Arn: 'Resource name not valid in this context: {arn}'")
    return name, int(qualifier) if qualifier.isdigit() else None


def child_request(parameters: Any, mapping: Mapping[str, str] | None = None) -> ChildRequest:
    """Read startExecution's Parameters: StateMachineArn (required), Input (a JSON value or JSON text),
    Name. Bad ones raise the error AWS's API would."""
    if not isinstance(parameters, dict):
        raise StatesError(
            errors.RUNTIME, f"startExecution takes an object of Parameters, got {compact(parameters)}"
        )
    arn = parameters.get("StateMachineArn")
    if not isinstance(arn, str) or not arn:
        raise StatesError(INVALID_ARN, "startExecution: StateMachineArn is required (a state machine's ARN)")
    machine_id, version = state_machine_of(arn, mapping)
    raw_input = parameters.get("Input", {})
    if isinstance(raw_input, str):
        try:
            raw_input = json.loads(raw_input)
        except ValueError as exc:
            raise StatesError(INVALID_INPUT, f"Invalid State Machine Execution Input: '{exc}'") from None
    name = parameters.get("Name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 80):
        raise StatesError(
            "StepFunctions.InvalidNameException", f"Invalid Name: '{name}' (1 to 80 characters)"
        )
    return ChildRequest(arn, machine_id, version, {} if raw_input is None else raw_input, name)


def millis(epoch: float | None) -> int | None:
    return None if epoch is None else int(round(epoch * 1000))


def started(child: ChildView) -> dict[str, Any]:
    """startExecution's result: the child's ARN and when it started."""
    return {"ExecutionArn": child.execution_arn, "StartDate": millis(child.start)}


def describe(child: ChildView, json_values: bool) -> dict[str, Any]:
    """DescribeExecution of a child, as `.sync` (`json_values` False: Input and Output are JSON text)
    and `.sync:2` (True: JSON values) give it."""

    def value(data: Any) -> Any:
        return data if json_values else compact(data)

    shown: dict[str, Any] = {
        "ExecutionArn": child.execution_arn,
        "Input": value(child.input),
        "InputDetails": {"Included": True},
        "Name": child.name,
        "StartDate": millis(child.start),
        "StateMachineArn": child.state_machine_arn,
        "Status": child.status,
    }
    if child.stop is not None:
        shown["StopDate"] = millis(child.stop)
    if child.status == "SUCCEEDED":
        shown["Output"] = value(child.output)
        shown["OutputDetails"] = {"Included": True}
    if child.error is not None:
        shown["Error"] = child.error
    if child.cause is not None:
        shown["Cause"] = child.cause
    return shown


def outcome(child: ChildView, json_values: bool) -> JobStatus:
    """Running until the child ends; then its DescribeExecution, or States.TaskFailed carrying it.
    A child still running or waiting is alive: that counts as the Task's heartbeat (HeartbeatSeconds
    bounds silence, and the child has its own timeouts for how long it may take)."""
    if child.status not in ENDED:
        return Running(progress=True)
    if child.status == "SUCCEEDED":
        return Succeeded(describe(child, json_values))
    return Failed(errors.TASK_FAILED, compact(describe(child, False)))


@dataclass(frozen=True)
class NestedSync:
    """startExecution.sync / .sync:2 as a `.sync` job: start the child, check its status. Its end wakes
    the parent at once (the host fires the parent's timer); the checks are the safety net."""

    host: NestedHost
    mode: str
    interval: float = 0.0  # a child run in this process may have ended already: check at once
    max_interval: float = 10.0

    def start(self, payload: Any, ctx: TaskContext) -> Any:
        child = self.host.start_child(child_request(payload, self.host.arns), ctx, self.mode)
        return {"execution_id": child.execution_id, "execution_arn": child.execution_arn}

    def check(self, job: Any, ctx: TaskContext) -> JobStatus:
        return outcome(self.host.child(job["execution_id"]), self.mode == "sync:2")

    def cancel(self, job: Any, ctx: TaskContext) -> None:
        self.host.stop_child(job["execution_id"], f"the parent's Task {ctx.state_name!r} gave up on it")


def checks_child(cursor: Mapping[str, Any] | None, execution_id: str) -> bool:
    """Is this cursor (a parent's, as JSON) a `.sync` Task checking the child `execution_id`, itself or
    in a paused branch of a Parallel/Map? Only then may the child's end wake it early."""
    pending = (cursor or {}).get("pending")
    if not isinstance(pending, dict):
        return False
    if pending.get("kind") == "poll":
        job = pending.get("job")
        return isinstance(job, dict) and job.get("execution_id") == execution_id
    jobs = pending.get("jobs") if pending.get("kind") == "fanout" else None
    return isinstance(jobs, dict) and any(
        isinstance(job, dict)
        and job.get("status") == "WAITING"
        and checks_child(job.get("cursor"), execution_id)
        for job in jobs.values()
    )
