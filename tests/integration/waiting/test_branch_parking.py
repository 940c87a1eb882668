"""A Map whose iterations wait parks as a whole instead of holding the worker slot.

One worker with one process (-c 1) and SMQ_PARK_AFTER=1: every iteration runs its first Task, then
waits 6 s; the Map state parks with each iteration's progress and a timer due when the first is. A
quick workflow runs meanwhile on that single slot. Once the timer is due, `fire` wakes the execution
and the worker finishes every iteration from its own checkpoint: each Task ran exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smq import QueueClient, Repository
from tests.integration.distributed.harness import Db, RedisServer, Worker, client_app, wait_until
from tests.integration.waiting.support import (
    Deployment,
    counting_step,
    execution,
    run_smq_parallel,
    run_tool,
    waiting_env,
    waits,
)


def _last(state: dict[str, Any]) -> dict[str, Any]:
    """A counting step that ends its (sub-)machine."""
    return {**{key: value for key, value in state.items() if key != "Next"}, "End": True}


EACH = "wt-map-waits"
QUICK = "wt-map-quick"
EACH_DEFINITION = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"n.$": "$$.Map.Item.Value", "calls.$": "$.calls"},
            "ItemProcessor": {
                "StartAt": "Before",
                "States": {
                    "Before": counting_step("$.n", "$.before", "Nap"),
                    "Nap": {"Type": "Wait", "Seconds": 6, "Next": "After"},
                    "After": _last(counting_step("$.before.n", "$.after", None)),
                },
            },
            "ResultSelector": {"doubled_twice.$": "$[*].after.n"},
            "End": True,
        }
    },
}
QUICK_DEFINITION = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}


def _enqueue(repository: Repository, broker_url: str, machine: str, name: str, data: object) -> None:
    app = client_app(broker_url)
    try:
        QueueClient(repository, app).enqueue({"state_machine_id": machine, "name": name, "input": data})
    finally:
        app.close()


def _branch_history(db: Db, execution_id: str) -> list[tuple[str, str, str]]:
    return [
        (row.scope, row.state_name, row.status)
        for row in db.rows(
            "SELECT scope, state_name, status FROM smq_history WHERE execution_id = :e ORDER BY scope, sequence",
            e=execution_id,
        )
    ]


@pytest.mark.timeout(120)
def test_a_map_of_waiting_iterations_parks_and_finishes_each_from_its_checkpoint(
    pg: Db,
    pg_repository: Repository,
    private_broker: RedisServer,
    spawn: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    env = waiting_env(pg.url, private_broker.url, SMQ_PARK_AFTER="1")
    pg_repository.put_definition(EACH, EACH_DEFINITION)
    pg_repository.put_definition(QUICK, QUICK_DEFINITION)
    worker = spawn("single", env, concurrency=1)
    calls = tmp_path / "calls.txt"

    _enqueue(pg_repository, private_broker.url, EACH, "each-1", {"items": [1, 2, 3], "calls": str(calls)})
    wait_until(lambda: pg.count(EACH, "WAITING") == 1, timeout=20, what="each-1 parked", workers=[worker])
    parked = execution(pg, EACH, "each-1")
    [timer] = waits(pg, parked.id)
    assert (timer.kind, timer.status) == ("timer", "WAITING")
    assert parked.current_state == "Each" and parked.cursor["pending"]["kind"] == "fanout"
    assert sorted(calls.read_text().split("\n")[:-1]) == ["each-1 Before 1"] * 3
    before_park = _branch_history(pg, parked.id)
    assert before_park == [(f"Each[{i}]", "Before", "SUCCEEDED") for i in range(3)]

    # The single slot is free: a workflow enqueued now runs while each-1 waits.
    _enqueue(pg_repository, private_broker.url, QUICK, "quick-1", {})
    wait_until(lambda: pg.finished(QUICK) == 1, timeout=15, what="quick-1 to finish", workers=[worker])
    assert execution(pg, EACH, "each-1").status == "WAITING"

    wait_until(lambda: time.time() > timer.due_at.timestamp(), timeout=15, what="each-1's timer to be due")
    fired = run_tool(["fire", str(time.time())], env)
    assert fired["woken"] == [{"execution_id": parked.id, "resolution": "timer"}]
    wait_until(
        lambda: pg.finished(EACH) == 1,
        timeout=30,
        what="each-1 to finish",
        workers=[worker],
        diagnose=lambda: pg.describe(EACH),
    )
    done = execution(pg, EACH, "each-1")
    assert (done.status, done.output) == ("SUCCEEDED", {"doubled_twice": [4, 8, 12]})
    lines = calls.read_text().split("\n")[:-1]
    assert sorted(lines) == ["each-1 After 1"] * 3 + ["each-1 Before 1"] * 3  # every Task once
    assert _branch_history(pg, done.id) == [("", "Each", "SUCCEEDED")] + [
        (f"Each[{i}]", state, "SUCCEEDED") for i in range(3) for state in ("Before", "Nap", "After")
    ]


APPROVE_EACH = "wt-map-approvals"
APPROVE_EACH_DEFINITION = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"id.$": "$$.Map.Item.Value", "dir.$": "$.dir", "calls.$": "$.calls"},
            "ItemProcessor": {
                "StartAt": "Approve",
                "States": {
                    "Approve": {
                        "Type": "Task",
                        "Resource": "wt-token-out.waitForTaskToken",
                        "Parameters": {
                            "token.$": "$$.Task.Token",
                            "token_file.$": "States.Format('{}/{}.token', $.dir, $.id)",
                            "calls.$": "$.calls",
                        },
                        "ResultPath": "$.approval",
                        "End": True,
                    }
                },
            },
            "ResultSelector": {"approvals.$": "$[*].approval.by"},
            "End": True,
        }
    },
}


@pytest.mark.timeout(120)
def test_a_callback_task_per_map_iteration_answered_all_at_once(
    deployment: Deployment, pg_repository: Repository, tmp_path: Path
) -> None:
    """Three iterations park on three tokens; the three answers race (separate `smq task success`
    processes, continuations on two workers): each iteration ends once, with its own answer."""
    db, env = deployment.db, deployment.env
    pg_repository.put_definition(APPROVE_EACH, APPROVE_EACH_DEFINITION)
    calls = tmp_path / "calls.txt"
    data = {"items": ["a", "b", "c"], "dir": str(tmp_path), "calls": str(calls)}
    _enqueue(pg_repository, deployment.broker_url, APPROVE_EACH, "approve-1", data)
    wait_until(
        lambda: db.count(APPROVE_EACH, "WAITING") == 1,
        timeout=30,
        what="the Map parked on three tokens",
        workers=deployment.workers,
        diagnose=lambda: db.describe(APPROVE_EACH),
    )
    parked = execution(db, APPROVE_EACH, "approve-1")
    assert sorted((w.branch, w.kind) for w in waits(db, parked.id)) == [
        ("0", "callback"),
        ("1", "callback"),
        ("2", "callback"),
    ]
    tokens = {item: (tmp_path / f"{item}.token").read_text().split()[1] for item in "abc"}
    run_smq_parallel(
        [(["task", "success", tokens[item], "--output", json.dumps({"by": item})], 0) for item in "abc"], env
    )
    wait_until(
        lambda: db.finished(APPROVE_EACH) == 1,
        timeout=30,
        what="every approval taken",
        workers=deployment.workers,
        diagnose=lambda: db.describe(APPROVE_EACH),
    )
    done = execution(db, APPROVE_EACH, "approve-1")
    assert (done.status, done.output) == ("SUCCEEDED", {"approvals": ["a", "b", "c"]})
    assert sorted(calls.read_text().splitlines()) == ["approve-1 Approve 1"] * 3  # each task once
    assert [w.status for w in waits(db, parked.id) if w.status in ("WAITING", "HELD")] == []
