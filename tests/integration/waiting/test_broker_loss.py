"""Nothing enqueued is stranded (issue 16, points 4 and 5): whatever lost the broker's messages, the
scheduler publishes again, by itself, every execution that was enqueued but never started and every
continuation handed to the queue, without the original input and without a command.

- Redis restarted empty: the scheduler sees the loss (smq's epoch key is gone) and heals at once.
- `celery purge`: nothing restarted, the queues are simply empty: claims unstarted for longer than
  SMQ_STRANDED_AFTER that the broker no longer holds are published again.
Each execution then runs exactly once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from smq import Repository, StartRequest, start_execution
from smq.execution.control import redrive_execution
from tests.integration.distributed.harness import (
    Db,
    RedisServer,
    Worker,
    broker_backlog,
    run_smq,
    wait_until,
)
from tests.integration.waiting.support import Scheduler, waiting_env

COUNT = 60
STEP = {
    "StartAt": "Step",
    "States": {"Step": {"Type": "Task", "Resource": "wt-step", "End": True}},
}
ALWAYS_FAILS = {
    "StartAt": "Broken",
    "States": {"Broken": {"Type": "Fail", "Error": "Broken", "Cause": "on purpose"}},
}


def _inputs(tmp_path: Path, calls: Path) -> Path:
    lines = tmp_path / "inputs.jsonl"
    lines.write_text("".join(json.dumps({"n": i, "calls": str(calls)}) + "\n" for i in range(COUNT)))
    return lines


def _ran_once_each(pg: Db, machine: str, calls: Path, prefix: str) -> None:
    assert pg.status_counts(machine) == {"SUCCEEDED": COUNT}
    ran = [line.split()[0] for line in calls.read_text().splitlines()]
    assert sorted(ran) == sorted(f"{prefix}{i}" for i in range(1, COUNT + 1)), "a Task ran twice or never"


def test_redis_restarted_empty_everything_enqueued_runs_once_without_a_command(
    pg: Db,
    pg_repository: Repository,
    private_broker: RedisServer,
    spawn: Callable[..., Worker],
    scheduler: Callable[..., Scheduler],
    tmp_path: Path,
) -> None:
    machine, failing = "wt-loss-step", "wt-loss-fail"
    pg_repository.put_definition(machine, STEP)
    pg_repository.put_definition(failing, ALWAYS_FAILS)
    env = waiting_env(pg.url, private_broker.url, SMQ_PARK_AFTER="1")
    calls = tmp_path / "calls.txt"
    # Nobody consumes yet: COUNT executions enqueued, and one redriven execution handed to the queue.
    run_smq(["start", machine, "--inputs", str(_inputs(tmp_path, calls)), "--name-prefix", "loss-"], env)
    failed = start_execution(pg_repository, StartRequest(failing, {}, name="redriven-1"))
    assert failed.status == "FAILED"
    redriven = redrive_execution(pg_repository, failed.execution_id)  # its continuation never published
    assert redriven.status == "RUNNING" and redriven.lease_owner is None
    assert broker_backlog(private_broker.url)["default"] == COUNT

    private_broker.kill()
    for name in Path(private_broker.directory).glob("appendonly*"):
        subprocess.run(["rm", "-rf", str(name)], check=True)
    private_broker.start()  # the same port, nothing in it
    assert broker_backlog(private_broker.url)["default"] == 0
    back = time.monotonic()

    scheduler(env)
    worker = spawn("w1", env, concurrency=2)
    wait_until(
        lambda: pg.finished(machine) == COUNT and pg.finished(failing) == 1,
        timeout=60,
        what="every enqueued execution and the redriven one to finish",
        workers=[worker],
        diagnose=lambda: pg.describe(machine, private_broker.url),
    )
    assert time.monotonic() - back < 60
    _ran_once_each(pg, machine, calls, "loss-")
    again = pg_repository.get_execution(failed.execution_id)
    assert again.status == "FAILED" and again.history_length == failed.history_length + 1  # it ran again


def test_purged_queues_are_published_again_once_the_claims_are_stranded(
    pg: Db,
    pg_repository: Repository,
    private_broker: RedisServer,
    spawn: Callable[..., Worker],
    scheduler: Callable[..., Scheduler],
    tmp_path: Path,
) -> None:
    machine = "wt-purge-step"
    pg_repository.put_definition(machine, STEP)
    env = waiting_env(pg.url, private_broker.url, SMQ_STRANDED_AFTER="2")
    calls = tmp_path / "calls.txt"
    run_smq(["start", machine, "--inputs", str(_inputs(tmp_path, calls)), "--name-prefix", "purged-"], env)
    watching = scheduler(env)  # sees the messages queued: nothing to do while the broker holds them
    time.sleep(5)
    assert pg.count(machine) == 0 and broker_backlog(private_broker.url)["default"] == COUNT
    # Stopped while the command below checks the claims itself: a scheduler would race it to them.
    watching.stop()

    purge = subprocess.run(
        ["celery", "-A", "smq", "purge", "-f", "-Q", "critical,default,low"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert purge.returncode == 0, purge.stderr
    assert broker_backlog(private_broker.url)["default"] == 0
    # The same command again says so: every name is claimed, and none is held by the broker now.
    rerun = json.loads(
        run_smq(
            [
                "start",
                machine,
                "--inputs",
                str(_inputs(tmp_path, calls)),
                "--name-prefix",
                "purged-",
                "--json",
            ],
            env,
        ).stdout
    )
    assert (rerun["enqueued"], rerun["requeued"], rerun["skipped"]) == (COUNT, COUNT, 0)
    # Purged once more: now nobody runs a command; the scheduler finds them stranded and publishes them.
    scheduler(env)
    assert (
        subprocess.run(
            ["celery", "-A", "smq", "purge", "-f", "-Q", "critical,default,low"],
            env=env,
            capture_output=True,
            timeout=60,
        ).returncode
        == 0
    )
    worker = spawn("w1", env, concurrency=2)
    wait_until(
        lambda: pg.finished(machine) == COUNT,
        timeout=60,
        what="the purged executions to be published again and finish",
        workers=[worker],
        diagnose=lambda: pg.describe(machine, private_broker.url),
    )
    _ran_once_each(pg, machine, calls, "purged-")
