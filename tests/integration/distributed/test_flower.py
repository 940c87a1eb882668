"""Flower tells the truth (issue 18, point 1): a real worker and a real `celery flower`, read through
Flower's own API. A workflow that ends FAILED is a FAILURE with `<Error>: <Cause>` and its state, not a
SUCCESS; a dead-lettered task is a FAILURE with its reason; a parked execution says what it waits for;
the task list names the execution; a task nobody has taken yet is listed too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smq import Repository
from tests.integration.distributed.harness import (
    ROOT,
    Db,
    Worker,
    free_port,
    run_smq,
    smq_env,
    wait_until,
)
from tests.integration.distributed.test_dead_letters import _send_raw

MACHINES = {
    "FL_OK": {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}},
    "FL_BROKEN": {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Next": "Charge"},
            "Charge": {"Type": "Fail", "Error": "Payment.Declined", "Cause": "card declined"},
        },
    },
    "FL_PARKED": {
        "StartAt": "Await",
        "States": {
            "Await": {"Type": "Message", "CorrelationKey": "flower-test", "TimeoutSeconds": 3600, "End": True}
        },
    },
}


@pytest.fixture
def flower(broker_url: str, db: Db, tmp_path: Path) -> Iterator[str]:
    """`celery -A smq flower` on a free port, its API open (FLOWER_UNAUTHENTICATED_API: test only)."""
    port = free_port()
    env = {**smq_env(db.url, broker_url), "FLOWER_UNAUTHENTICATED_API": "true"}
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - kept by Popen
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "smq", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{url}/api/workers") is not None, timeout=60, what="Flower to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
        print((tmp_path / "flower.log").read_text(errors="replace")[-3000:])


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _tasks(flower: str) -> dict[str, dict[str, Any]]:
    return _get(f"{flower}/api/tasks") or {}


def test_flower_shows_failed_workflows_as_failures_and_names_each_execution(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], flower: str
) -> None:
    for machine, definition in MACHINES.items():
        repository.put_definition(machine, definition)
    env = smq_env(db.url, broker_url)
    worker = start_worker("w1", env, queues="critical,default")  # nobody takes `low`: queued tasks stay
    time.sleep(2)  # Flower's event receiver sees the worker before the first task
    for machine, name in (("FL_OK", "ok-1"), ("FL_BROKEN", "broken-1"), ("FL_PARKED", "parked-1")):
        said = run_smq(["start", machine, "--input", "{}", "--name", name], env).stdout
        # The reference every other command takes (issue 20), then Celery's task id.
        assert said.startswith(f"{machine}/{name} enqueued on default (task "), said
    run_smq(["start", "FL_OK", "--input", "{}", "--name", "queued-1", "--queue", "low"], env)
    ids = _send_raw(
        broker_url, {"bad": {"state_machine_id": "FL_OK", "name": "bad-1", "version": 0}}, "default"
    )
    wait_until(
        lambda: len([t for t in _tasks(flower).values() if t.get("state") in ("SUCCESS", "FAILURE")]) >= 4,
        timeout=60,
        what="Flower to see four tasks end",
        workers=[worker],
    )
    tasks = _tasks(flower)
    by_execution = {str(task.get("args")).strip("'\""): task for task in tasks.values()}
    assert by_execution["FL_OK/ok-1"]["state"] == "SUCCESS"
    broken = by_execution["FL_BROKEN/broken-1"]
    assert broken["state"] == "FAILURE", broken
    assert "Payment.Declined: card declined" in broken["exception"] and "'Charge'" in broken["exception"]
    parked = by_execution["FL_PARKED/parked-1"]
    assert (
        parked["state"] == "SUCCESS" and "WAITING" in parked["result"] and "flower-test" in parked["result"]
    )
    queued = by_execution["FL_OK/queued-1"]
    assert queued["state"] == "PENDING" and queued["sent"] is not None  # sent, not taken by any worker
    bad = tasks[ids["bad"]]
    assert bad["state"] == "FAILURE" and "invalid_payload" in bad["exception"], bad
    # The workflow's failure is its result, not a dead letter; the malformed payload is one.
    assert [(letter.task_id, letter.reason) for letter in db.dead_letters()] == [
        (ids["bad"], "invalid_payload")
    ]
