"""Operator actions on real workers: `smq redrive` restarts a FAILED execution at the state that failed
(states that succeeded are not run again; `$$.Execution.RedriveCount` is 1), and `smq executions stop`
aborts a WAITING execution and cancels its wait, so a later message matches nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from smq import QueueClient, Repository
from smq.repository.tables import WAITS
from tests.integration.distributed.harness import client_app, run_smq, smq_here, wait_until
from tests.integration.waiting.support import (
    HANDLERS,
    Deployment,
    counting_step,
    execution,
    history,
    local,
    waits,
)

FLAKY = "wt-flaky"
HELD = "wt-held"
HOLD_KEY = "wt-hold"


FLAKY_DEFINITION = {
    "StartAt": "One",
    "States": {
        "One": counting_step("$.n", "$.one", "Two"),
        "Two": counting_step("$.one.n", "$.two", "Three"),
        "Three": {
            "Type": "Task",
            "Resource": "wt-fail-until-flag",
            "Parameters": {"flag.$": "$.flag", "calls.$": "$.calls"},
            "ResultPath": "$.three",
            "Next": "Report",
        },
        "Report": {
            "Type": "Pass",
            "Parameters": {
                "one.$": "$.one.n",
                "two.$": "$.two.n",
                "three.$": "$.three",
                "redrives.$": "$$.Execution.RedriveCount",
            },
            "End": True,
        },
    },
}
HELD_DEFINITION = {
    "StartAt": "Hold",
    "States": {
        "Hold": {
            "Type": "Message",
            "CorrelationKey": HOLD_KEY,
            "CorrelationValuePath": "$.ref",
            "ResultPath": "$.msg",
            "Next": "Go",
        },
        "Go": {"Type": "Pass", "Parameters": {"got.$": "$.msg"}, "End": True},
    },
}


def _enqueue(
    deployment: Deployment, repository: Repository, machine: str, name: str, payload: object
) -> None:
    app = client_app(deployment.broker_url)
    try:
        QueueClient(repository, app).enqueue({"state_machine_id": machine, "name": name, "input": payload})
    finally:
        app.close()


@pytest.mark.timeout(120)
def test_redrive_resumes_at_the_failed_state(
    deployment: Deployment, pg_repository: Repository, tmp_path: Path
) -> None:
    db, env = deployment.db, deployment.env
    pg_repository.put_definition(FLAKY, FLAKY_DEFINITION)
    calls, flag = tmp_path / "calls.txt", tmp_path / "fixed.flag"
    _enqueue(deployment, pg_repository, FLAKY, "rd-1", {"n": 3, "calls": str(calls), "flag": str(flag)})
    wait_until(
        lambda: db.finished(FLAKY) == 1, timeout=30, what="the first run to fail", workers=deployment.workers
    )
    failed = execution(db, FLAKY, "rd-1")
    assert (failed.status, failed.error, failed.current_state) == ("FAILED", "Flaky.NotYet", "Three")
    assert history(db, failed.id) == [
        ("One", "SUCCEEDED", None),
        ("Two", "SUCCEEDED", None),
        ("Three", "FAILED", "Flaky.NotYet"),
    ]
    refused = smq_here(["redrive", "nobody/none"], local(env), expect=3)
    assert "nobody/none" in refused.stderr

    flag.touch()
    done = run_smq(["redrive", f"{FLAKY}/rd-1", "--json"], env)
    assert json.loads(done.stdout)["continuations"]["enqueued"] == 1
    wait_until(
        lambda: db.count(FLAKY, "SUCCEEDED") == 1,
        timeout=30,
        what="the redriven execution to succeed",
        workers=deployment.workers,
        diagnose=lambda: db.describe(FLAKY),
    )
    row = execution(db, FLAKY, "rd-1")
    assert row.id == failed.id
    assert (row.output, row.error, row.cause) == (
        {"one": 6, "two": 12, "three": {"fixed": True}, "redrives": 1},
        None,
        None,
    )
    assert history(db, row.id) == [
        ("One", "SUCCEEDED", None),
        ("Two", "SUCCEEDED", None),
        ("Three", "FAILED", "Flaky.NotYet"),
        ("Three", "SUCCEEDED", None),
        ("Report", "SUCCEEDED", None),
    ]
    assert sorted(calls.read_text().splitlines()) == [
        "rd-1 One 1",
        "rd-1 Three 1",
        "rd-1 Three 1",
        "rd-1 Two 1",
    ]
    # A SUCCEEDED execution is not redriven.
    again = smq_here(["redrive", f"{FLAKY}/rd-1"], local(env), expect=4)
    assert "only FAILED, TIMED_OUT, ABORTED" in again.stderr


@pytest.mark.timeout(120)
def test_stop_aborts_a_waiting_execution_and_cancels_its_wait(
    deployment: Deployment, pg_repository: Repository
) -> None:
    db, env = deployment.db, deployment.env
    pg_repository.put_definition(HELD, HELD_DEFINITION)
    _enqueue(deployment, pg_repository, HELD, "held-1", {"ref": "h-1"})
    wait_until(
        lambda: db.count(HELD, "WAITING") == 1, timeout=30, what="held-1 parked", workers=deployment.workers
    )
    row = execution(db, HELD, "held-1")
    assert [(w.kind, w.status, json.loads(w.correlation_value)) for w in waits(db, row.id)] == [
        ("message", "WAITING", "h-1")
    ]

    stopped = smq_here(["executions", "stop", f"{HELD}/held-1", "--cause", "operator", "--json"], local(env))
    assert json.loads(stopped.stdout)["status"] == "ABORTED"
    row = execution(db, HELD, "held-1")
    assert (row.status, row.error, row.cause) == ("ABORTED", "States.Aborted", "operator")
    assert [(w.status, w.resolution) for w in waits(db, row.id)] == [("CANCELLED", "cancelled")]

    late = run_smq(["message", "send", "--key", HOLD_KEY, "--value", "h-1", "--json"], env, expect=1)
    assert json.loads(late.stdout)["resumed"] == []
    assert db.rows("SELECT resumed FROM smq_messages WHERE correlation_key = :k", k=HOLD_KEY)[0].resumed == []
    row = execution(db, HELD, "held-1")
    assert (row.status, history(db, row.id)) == ("ABORTED", [])
    # Stopping twice is refused with the status it is in.
    twice = smq_here(["executions", "stop", f"{HELD}/held-1"], local(env), expect=4)
    assert "is ABORTED" in twice.stderr


# ------------------------------------------------------------------------------ in process, no workers


def _stop_and_redrive(repository: Repository, database_url: str) -> tuple[dict[str, str], str]:
    """A Message execution parked here, stopped, then redriven: it parks again at the same state."""
    env = {"SMQ_DATABASE_URL": database_url, "SMQ_HANDLERS": str(HANDLERS)}
    repository.put_definition(HELD, HELD_DEFINITION)
    started = smq_here(
        ["start", HELD, "--input", '{"ref": "again"}', "--name", "again-1", "--json"], env, expect=1
    )
    execution_id = json.loads(started.stdout)["execution_id"]
    smq_here(["executions", "stop", execution_id], env)
    redriven = json.loads(smq_here(["redrive", execution_id, "--json"], env).stdout)
    assert redriven["status"] == "WAITING"
    return env, execution_id


def _waits_of(repository: Repository, execution_id: str) -> list[Any]:
    with repository.engine.connect() as connection:
        return list(connection.execute(select(WAITS).where(WAITS.c.execution_id == execution_id)))


def test_a_stopped_message_execution_redriven_waits_again(repository: Repository, database_url: str) -> None:
    env, execution_id = _stop_and_redrive(repository, database_url)
    [wait] = _waits_of(repository, execution_id)
    assert (wait.kind, wait.status, wait.correlation_value) == ("message", "WAITING", '"again"')
    assert repository.get_execution(execution_id).error is None
    sent = json.loads(
        smq_here(
            ["message", "send", "--key", HOLD_KEY, "--value", "again", "--data", "7", "--json"], env
        ).stdout
    )
    assert sent["resumed"] == [execution_id] and sent["continuations"]["statuses"] == {"SUCCEEDED": 1}
    record = repository.get_execution(execution_id)
    assert (record.status, record.output) == ("SUCCEEDED", {"got": 7})
    assert [(h.state_name, h.status) for h in repository.history(execution_id)] == [
        ("Hold", "SUCCEEDED"),
        ("Go", "SUCCEEDED"),
    ]
    [wait] = _waits_of(repository, execution_id)
    assert (wait.status, wait.resolution) == ("RESOLVED", "message")


def test_a_wait_parked_again_forgets_its_earlier_resolution(
    repository: Repository, database_url: str
) -> None:
    _env, execution_id = _stop_and_redrive(repository, database_url)
    [wait] = _waits_of(repository, execution_id)
    assert (wait.status, wait.resolution, wait.resolved_at) == ("WAITING", None, None)
