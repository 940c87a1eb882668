"""Nested workflows run in this process over a real repository (SQLite and PostgreSQL): the four
`states:startExecution` forms with AWS's result shapes, a child's failure as AWS surfaces it, the links
both ways, a child that parks (the parent waits on a timer, woken when the child ends), and `.sync`
jobs of any resource checked on durable timers with TimeoutSeconds honoured."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from smq import HandlerRegistry, Repository, SyncJob
from smq.engine.sync import Running, Succeeded
from smq.execution.operations import Operations
from smq.execution.runner import StartRequest, start_execution
from smq.repository.child_links import children_of, parent_of
from smq.repository.waits import WaitStore
from smq.settings import Settings

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:"

CHILD = {
    "StartAt": "Double",
    "States": {
        "Double": {"Type": "Pass", "Parameters": {"twice.$": "States.MathAdd($.n, $.n)"}, "End": True}
    },
}
FAILING_CHILD = {
    "StartAt": "Boom",
    "States": {"Boom": {"Type": "Fail", "Error": "Child.Broken", "Cause": "it broke"}},
}
TOKEN_CHILD = {  # parks on a callback; its token is the parent's too when started .waitForTaskToken
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "nested-ask.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"},
            "End": True,
        }
    },
}


def _parent(resource: str, machine: str, **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": resource,
                "Parameters": {
                    "StateMachineArn": ARN + machine,
                    "Input": {
                        "n.$": "$.n",
                        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
                    },
                    **extra.pop("parameters", {}),
                },
                "End": True,
                **extra,
            }
        },
    }


def _run(
    repository: Repository,
    machine: str,
    payload: Any,
    handlers: HandlerRegistry | None = None,
    **options: Any,
):
    return start_execution(
        repository, StartRequest(machine, payload), handlers=handlers or HandlerRegistry(), **options
    )


@pytest.fixture
def handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("nested-ask", lambda payload: None)
    return registry


def test_sync2_gives_describe_execution_with_json_output(repository: Repository) -> None:
    repository.put_definition("child", CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync:2", "child"))
    record = _run(repository, "parent", {"n": 21})
    assert record.status == "SUCCEEDED", record.cause
    out = record.output
    assert out["Status"] == "SUCCEEDED"
    assert out["Output"] == {"twice": 42}
    assert out["Input"]["n"] == 21
    assert out["Input"]["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"].endswith(
        ":execution:parent:" + record.name
    )
    assert out["StateMachineArn"] == "arn:aws:states:us-east-1:000000000000:stateMachine:child"
    assert out["ExecutionArn"] == f"arn:aws:states:us-east-1:000000000000:execution:child:{out['Name']}"
    assert isinstance(out["StartDate"], int) and out["StopDate"] >= out["StartDate"]
    [link] = children_of(repository.engine, record.execution_id)
    assert (link.parent_state_name, link.mode, link.status, link.state_machine_id) == (
        "Call",
        "sync:2",
        "SUCCEEDED",
        "child",
    )
    child = repository.get_execution(link.child_execution_id)
    assert child.name == out["Name"]
    back = parent_of(repository.engine, child.execution_id)
    assert back is not None and back.parent_execution_id == record.execution_id and back.name == record.name


def test_sync_gives_output_as_json_text_and_name(repository: Repository) -> None:
    repository.put_definition("child", CHILD)
    definition = _parent("arn:aws:states:::states:startExecution.sync", "child", parameters={"Name": "kid-1"})
    repository.put_definition("parent", definition)
    record = _run(repository, "parent", {"n": 2})
    assert record.status == "SUCCEEDED", record.cause
    assert record.output["Name"] == "kid-1"
    assert json.loads(record.output["Output"]) == {"twice": 4}
    assert json.loads(record.output["Input"])["n"] == 2
    assert repository.find_execution("child", "kid-1") is not None


def test_start_and_go_on_returns_arn_and_start_date(repository: Repository) -> None:
    repository.put_definition("child", CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution", "child"))
    record = _run(repository, "parent", {"n": 1})
    assert record.status == "SUCCEEDED", record.cause
    assert set(record.output) == {"ExecutionArn", "StartDate"}
    [link] = children_of(repository.engine, record.execution_id)
    assert link.mode == "async"
    assert record.output["ExecutionArn"].endswith(":execution:child:" + link.name)


def test_child_failure_is_task_failed_with_describe_execution_cause(repository: Repository) -> None:
    repository.put_definition("broken", FAILING_CHILD)
    definition = _parent(
        "arn:aws:states:::states:startExecution.sync:2",
        "broken",
        Catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}],
    )
    definition["States"]["Call"].pop("End")
    definition["States"]["Call"]["Next"] = "Caught"
    definition["States"]["Caught"] = {"Type": "Pass", "End": True}
    repository.put_definition("parent", definition)
    record = _run(repository, "parent", {"n": 1})
    assert record.status == "SUCCEEDED"
    assert record.output["Error"] == "States.TaskFailed"
    cause = json.loads(record.output["Cause"])
    assert (cause["Status"], cause["Error"], cause["Cause"]) == ("FAILED", "Child.Broken", "it broke")
    assert isinstance(cause["Input"], str) and "Output" not in cause


def test_unknown_state_machine_fails_naming_the_arn(repository: Repository) -> None:
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync", "nowhere"))
    record = _run(repository, "parent", {"n": 1})
    assert record.status == "FAILED"
    assert record.error == "StepFunctions.StateMachineDoesNotExistException"
    assert ARN + "nowhere" in (record.cause or "")


def test_arn_mapping_setting_wins_over_the_last_segment(repository: Repository) -> None:
    repository.put_definition("real-child", CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync:2", "AwsName"))
    record = _run(repository, "parent", {"n": 5}, state_machine_arns={ARN + "AwsName": "real-child"})
    assert record.status == "SUCCEEDED", record.cause
    assert record.output["Output"] == {"twice": 10}


def test_wait_for_task_token_child_answers_the_parent(
    repository: Repository, handlers: HandlerRegistry
) -> None:
    repository.put_definition("asker", TOKEN_CHILD)
    definition = _parent("arn:aws:states:::states:startExecution.waitForTaskToken", "asker")
    definition["States"]["Call"]["Parameters"]["Input"] = {"TaskToken.$": "$$.Task.Token"}
    repository.put_definition("parent", definition)
    record = _run(repository, "parent", {"n": 1}, handlers=handlers, park_after=0)
    assert record.status == "WAITING"
    [link] = children_of(repository.engine, record.execution_id)
    child = repository.get_execution(link.child_execution_id)
    assert child.status == "WAITING"
    parent_token = child.input["TaskToken"]
    ops = Operations(repository, Settings(), handlers=handlers)
    ops.task_success(parent_token, {"approved": True})
    assert repository.get_execution(record.execution_id).output == {"approved": True}


def test_sync_parent_parks_while_child_waits_and_goes_on_when_it_ends(
    repository: Repository, handlers: HandlerRegistry
) -> None:
    repository.put_definition("asker", TOKEN_CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync:2", "asker"))
    record = _run(repository, "parent", {"n": 1}, handlers=handlers, park_after=0)
    assert record.status == "WAITING"
    [timer] = [w for w in WaitStore(repository.engine).waiting_for(record.execution_id)]
    assert timer["kind"] == "timer"
    [link] = children_of(repository.engine, record.execution_id)
    child = repository.get_execution(link.child_execution_id)
    [wait] = WaitStore(repository.engine).waiting_for(child.execution_id)
    ops = Operations(repository, Settings(), handlers=handlers)
    ops.task_success(wait["token"], {"ok": 1})
    # The child's end fired the parent's timer at once and ran it here (no scheduler).
    parent = repository.get_execution(record.execution_id)
    assert parent.status == "SUCCEEDED", parent.cause
    assert parent.output["Output"] == {"ok": 1}


def test_stopping_a_child_fails_the_waiting_parent_as_aborted(
    repository: Repository, handlers: HandlerRegistry
) -> None:
    repository.put_definition("asker", TOKEN_CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync", "asker"))
    record = _run(repository, "parent", {"n": 1}, handlers=handlers, park_after=0)
    [link] = children_of(repository.engine, record.execution_id)
    Operations(repository, Settings(), handlers=handlers).stop(link.child_execution_id, cause="no")
    parent = repository.get_execution(record.execution_id)
    assert parent.status == "FAILED"
    assert parent.error == "States.TaskFailed"
    assert json.loads(parent.cause or "{}")["Status"] == "ABORTED"


def test_sync_job_of_any_resource_parks_between_checks(repository: Repository) -> None:
    checks: list[float] = []

    def check(job: Any, ctx: Any) -> Any:
        checks.append(time.time())
        return Succeeded({"job": job, "checks": len(checks)}) if len(checks) >= 3 else Running()

    handlers = HandlerRegistry()
    handlers.register(
        "batch:submitJob.sync", SyncJob(lambda payload, ctx: {"id": payload["n"]}, check, interval=0.05)
    )
    repository.put_definition(
        "batchy",
        {
            "StartAt": "Run",
            "States": {
                "Run": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::batch:submitJob.sync",
                    "Parameters": {"n.$": "$.n"},
                    "TimeoutSeconds": 60,
                    "End": True,
                }
            },
        },
    )
    # On a worker (park_after set) each check parks on a timer: the run returns WAITING, not sleeping.
    record = _run(repository, "batchy", {"n": 7}, handlers=handlers, park_after=5)
    assert record.status == "WAITING" and len(checks) == 0
    waits = WaitStore(repository.engine)
    for _ in range(20):
        due = waits.fire_due(now=None)
        for woken in due:
            from smq.execution.runner import resume_execution

            resume_execution(
                repository, repository.get_execution(woken.execution_id), handlers=handlers, park_after=5
            )
        if repository.get_execution(record.execution_id).finished:
            break
        time.sleep(0.05)
    final = repository.get_execution(record.execution_id)
    assert final.status == "SUCCEEDED", final.cause
    assert final.output == {"job": {"id": 7}, "checks": 3}


def test_sync_job_timeout_is_states_timeout(repository: Repository) -> None:
    cancelled: list[Any] = []
    handlers = HandlerRegistry()
    handlers.register(
        "glue:startJobRun.sync",
        SyncJob(
            lambda payload, ctx: "run-1",
            lambda job, ctx: Running(),
            interval=0.2,
            cancel_fn=lambda job, ctx: cancelled.append(job),
        ),
    )
    repository.put_definition(
        "gluey",
        {
            "StartAt": "Run",
            "States": {
                "Run": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::glue:startJobRun.sync",
                    "TimeoutSeconds": 1,
                    "End": True,
                }
            },
        },
    )
    started = time.monotonic()
    record = _run(repository, "gluey", {}, handlers=handlers)
    assert record.status == "FAILED"
    assert record.error == "States.Timeout"
    assert time.monotonic() - started >= 1.0
    assert cancelled == ["run-1"]


def test_console_and_cli_show_parent_and_children(repository: Repository, database_url: str) -> None:
    from starlette.testclient import TestClient

    from smq.execution.continuation import LocalLauncher
    from smq.web.app import create_app
    from smq.web.config import WebConfig
    from tests.integration.distributed.harness import smq_here

    repository.put_definition("child", CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync:2", "child"))
    record = _run(repository, "parent", {"n": 1})
    [link] = children_of(repository.engine, record.execution_id)
    settings = Settings(database_url="unused")
    app = create_app(repository, settings, WebConfig(users={}), launcher=LocalLauncher(repository, settings))
    client = TestClient(app, base_url="http://127.0.0.1")
    page = client.get(f"/executions/{record.execution_id}").text
    assert f'href="/executions/{link.child_execution_id}">child/{link.name}</a> from Call (sync:2)' in page
    back = client.get(f"/executions/{link.child_execution_id}").text
    assert (
        f'started by <a href="/executions/{record.execution_id}">parent/{record.name}</a> (state Call, sync:2)'
        in back
    )
    shown = smq_here(["executions", "show", record.execution_id], {"SMQ_DATABASE_URL": database_url}).stdout
    assert f"child        child/{link.name} ({link.child_execution_id}) SUCCEEDED, from Call, sync:2" in shown
    shown = smq_here(
        ["executions", "show", link.child_execution_id], {"SMQ_DATABASE_URL": database_url}
    ).stdout
    assert f"parent       parent/{record.name} ({record.execution_id}), state Call, sync:2" in shown


def test_retention_deletes_the_links_with_their_executions(repository: Repository) -> None:
    from smq.repository.retention import Retention

    repository.put_definition("child", CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync:2", "child"))
    record = _run(repository, "parent", {"n": 1})
    deleted = Retention(repository.engine).delete_executions([record.execution_id])
    assert deleted.child_links == 1
    assert children_of(repository.engine, record.execution_id) == []


def test_map_iterations_each_wait_for_their_parked_child(
    repository: Repository, handlers: HandlerRegistry
) -> None:
    repository.put_definition("asker", TOKEN_CHILD)
    call = _parent("arn:aws:states:::states:startExecution.sync:2", "asker")["States"]["Call"]
    call["Parameters"]["Input"] = {"n.$": "$"}
    call["ResultSelector"] = {"answer.$": "$.Output"}
    repository.put_definition(
        "fan",
        {
            "StartAt": "Each",
            "States": {
                "Each": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": {"StartAt": "Call", "States": {"Call": call}},
                    "End": True,
                }
            },
        },
    )
    record = _run(repository, "fan", {"items": [1, 2, 3]}, handlers=handlers, park_after=0)
    assert record.status == "WAITING"
    links = children_of(repository.engine, record.execution_id)
    assert len(links) == 3 and {link.status for link in links} == {"WAITING"}
    ops = Operations(repository, Settings(), handlers=handlers)
    waits = WaitStore(repository.engine)
    for link in links:
        [wait] = waits.waiting_for(link.child_execution_id)
        child = repository.get_execution(link.child_execution_id)
        ops.task_success(wait["token"], {"item": child.input["n"]})
    final = repository.get_execution(record.execution_id)
    assert final.status == "SUCCEEDED", final.cause
    assert final.output == [{"answer": {"item": n}} for n in (1, 2, 3)]


def test_stopping_a_parent_stops_the_child_its_sync_task_waits_for(
    repository: Repository, handlers: HandlerRegistry
) -> None:
    repository.put_definition("asker", TOKEN_CHILD)
    repository.put_definition("parent", _parent("arn:aws:states:::states:startExecution.sync:2", "asker"))
    repository.put_definition("fire", _parent("arn:aws:states:::states:startExecution", "asker"))
    record = _run(repository, "parent", {"n": 1}, handlers=handlers, park_after=0)
    forgotten = _run(repository, "fire", {"n": 1}, handlers=handlers, park_after=0)
    ops = Operations(repository, Settings(), handlers=handlers)
    ops.stop(record.execution_id, cause="enough")
    [link] = children_of(repository.engine, record.execution_id)
    assert (link.status, repository.get_execution(link.child_execution_id).cause) == (
        "ABORTED",
        f"its parent parent/{record.name} was stopped",
    )
    # A child started and left (startExecution alone) lives on.
    [free] = children_of(repository.engine, forgotten.execution_id)
    assert free.status == "WAITING"


def test_a_child_ending_never_cuts_short_another_timer_of_its_parent(
    repository: Repository, handlers: HandlerRegistry
) -> None:
    repository.put_definition("asker", TOKEN_CHILD)
    definition = _parent("arn:aws:states:::states:startExecution", "asker")
    definition["States"]["Call"].pop("End")
    definition["States"]["Call"]["Next"] = "Nap"
    definition["States"]["Nap"] = {"Type": "Wait", "Seconds": 3600, "End": True}
    repository.put_definition("napper", definition)
    record = _run(repository, "napper", {"n": 1}, handlers=handlers, park_after=0)
    assert record.status == "WAITING"
    [link] = children_of(repository.engine, record.execution_id)
    [wait] = WaitStore(repository.engine).waiting_for(link.child_execution_id)
    before = repository.get_execution(record.execution_id).updated_at
    Operations(repository, Settings(), handlers=handlers).task_success(wait["token"], {})
    assert repository.get_execution(link.child_execution_id).status == "SUCCEEDED"
    parent = repository.get_execution(record.execution_id)
    # Not woken at all (a woken parent would have been written, then parked again).
    assert (parent.status, parent.current_state, parent.updated_at) == ("WAITING", "Nap", before)
    [timer] = WaitStore(repository.engine).waiting_for(record.execution_id)
    assert timer["kind"] == "timer"


def test_a_live_child_is_its_sync_tasks_heartbeat(repository: Repository, handlers: HandlerRegistry) -> None:
    """HeartbeatSeconds bounds a job's silence; a child that is still running or waiting is alive, so
    its parent's `.sync` Task outlasts HeartbeatSeconds and ends with the child."""
    from smq.execution.runner import resume_execution

    repository.put_definition("asker", TOKEN_CHILD)
    repository.put_definition(
        "parent", _parent("arn:aws:states:::states:startExecution.sync:2", "asker", HeartbeatSeconds=1)
    )
    record = _run(repository, "parent", {"n": 1}, handlers=handlers, park_after=0)
    assert record.status == "WAITING"
    waits = WaitStore(repository.engine)
    checked = 0
    deadline = time.monotonic() + 4.0  # the checks come at 1 s, 2 s: past HeartbeatSeconds
    while time.monotonic() < deadline:
        for woken in waits.fire_due(now=None):
            resume_execution(
                repository, repository.get_execution(woken.execution_id), handlers=handlers, park_after=0
            )
            checked += 1
        time.sleep(0.1)
    parent = repository.get_execution(record.execution_id)
    assert checked >= 2 and parent.status == "WAITING", (checked, parent.status, parent.error)
    [link] = children_of(repository.engine, record.execution_id)
    [wait] = waits.waiting_for(link.child_execution_id)
    Operations(repository, Settings(), handlers=handlers).task_success(wait["token"], {"ok": 2})
    done = repository.get_execution(record.execution_id)
    assert done.status == "SUCCEEDED", done.cause
    assert done.output["Output"] == {"ok": 2}
