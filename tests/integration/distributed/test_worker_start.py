"""Worker life cycle: a worker without its handler module refuses to start (exit 2, naming the module);
SIGTERM is a warm shutdown that lets the running execution finish and acknowledges its message."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from smq import Repository
from tests.integration.distributed.harness import (
    Db,
    Worker,
    broker_backlog,
    smq_env,
    smq_json,
    wait_until,
)

SLOW = {
    "StartAt": "Slow",
    "States": {
        "Slow": {"Type": "Task", "Resource": "slow", "ResultPath": "$.slow", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


def test_missing_handler_module_stops_the_worker_with_status_2(
    db: Db, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    env = smq_env(db.url, broker_url, SMQ_HANDLERS="missing.module")
    worker = start_worker("w1", env, ready=False)
    code = worker.wait_exit(45)
    assert code == 2, f"exit status {code}:\n{worker.tail()}"
    stderr = worker.stderr()
    assert "'missing.module'" in stderr and "SMQ_HANDLERS" in stderr, stderr[-2000:]
    assert " ready." not in stderr  # it never took a task
    assert broker_backlog(broker_url)["unacked"] == 0


def test_sigterm_lets_the_running_execution_finish(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("SLOW", SLOW)
    env = smq_env(db.url, broker_url)
    worker = start_worker("w1", env)
    started = tmp_path / "started"
    sent = smq_json(
        ["start", "SLOW", "--name", "slow-1", "--input", json.dumps({"started": str(started), "seconds": 2})],
        env,
    )
    wait_until(started.exists, timeout=30, what="the slow handler to start", workers=[worker], interval=0.05)
    worker.terminate()
    signalled_at = time.time()
    code = worker.wait_exit(30)
    exited_at = time.time()
    assert code == 0, f"warm shutdown exited {code}:\n{worker.tail()}"
    (row,) = db.rows("SELECT status, output, stop_time FROM smq_executions WHERE name = 'slow-1'")
    assert row.status == "SUCCEEDED"
    # The handler finished after the signal (it was really interrupted mid-run) and before the exit.
    assert signalled_at < row.output["slow"]["finished_at"] < exited_at
    db.assert_each_state_once("SLOW", {"slow-1"}, ["Slow", "Done"])
    assert worker.task_ids("succeeded") == {sent["task_id"]}
    # Acknowledged before the worker left: nothing waits to be delivered again.
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}
