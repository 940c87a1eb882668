"""Callback tasks (`.waitForTaskToken`) on real workers: the handler hands its token over (a file) and
the execution parks; `smq task success|failure` resumes it on a worker (the output in place, or the
failure through Catch), and a HeartbeatSeconds without heartbeats ends in States.HeartbeatTimeout
once `smq scheduler` fires the deadline."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smq import QueueClient, Repository
from smq.repository.waits import WaitStore
from tests.integration.distributed.harness import client_app, smq_here, wait_until
from tests.integration.waiting.support import (
    HANDLERS,
    Deployment,
    Scheduler,
    execution,
    history,
    local,
    run_smq_parallel,
    waits,
)

APPROVALS = "wt-approvals"
HEARTBEATS = "wt-heartbeats"


def _callback(**task: object) -> dict[str, object]:
    definition: dict[str, object] = {
        "StartAt": "Prep",
        "States": {
            "Prep": {"Type": "Pass", "Next": "Approve"},
            "Approve": {
                "Type": "Task",
                "Resource": "wt-token-out.waitForTaskToken",
                "Parameters": {
                    "token.$": "$$.Task.Token",
                    "token_file.$": "$.token_file",
                    "calls.$": "$.calls",
                },
                "ResultPath": "$.approval",
                "Next": "Done",
                **task,
            },
            "Done": {"Type": "Pass", "Parameters": {"id.$": "$.id", "approval.$": "$.approval"}, "End": True},
        },
    }
    if "Catch" in task:
        denied = {"Type": "Pass", "Parameters": {"id.$": "$.id", "denied.$": "$.denied"}, "End": True}
        definition["States"]["Denied"] = denied  # type: ignore[index]
    return definition


def _tokens(path: Path) -> list[str]:
    """The tokens a handler wrote; the one from Parameters and the one from its context must agree."""
    tokens = []
    for line in path.read_text().splitlines():
        from_parameters, from_context = line.split()
        assert from_parameters == from_context
        tokens.append(from_context)
    return tokens


@pytest.mark.timeout(120)
def test_callback_tokens_success_failure_and_heartbeat_timeout(
    deployment: Deployment, pg_repository: Repository, scheduler: Callable[..., Scheduler], tmp_path: Path
) -> None:
    db, env = deployment.db, deployment.env
    pg_repository.put_definition(
        APPROVALS,
        _callback(
            TimeoutSeconds=600,
            Catch=[{"ErrorEquals": ["Approval.Denied"], "ResultPath": "$.denied", "Next": "Denied"}],
        ),
    )
    pg_repository.put_definition(HEARTBEATS, _callback(TimeoutSeconds=600, HeartbeatSeconds=2))
    calls = tmp_path / "calls.txt"
    files = {name: tmp_path / f"{name}.token" for name in ("ok", "no", "hb")}
    app = client_app(deployment.broker_url)
    try:
        client = QueueClient(pg_repository, app)
        for machine, name in ((APPROVALS, "ok"), (APPROVALS, "no"), (HEARTBEATS, "hb")):
            payload = {"id": name, "token_file": str(files[name]), "calls": str(calls)}
            client.enqueue({"state_machine_id": machine, "name": name, "input": payload})
    finally:
        app.close()
    wait_until(
        lambda: db.count(APPROVALS, "WAITING") == 2 and db.count(HEARTBEATS, "WAITING") == 1,
        timeout=30,
        what="3 callback tasks parked",
        workers=deployment.workers,
        diagnose=lambda: f"{db.describe(APPROVALS)}\n{db.describe(HEARTBEATS)}",
    )
    rows = {name: execution(db, APPROVALS if name != "hb" else HEARTBEATS, name) for name in files}
    tokens = {name: _tokens(path) for name, path in files.items()}
    assert {name: len(found) for name, found in tokens.items()} == {"ok": 1, "no": 1, "hb": 1}
    for name, row in rows.items():
        [wait] = waits(db, row.id)
        assert (wait.kind, wait.status, wait.token) == ("callback", "WAITING", tokens[name][0])
        assert history(db, row.id) == [("Prep", "SUCCEEDED", None)]
    hb_wait = waits(db, rows["hb"].id)[0]
    assert hb_wait.heartbeat_seconds == 2
    assert timedelta(seconds=1) < hb_wait.due_at - hb_wait.created_at <= timedelta(seconds=2)

    # A heartbeat pushes the deadline out by HeartbeatSeconds from now.
    before = datetime.now(UTC)
    beat = smq_here(["task", "heartbeat", tokens["hb"][0], "--json"], local(env))
    due = datetime.fromisoformat(json.loads(beat.stdout)["due_at"])
    assert before + timedelta(seconds=2) <= due <= datetime.now(UTC) + timedelta(seconds=2)
    assert waits(db, rows["hb"].id)[0].due_at == due

    running = scheduler(env, wait=False)  # starts up while the two answers are sent
    run_smq_parallel(
        [
            (["task", "success", tokens["ok"][0], "--output", '{"approved": true, "by": "ops"}'], 0),
            (["task", "failure", tokens["no"][0], "--error", "Approval.Denied", "--cause", "over budget"], 0),
        ],
        env,
    )
    wait_until(
        lambda: db.finished(APPROVALS) == 2 and db.finished(HEARTBEATS) == 1,
        timeout=30,
        what="3 callbacks answered or timed out",
        workers=deployment.workers,
        diagnose=lambda: f"{db.describe(APPROVALS)}\n{db.describe(HEARTBEATS)}\n{running.log()[-2000:]}",
    )
    ok = execution(db, APPROVALS, "ok")
    assert (ok.status, ok.output) == ("SUCCEEDED", {"id": "ok", "approval": {"approved": True, "by": "ops"}})
    assert history(db, ok.id) == [
        ("Prep", "SUCCEEDED", None),
        ("Approve", "SUCCEEDED", None),
        ("Done", "SUCCEEDED", None),
    ]
    no = execution(db, APPROVALS, "no")
    assert (no.status, no.output) == (
        "SUCCEEDED",
        {"id": "no", "denied": {"Error": "Approval.Denied", "Cause": "over budget"}},
    )
    assert history(db, no.id) == [
        ("Prep", "SUCCEEDED", None),
        ("Approve", "CAUGHT", "Approval.Denied"),
        ("Denied", "SUCCEEDED", None),
    ]
    hb = execution(db, HEARTBEATS, "hb")
    assert (hb.status, hb.error) == ("FAILED", "States.HeartbeatTimeout")
    assert history(db, hb.id) == [
        ("Prep", "SUCCEEDED", None),
        ("Approve", "FAILED", "States.HeartbeatTimeout"),
    ]
    assert hb.stop_time >= due
    resolutions = {name: [(w.status, w.resolution) for w in waits(db, row.id)] for name, row in rows.items()}
    assert resolutions == {
        "ok": [("RESOLVED", "success")],
        "no": [("RESOLVED", "failure")],
        "hb": [("RESOLVED", "heartbeat_timeout")],
    }
    # Each handler ran once: answering a token never calls the task again.
    assert sorted(calls.read_text().splitlines()) == ["hb Approve 1", "no Approve 1", "ok Approve 1"]

    # A token is answered once; an unknown token is refused.
    again = smq_here(["task", "success", tokens["ok"][0]], local(env), expect=4)  # wrong state
    assert "no longer waited on" in again.stderr
    unknown = smq_here(["task", "failure", "not-a-token"], local(env), expect=3)  # not found
    assert "no execution waits on task token" in unknown.stderr
    late_beat = smq_here(["task", "heartbeat", tokens["hb"][0]], local(env), expect=4)
    assert "no longer waited on" in late_beat.stderr
    assert execution(db, APPROVALS, "ok").output == ok.output


# ------------------------------------------------------------------------------ in process, no workers


def _local_env(database_url: str) -> dict[str, str]:
    """No broker: `smq start` and `smq task ...` run the execution in this process."""
    return {"SMQ_DATABASE_URL": database_url, "SMQ_HANDLERS": str(HANDLERS)}


def _park_here(env: dict[str, str], machine: str, name: str, tmp_path: Path) -> tuple[str, str]:
    """Start `name` here; it parks on its callback. Returns (execution id, token)."""
    token_file = tmp_path / f"{name}.token"
    payload = {"id": name, "token_file": str(token_file), "calls": str(tmp_path / "calls.txt")}
    started = smq_here(
        ["start", machine, "--input", json.dumps(payload), "--name", name, "--json"], env, expect=1
    )
    body = json.loads(started.stdout)
    assert body["status"] == "WAITING"
    return body["execution_id"], _tokens(token_file)[0]


@pytest.mark.parametrize("output", ["[]", "0"])
def test_task_success_keeps_a_falsy_output(
    repository: Repository, database_url: str, tmp_path: Path, output: str
) -> None:
    env = _local_env(database_url)
    repository.put_definition(APPROVALS, _callback())
    execution_id, token = _park_here(env, APPROVALS, "falsy", tmp_path)
    answered = json.loads(smq_here(["task", "success", token, "--output", output, "--json"], env).stdout)
    assert answered["continuations"]["statuses"] == {"SUCCEEDED": 1}
    record = repository.get_execution(execution_id)
    assert record.output == {"id": "falsy", "approval": json.loads(output)}


def test_a_heartbeat_never_moves_a_wait_past_the_execution_deadline(
    repository: Repository, database_url: str, tmp_path: Path
) -> None:
    env = _local_env(database_url)
    repository.put_definition(HEARTBEATS, {**_callback(HeartbeatSeconds=30), "TimeoutSeconds": 3})
    execution_id, token = _park_here(env, HEARTBEATS, "beating", tmp_path)
    record = repository.get_execution(execution_id)
    deadline = record.start_time + timedelta(seconds=3)
    store = WaitStore(repository.engine)
    assert store.open_waits(execution_id)[0]["due_at"] == deadline  # parked: bounded by the deadline
    smq_here(["task", "heartbeat", token], env)
    assert store.open_waits(execution_id)[0]["due_at"] <= deadline
    # ...so the dispatcher wakes it at its deadline, and it ends TIMED_OUT.
    assert [w.execution_id for w in store.fire_due(now=deadline + timedelta(seconds=0.5))] == [execution_id]
