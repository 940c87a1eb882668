"""Crash recovery on real workers: a worker SIGKILLed (its whole process group) while a six-state
execution is in its slow state 4 is brought back by `smq recover` once its lease (SMQ_LEASE_SECONDS=3)
has expired, not by a redelivery (the visibility timeout is 60 s), and finishes on a new worker: states
1-3 recorded once, the output equal to an uninterrupted run's. A healthy run that stays in state 4
for twice the lease keeps renewing it: a scan during it recovers nothing.

The workers run on a private redis-server, so the shared workers never see these tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from smq import QueueClient, Repository
from smq.execution.recovery import scan
from tests.integration.distributed.harness import (
    Db,
    RedisServer,
    Worker,
    client_app,
    run_smq,
    smq_here,
    wait_until,
)
from tests.integration.waiting.support import execution, history, local, waiting_env

LINEAR = "wt-linear"
STATES = ["S1", "S2", "S3", "S4", "S5", "S6"]
LEASE = 3.0


def _step(source: str, nxt: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "wt-step",
        "Parameters": {"n.$": f"{source}.n", "acc.$": f"{source}.acc", "calls.$": "$.calls"},
        "ResultPath": "$.s",
        "Next": nxt,
    }


LINEAR_DEFINITION = {
    "StartAt": "S0",
    "States": {
        # S0 shapes the input so that every step reads $.s (not part of the six states under test).
        "S0": {"Type": "Pass", "Parameters": {"n.$": "$.n", "acc": []}, "ResultPath": "$.s", "Next": "S1"},
        "S1": _step("$.s", "S2"),
        "S2": _step("$.s", "S3"),
        "S3": _step("$.s", "S4"),
        "S4": {
            "Type": "Task",
            "Resource": "wt-slow",
            "Parameters": {
                "started.$": "$.started",
                "flag.$": "$.flag",
                "seconds.$": "$.seconds",
                "n.$": "$.s.n",
                "calls.$": "$.calls",
            },
            "ResultPath": "$.slow",
            "Next": "S5",
        },
        "S5": _step("$.s", "S6"),
        "S6": {
            "Type": "Pass",
            "Parameters": {"n.$": "$.s.n", "acc.$": "$.s.acc", "slow.$": "$.slow"},
            "End": True,
        },
    },
}


def _input(tmp: Path, label: str, seconds: float) -> dict[str, Any]:
    return {
        "n": 3,
        "seconds": seconds,
        "started": str(tmp / f"{label}.started"),
        "flag": str(tmp / f"{label}.flag"),
        "calls": str(tmp / "calls.txt"),
    }


def _enqueue(repository: Repository, broker_url: str, name: str, payload: dict[str, Any]) -> None:
    app = client_app(broker_url)
    try:
        QueueClient(repository, app).enqueue({"state_machine_id": LINEAR, "name": name, "input": payload})
    finally:
        app.close()


def _calls(tmp: Path, name: str) -> list[str]:
    return [
        line.split()[1] for line in (tmp / "calls.txt").read_text().splitlines() if line.split()[0] == name
    ]


def _in_state_4(db: Db, name: str, started: str) -> Callable[[], bool]:
    def check() -> bool:
        rows = db.rows(
            "SELECT current_state, lease_owner FROM smq_executions WHERE state_machine_id = :m AND name = :n",
            m=LINEAR,
            n=name,
        )
        return (
            bool(rows)
            and rows[0].current_state == "S4"
            and rows[0].lease_owner is not None
            and Path(started).exists()
        )

    return check


@pytest.mark.timeout(150)
def test_a_killed_worker_is_recovered_by_its_expired_lease(
    pg: Db,
    pg_repository: Repository,
    private_broker: RedisServer,
    spawn: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    env = waiting_env(
        pg.url,
        private_broker.url,
        SMQ_LEASE_SECONDS=str(LEASE),
        SMQ_VISIBILITY_TIMEOUT="60",
        SMQ_HARD_TIME_LIMIT="50",
        SMQ_SOFT_TIME_LIMIT="40",
    )
    pg_repository.put_definition(LINEAR, LINEAR_DEFINITION)
    first = spawn("doomed", env, concurrency=1)
    crashed = _input(tmp_path, "crash", seconds=40)
    _enqueue(pg_repository, private_broker.url, "crash-1", crashed)
    wait_until(
        _in_state_4(pg, "crash-1", crashed["started"]),
        timeout=30,
        what="crash-1 in state 4 with its lease held",
        workers=[first],
    )
    first.kill_group()
    assert not first.alive()
    row = execution(pg, "wt-linear", "crash-1")
    assert (row.status, row.current_state) == ("RUNNING", "S4")
    assert row.lease_owner.endswith(f":{Path(crashed['started']).read_text()}")  # the killed pool process
    assert [state for state, _, _ in history(pg, row.id)] == ["S0", "S1", "S2", "S3"]
    Path(crashed["flag"]).touch()  # state 4, run again, now returns at once

    second = spawn("rescuer", env, concurrency=1, ready=False)
    wait_until(
        lambda: execution(pg, LINEAR, "crash-1").lease_expires_at < datetime.now(UTC),
        timeout=LEASE + 5,
        what="crash-1's lease to expire",
    )
    second.wait_ready()
    dry = json.loads(smq_here(["recover", "--dry-run", "--json"], local(env)).stdout)
    assert [(r["execution_id"], r["action"], r["state"]) for r in dry["recovered"]] == [
        (row.id, "would-recover", "S4")
    ]
    recovered = json.loads(run_smq(["recover", "--json"], env).stdout)
    assert [(r["execution_id"], r["action"], r["state"], r["attempt"]) for r in recovered["recovered"]] == [
        (row.id, "resume", "S4", 1)
    ]
    assert recovered["continuations"]["enqueued"] == 1
    wait_until(lambda: pg.finished(LINEAR) == 1, timeout=30, what="crash-1 to finish", workers=[second])
    done = execution(pg, LINEAR, "crash-1")
    assert (done.status, done.recovery_attempts) == ("SUCCEEDED", 1)
    assert history(pg, done.id) == [(state, "SUCCEEDED", None) for state in ["S0", *STATES]]
    assert _calls(tmp_path, "crash-1") == ["S1", "S2", "S3", "S4", "S4", "S5"]  # S4: killed, then again

    # The same input, uninterrupted, gives the same output.
    reference = _input(tmp_path, "reference", seconds=40)
    Path(reference["flag"]).touch()
    _enqueue(pg_repository, private_broker.url, "reference-1", reference)
    wait_until(lambda: pg.finished(LINEAR) == 2, timeout=30, what="reference-1 to finish", workers=[second])
    uninterrupted = execution(pg, LINEAR, "reference-1")
    assert (uninterrupted.status, uninterrupted.recovery_attempts) == ("SUCCEEDED", 0)
    assert (
        done.output
        == uninterrupted.output
        == {
            "n": 48,  # 3 doubled by S1, S2, S3 and S5
            "acc": ["S1", "S2", "S3", "S5"],
            "slow": {"slow": "done", "n": 25},
        }
    )

    # A healthy run in state 4 for twice the lease: renewed all along, never taken by a scan.
    healthy = _input(tmp_path, "healthy", seconds=2 * LEASE + 1)
    _enqueue(pg_repository, private_broker.url, "healthy-1", healthy)
    wait_until(
        _in_state_4(pg, "healthy-1", healthy["started"]),
        timeout=30,
        what="healthy-1 in state 4",
        workers=[second],
    )
    leases, scans = set(), 0
    while (current := execution(pg, LINEAR, "healthy-1")).status == "RUNNING":
        leases.add(current.lease_expires_at)
        assert scan(pg_repository, lease_seconds=LEASE) == []
        scans += 1
        time.sleep(0.5)
    assert scans >= 8 and len(leases) >= 4, f"{scans} scans saw {len(leases)} lease(s)"
    finished = execution(pg, LINEAR, "healthy-1")
    assert (finished.status, finished.recovery_attempts, finished.output) == (
        "SUCCEEDED",
        0,
        uninterrupted.output,
    )
    assert history(pg, finished.id) == [(state, "SUCCEEDED", None) for state in ["S0", *STATES]]
    assert _calls(tmp_path, "healthy-1") == ["S1", "S2", "S3", "S4", "S5"]
