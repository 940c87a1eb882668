"""Nested workflows and `.sync` jobs on real workers (two Celery workers, one slot each, PostgreSQL,
`smq scheduler`): the four `states:startExecution` forms with AWS's shapes, a child's failure, parents
that wait for parked children without holding a worker (a third execution still runs meanwhile), the
links both ways in `smq executions show`, and `.sync` polling on durable timers with TimeoutSeconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smq import QueueClient, Repository
from tests.integration.distributed.harness import client_app, smq_here, wait_until
from tests.integration.waiting.support import Deployment, Scheduler, execution, local, run_smq_parallel, waits

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:"
CHILD, BROKEN, ASKER, TELLER, PLAIN = "wt-n-child", "wt-n-broken", "wt-n-asker", "wt-n-teller", "wt-n-plain"
PARENTS = {
    form: f"wt-n-parent-{form.replace(':', '')}" for form in ("sync:2", "sync", "async", "token", "fail")
}
JOBS = "wt-n-jobs"
TIMEOUTS = "wt-n-job-timeouts"


def _parent(resource: str, machine: str, child_input: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:" + resource,
                "Parameters": {"StateMachineArn": ARN + machine, "Input": child_input},
                "End": True,
            }
        },
    }


def _definitions(repository: Repository) -> None:
    double = {"Type": "Pass", "Parameters": {"twice.$": "States.MathAdd($.n, $.n)"}, "End": True}
    repository.put_definition(CHILD, {"StartAt": "Double", "States": {"Double": double}})
    repository.put_definition(
        BROKEN,
        {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Child.Broken", "Cause": "no"}}},
    )
    # A child that parks on its own callback (its token goes to `token_file`).
    ask = {
        "Type": "Task",
        "Resource": "wt-token-out.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token", "token_file.$": "$.token_file", "calls.$": "$.calls"},
        "End": True,
    }
    repository.put_definition(ASKER, {"StartAt": "Ask", "States": {"Ask": ask}})
    # A child that hands its parent's task token over (`.waitForTaskToken`), then ends.
    tell = {
        "Type": "Task",
        "Resource": "wt-token-out",
        "Parameters": {"token.$": "$.TaskToken", "token_file.$": "$.token_file", "calls.$": "$.calls"},
        "End": True,
    }
    repository.put_definition(TELLER, {"StartAt": "Tell", "States": {"Tell": tell}})
    repository.put_definition(PLAIN, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    n = {"n.$": "$.n", "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id"}
    repository.put_definition(PARENTS["sync:2"], _parent("startExecution.sync:2", CHILD, n))
    repository.put_definition(PARENTS["sync"], _parent("startExecution.sync", CHILD, n))
    repository.put_definition(PARENTS["async"], _parent("startExecution", CHILD, n))
    repository.put_definition(PARENTS["fail"], _parent("startExecution.sync:2", BROKEN, n))
    told = {"TaskToken.$": "$$.Task.Token", "token_file.$": "$.token_file", "calls.$": "$.calls"}
    repository.put_definition(PARENTS["token"], _parent("startExecution.waitForTaskToken", TELLER, told))
    asked = {"token_file.$": "$.token_file", "calls.$": "$.calls"}
    repository.put_definition("wt-n-waiter", _parent("startExecution.sync:2", ASKER, asked))


def _enqueue(deployment: Deployment, repository: Repository, items: list[tuple[str, str, Any]]) -> None:
    app = client_app(deployment.broker_url)
    try:
        client = QueueClient(repository, app)
        for machine, name, payload in items:
            client.enqueue({"state_machine_id": machine, "name": name, "input": payload})
    finally:
        app.close()


def _child_of(deployment: Deployment, parent_id: str) -> Any:
    [row] = deployment.db.rows("SELECT * FROM smq_child_links WHERE parent_execution_id = :p", p=parent_id)
    [child] = deployment.db.rows("SELECT * FROM smq_executions WHERE id = :c", c=row.child_execution_id)
    return child


def _first_words(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.timeout(180)
def test_nested_forms_on_workers(
    deployment: Deployment, pg_repository: Repository, scheduler: Callable[..., Scheduler], tmp_path: Path
) -> None:
    db, env = deployment.db, deployment.env
    _definitions(pg_repository)
    running = scheduler(env)
    calls = str(tmp_path / "calls.txt")
    told_file = tmp_path / "told.token"
    asked = {name: tmp_path / f"{name}.token" for name in ("w1", "w2")}
    _enqueue(
        deployment,
        pg_repository,
        [
            (PARENTS["sync:2"], "s2", {"n": 21}),
            (PARENTS["sync"], "s1", {"n": 2}),
            (PARENTS["async"], "a", {"n": 3}),
            (PARENTS["fail"], "f", {"n": 1}),
            (PARENTS["token"], "t", {"token_file": str(told_file), "calls": calls}),
            *(
                ("wt-n-waiter", name, {"token_file": str(path), "calls": calls})
                for name, path in asked.items()
            ),
        ],
    )
    finished = [PARENTS[form] for form in ("sync:2", "sync", "async", "fail")]
    wait_until(
        lambda: (
            all(db.finished(m) == 1 for m in finished)
            and db.count("wt-n-waiter", "WAITING") == 2
            and db.count(ASKER, "WAITING") == 2
            and len(_first_words(told_file)) == 1
        ),
        timeout=60,
        what="four parents ended, two parents and their children waiting, one token told",
        workers=deployment.workers,
        diagnose=lambda: (
            "\n".join(db.describe(m) for m in [*PARENTS.values(), "wt-n-waiter", ASKER])
            + running.log()[-2000:]
        ),
    )
    s2 = execution(db, PARENTS["sync:2"], "s2")
    assert s2.status == "SUCCEEDED", s2.cause
    assert s2.output["Output"] == {"twice": 42} and s2.output["Status"] == "SUCCEEDED"
    assert s2.output["Input"]["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"].endswith(
        f":{PARENTS['sync:2']}:s2"
    )
    child = _child_of(deployment, s2.id)
    assert (child.state_machine_id, child.status, child.name) == (CHILD, "SUCCEEDED", s2.output["Name"])
    assert child.queue == "default"  # the child ran on the workers, from the parent's queue
    s1 = execution(db, PARENTS["sync"], "s1")
    assert s1.status == "SUCCEEDED" and json.loads(s1.output["Output"]) == {"twice": 4}
    a = execution(db, PARENTS["async"], "a")
    assert a.status == "SUCCEEDED" and set(a.output) == {"ExecutionArn", "StartDate"}
    wait_until(lambda: _child_of(deployment, a.id).status == "SUCCEEDED", timeout=30, what="async child ran")
    f = execution(db, PARENTS["fail"], "f")
    assert (f.status, f.error) == ("FAILED", "States.TaskFailed")
    cause = json.loads(f.cause)
    assert (cause["Status"], cause["Error"], cause["Cause"]) == ("FAILED", "Child.Broken", "no")

    # Two parents wait for two parked children: no worker is held by any of the four, so a plain
    # execution still runs on the two one-slot workers.
    for name in asked:
        parent = execution(db, "wt-n-waiter", name)
        assert [w.kind for w in waits(db, parent.id) if w.status == "WAITING"] == ["timer"]
    _enqueue(deployment, pg_repository, [(PLAIN, "meanwhile", {})])
    wait_until(lambda: db.finished(PLAIN) == 1, timeout=30, what="a plain execution ran meanwhile")
    assert db.count("wt-n-waiter", "WAITING") == 2

    # The links both ways, as `smq executions show` prints them.
    waiter = execution(db, "wt-n-waiter", "w1")
    shown = json.loads(smq_here(["executions", "show", waiter.id, "--json"], local(env)).stdout)
    [kid] = shown["children"]
    assert (kid["state_machine_id"], kid["mode"], kid["parent_state_name"]) == (ASKER, "sync:2", "Call")
    back = json.loads(
        smq_here(["executions", "show", kid["child_execution_id"], "--json"], local(env)).stdout
    )
    assert back["parent"]["parent_execution_id"] == waiter.id

    # Answering the children's callbacks (and the parent's own token, told by its child) ends everything.
    tokens = [_first_words(path)[0] for path in asked.values()]
    run_smq_parallel(
        [
            *((["task", "success", token, "--output", '{"ok": true}'], 0) for token in tokens),
            (["task", "success", _first_words(told_file)[0], "--output", '{"told": 1}'], 0),
        ],
        env,
    )
    wait_until(
        lambda: db.finished("wt-n-waiter") == 2 and db.finished(PARENTS["token"]) == 1,
        timeout=60,
        what="waiting parents ended",
        workers=deployment.workers,
        diagnose=lambda: db.describe("wt-n-waiter") + db.describe(PARENTS["token"]) + running.log()[-2000:],
    )
    for name in asked:
        done = execution(db, "wt-n-waiter", name)
        assert done.status == "SUCCEEDED", done.cause
        assert done.output["Output"] == {"ok": True}
    t = execution(db, PARENTS["token"], "t")
    assert (t.status, t.output) == ("SUCCEEDED", {"told": 1})


@pytest.mark.timeout(120)
def test_sync_jobs_poll_on_timers_without_holding_a_worker(
    deployment: Deployment, pg_repository: Repository, scheduler: Callable[..., Scheduler], tmp_path: Path
) -> None:
    db, env = deployment.db, deployment.env
    job = {"Type": "Task", "Resource": "arn:aws:states:::wt-job.sync", "End": True}
    params = {"flag.$": "$.flag", "checks.$": "$.checks"}
    pg_repository.put_definition(JOBS, {"StartAt": "Run", "States": {"Run": {**job, "Parameters": params}}})
    pg_repository.put_definition(
        TIMEOUTS, {"StartAt": "Run", "States": {"Run": {**job, "Parameters": params, "TimeoutSeconds": 2}}}
    )
    pg_repository.put_definition(PLAIN, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    running = scheduler(env)
    flags = {name: tmp_path / f"{name}.flag" for name in ("j1", "j2", "late")}
    checks = tmp_path / "checks.txt"
    _enqueue(
        deployment,
        pg_repository,
        [
            (JOBS, "j1", {"flag": str(flags["j1"]), "checks": str(checks)}),
            (JOBS, "j2", {"flag": str(flags["j2"]), "checks": str(checks)}),
            (TIMEOUTS, "late", {"flag": str(flags["late"]), "checks": str(checks)}),
        ],
    )
    wait_until(
        lambda: db.count(JOBS, "WAITING") == 2 and db.finished(TIMEOUTS) == 1,
        timeout=30,
        what="two jobs waiting between checks, one timed out",
        workers=deployment.workers,
        diagnose=lambda: db.describe(JOBS) + db.describe(TIMEOUTS) + running.log()[-2000:],
    )
    late = execution(db, TIMEOUTS, "late")
    assert (late.status, late.error) == ("FAILED", "States.Timeout")
    assert (late.stop_time - late.start_time).total_seconds() >= 2
    # Both one-slot workers are free while the two jobs run: a plain execution goes through.
    _enqueue(deployment, pg_repository, [(PLAIN, "beside-jobs", {})])
    wait_until(lambda: db.finished(PLAIN) >= 1, timeout=30, what="a plain execution ran beside the jobs")
    wait_until(
        lambda: checks.exists() and sum("j1 check" in line for line in checks.read_text().splitlines()) >= 3,
        timeout=30,
        what="j1 checked again and again on timers",
    )
    flags["j1"].write_text("one")
    flags["j2"].write_text("two")
    wait_until(
        lambda: db.finished(JOBS) == 2,
        timeout=30,
        what="both jobs ended",
        workers=deployment.workers,
        diagnose=lambda: db.describe(JOBS) + running.log()[-2000:],
    )
    for name, text in (("j1", "one"), ("j2", "two")):
        row = execution(db, JOBS, name)
        assert (row.status, row.output) == ("SUCCEEDED", {"flag": text})
