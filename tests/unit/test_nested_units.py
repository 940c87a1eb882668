"""Nested workflows without a database: StateMachineArn resolution, startExecution's Parameters, the
result shapes AWS gives (startExecution, `.sync`, `.sync:2`, a child's failure), and the `.sync`
resource forms."""

from __future__ import annotations

import json

import pytest

from smq import HandlerRegistry, StateMachine, SyncJob
from smq.engine.errors import StatesError
from smq.engine.nested import (
    ChildView,
    child_request,
    describe,
    nested_mode,
    outcome,
    started,
    state_machine_of,
)
from smq.engine.sync import Failed, Running, Succeeded, is_sync_resource
from smq.settings import SettingsError, _state_machine_arns

ARN = "arn:aws:states:eu-west-1:123456789012:stateMachine:"


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (ARN + "Orders", ("Orders", None)),
        (ARN + "Orders:3", ("Orders", 3)),  # a version
        (ARN + "Orders:PROD", ("Orders", None)),  # an alias: the latest
        ("orders-v2", ("orders-v2", None)),  # an smq id as it is
    ],
)
def test_state_machine_arn_resolves_by_its_last_segment(arn: str, expected: tuple[str, int | None]) -> None:
    assert state_machine_of(arn) == expected


def test_a_configured_mapping_wins_with_or_without_the_qualifier() -> None:
    mapping = {ARN + "Orders": "orders-smq"}
    assert state_machine_of(ARN + "Orders", mapping) == ("orders-smq", None)
    assert state_machine_of(ARN + "Orders:7", mapping) == ("orders-smq", 7)
    assert state_machine_of(ARN + "Other", mapping) == ("Other", None)


def test_an_arn_that_names_no_state_machine_is_invalid_arn() -> None:
    with pytest.raises(StatesError) as caught:
        state_machine_of("arn:aws:lambda:us-east-1:1:function:f")
    assert caught.value.error == "StepFunctions.InvalidArnException"


def test_parameters_input_as_object_or_json_text_and_name() -> None:
    request = child_request({"StateMachineArn": ARN + "A", "Input": '{"x": 1}', "Name": "n1"})
    assert (request.state_machine_id, request.input, request.name) == ("A", {"x": 1}, "n1")
    assert child_request({"StateMachineArn": ARN + "A"}).input == {}
    with pytest.raises(StatesError, match="StateMachineArn is required"):
        child_request({"Input": {}})
    with pytest.raises(StatesError) as caught:
        child_request({"StateMachineArn": ARN + "A", "Input": "{not json"})
    assert caught.value.error == "StepFunctions.InvalidExecutionInputException"


def test_settings_read_the_arn_mapping_as_json_or_pairs() -> None:
    assert _state_machine_arns({"SMQ_STATE_MACHINE_ARNS": f'{{"{ARN}A": "a"}}'}) == {ARN + "A": "a"}
    assert _state_machine_arns({"SMQ_STATE_MACHINE_ARNS": f"{ARN}A=a, {ARN}B=b"}) == {
        ARN + "A": "a",
        ARN + "B": "b",
    }
    with pytest.raises(SettingsError, match="SMQ_STATE_MACHINE_ARNS"):
        _state_machine_arns({"SMQ_STATE_MACHINE_ARNS": "no-equals-sign"})


CHILD = ChildView(
    execution_id="e1",
    execution_arn="arn:aws:states:us-east-1:000000000000:execution:kid:n1",
    state_machine_arn="arn:aws:states:us-east-1:000000000000:stateMachine:kid",
    name="n1",
    status="SUCCEEDED",
    start=1700000000.123,
    stop=1700000001.5,
    input={"a": 1},
    output={"b": 2},
)


def test_result_shapes_of_the_three_forms_that_return_one() -> None:
    assert started(CHILD) == {"ExecutionArn": CHILD.execution_arn, "StartDate": 1700000000123}
    two = describe(CHILD, json_values=True)
    assert (two["Input"], two["Output"], two["Status"], two["StopDate"]) == (
        {"a": 1},
        {"b": 2},
        "SUCCEEDED",
        1700000001500,
    )
    one = describe(CHILD, json_values=False)
    assert (one["Input"], one["Output"]) == ('{"a":1}', '{"b":2}')
    assert one["OutputDetails"] == {"Included": True} and one["Name"] == "n1"


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_a_child_that_did_not_succeed_is_task_failed_with_its_description(status: str) -> None:
    child = ChildView(**{**CHILD.__dict__, "status": status, "output": None, "error": "E", "cause": "C"})
    result = outcome(child, json_values=True)
    assert isinstance(result, Failed) and result.error == "States.TaskFailed"
    cause = json.loads(result.cause or "")
    assert (cause["Status"], cause["Error"], cause["Cause"], cause["Input"]) == (status, "E", "C", '{"a":1}')
    assert "Output" not in cause
    for alive in ("RUNNING", "WAITING"):  # a live child is the Task's heartbeat
        assert outcome(ChildView(**{**CHILD.__dict__, "status": alive}), True) == Running(progress=True)
    assert isinstance(outcome(CHILD, True), Succeeded)


def test_resource_forms() -> None:
    base = "arn:aws:states:::states:startExecution"
    assert [nested_mode(base + tail) for tail in ("", ".sync", ".sync:2", ".waitForTaskToken")] == [
        "async",
        "sync",
        "sync:2",
        "token",
    ]
    assert nested_mode("arn:aws:states:::aws-sdk:sfn:startExecution") is None
    assert [
        is_sync_resource(r)
        for r in (base + ".sync", base + ".sync:2", "arn:aws:states:::glue:startJobRun.sync")
    ] == [True] * 3
    assert not is_sync_resource("arn:aws:states:::glue:startJobRun") and not is_sync_resource("my.sync.thing")


def test_a_sync_resource_served_by_a_plain_function_is_a_clear_runtime_error() -> None:
    handlers = HandlerRegistry()
    handlers.register("glue:startJobRun.sync", lambda payload: {})
    task = {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync", "End": True}
    result = StateMachine.from_definition({"StartAt": "T", "States": {"T": task}}).run({}, handlers=handlers)
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert "not a .sync job" in (result.cause or "")


def test_heartbeat_seconds_without_progress_is_heartbeat_timeout() -> None:
    handlers = HandlerRegistry()
    handlers.register("job.sync", SyncJob(lambda p, c: 1, lambda job, c: Running(), interval=0.05))
    task = {"Type": "Task", "Resource": "job.sync", "TimeoutSeconds": 30, "HeartbeatSeconds": 1, "End": True}
    result = StateMachine.from_definition({"StartAt": "T", "States": {"T": task}}).run({}, handlers=handlers)
    assert (result.status, result.error) == ("FAILED", "States.HeartbeatTimeout")


def test_progress_counts_as_a_heartbeat() -> None:
    seen: list[int] = []

    def check(job: int, ctx: object) -> object:
        seen.append(job)
        return Succeeded({"after": len(seen)}) if len(seen) >= 30 else Running(progress=True)

    handlers = HandlerRegistry()
    handlers.register("job.sync", SyncJob(lambda p, c: 1, check, interval=0.05, max_interval=0.05))
    task = {"Type": "Task", "Resource": "job.sync", "HeartbeatSeconds": 1, "End": True}
    result = StateMachine.from_definition({"StartAt": "T", "States": {"T": task}}).run({}, handlers=handlers)
    assert (result.status, result.output) == ("SUCCEEDED", {"after": 30})


def test_nested_execution_without_a_repository_fails_clearly() -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": ARN + "A"},
        "End": True,
    }
    result = StateMachine.from_definition({"StartAt": "T", "States": {"T": task}}).run({})
    assert (result.status, result.error) == ("FAILED", "States.TaskFailed")
    assert "needs smq's repository" in (result.cause or "")
