"""Two deliveries of one execution at the same moment, on two real workers (PostgreSQL, a private Redis):
the second finds the first's live lease and does not run the Task in progress a second time; it
publishes itself again for when that lease would expire, then finds the execution finished. A
duplicate can come from a publisher that turned `unique` off, from `--requeue-unstarted`, or from the
recovery scanner re-publishing a continuation that was only late."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from smq import QueueClient, Repository
from tests.integration.distributed.harness import (
    Db,
    RedisServer,
    Worker,
    broker_backlog,
    client_app,
    wait_until,
)
from tests.integration.waiting.support import execution, history, waiting_env

SLOW_THEN_DONE = {
    "StartAt": "Slow",
    "States": {
        "Slow": {"Type": "Task", "Resource": "wt-slow", "ResultPath": "$.slow", "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}


@pytest.mark.timeout(180)
def test_a_duplicate_delivery_never_runs_the_task_in_progress_again(
    pg: Db, private_broker: RedisServer, spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    repository = Repository.open(pg.url)
    try:
        repository.put_definition("wt-duplicate", SLOW_THEN_DONE)
        env = waiting_env(pg.url, private_broker.url, SMQ_LEASE_SECONDS="3")
        workers = [spawn(f"dup-{index}", env) for index in (1, 2)]
        calls, started = tmp_path / "calls.txt", tmp_path / "started.txt"
        payload = {
            "state_machine_id": "wt-duplicate",
            "name": "dup-1",
            "input": {
                "calls": str(calls),
                "started": str(started),
                "flag": str(tmp_path / "never"),
                "seconds": 4,
            },
            "options": {"unique": False},
        }
        app = client_app(private_broker.url)
        try:
            client = QueueClient(repository, app)
            sent = [client.enqueue(payload) for _ in range(2)]
        finally:
            app.close()
        assert [item.skipped for item in sent] == [False, False]

        wait_until(
            lambda: pg.finished("wt-duplicate") == 1,
            timeout=60,
            what="dup-1 to finish",
            workers=workers,
            diagnose=lambda: pg.describe("wt-duplicate"),
        )
        wait_until(
            lambda: all(count == 0 for count in broker_backlog(private_broker.url).values()),
            timeout=30,
            what="every delivery (and the re-published one) to be taken and acknowledged",
            workers=workers,
        )
        done = execution(pg, "wt-duplicate", "dup-1")
        assert done.status == "SUCCEEDED"
        assert history(pg, done.id) == [("Slow", "SUCCEEDED", None), ("Done", "SUCCEEDED", None)]
        assert calls.read_text().splitlines() == ["dup-1 Slow 1"]  # the Task ran once, not twice
        # Both deliveries reached a worker, and the one that found the lease held published itself again.
        receipts = sum(worker.log().count("] received") for worker in workers)
        assert receipts >= 3, f"{receipts} task receipts in the workers' logs, expected at least 3"
        assert pg.dead_letters() == []
    finally:
        repository.close()
