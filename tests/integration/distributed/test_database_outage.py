"""PostgreSQL stopped while a Task runs: its result is kept, its checkpoint written when the database
is back, and the Task never runs a second time (issue 16, point 1).

The database is a private server of this test (stopped and started again); the broker is the tier's
scratch Redis. The handler waits for the test's signal, so the outage is certain to fall between the
handler's return and its checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smq.repository.database import create_database_engine, upgrade
from smq.repository.repository import Repository
from tests.integration.distributed.harness import (
    Db,
    PostgresServer,
    Worker,
    private_postgres_server,
    run_smq,
    smq_env,
    wait_until,
)

HOLD = {
    "StartAt": "Hold",
    "States": {
        "Hold": {"Type": "Task", "Resource": "hold-until-go", "ResultPath": "$.hold", "Next": "After"},
        "After": {"Type": "Task", "Resource": "count-calls", "ResultPath": "$.after", "End": True},
    },
}


@pytest.fixture
def private_pg() -> Iterator[PostgresServer]:
    with private_postgres_server() as server:
        engine = create_database_engine(server.admin_url())
        upgrade(engine)
        engine.dispose()
        yield server


def test_a_task_finished_during_a_database_outage_is_checkpointed_once_the_database_is_back(
    private_pg: PostgresServer, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    url = private_pg.admin_url()
    repository = Repository.open(url)
    repository.put_definition("HOLD", HOLD)
    repository.close()
    env = smq_env(
        url,
        broker_url,
        SMQ_OUTAGE_BUDGET="60",
        # The tier's 6 s soft limit would cut the outage short: a soft limit ends whatever runs.
        SMQ_SOFT_TIME_LIMIT="90",
        SMQ_HARD_TIME_LIMIT="100",
        SMQ_VISIBILITY_TIMEOUT="120",
    )
    worker = start_worker("w1", env)
    started, go, calls = tmp_path / "started", tmp_path / "go", tmp_path / "calls.txt"
    payload = {"started": str(started), "go": str(go), "calls": str(calls)}
    run_smq(["start", "HOLD", "--input", json.dumps(payload), "--name", "held-1"], env)
    wait_until(started.exists, what="the handler to start", timeout=60, workers=[worker])

    private_pg.stop()
    go.write_text("go")  # the handler returns now: its checkpoint meets a stopped database
    wait_until(
        lambda: calls.exists() and "Hold" in calls.read_text(), what="the handler to return", timeout=30
    )
    time.sleep(4)  # several failed checkpoint attempts while the database is down
    assert "checkpoint not written" in worker.stderr(), worker.tail(40)
    private_pg.start()

    db = Db(create_database_engine(url), url)
    try:
        wait_until(
            lambda: db.scalar("SELECT status FROM smq_executions WHERE name = 'held-1'") == "SUCCEEDED",
            what="the execution to succeed after the outage",
            timeout=90,
            workers=[worker],
            diagnose=lambda: db.describe("HOLD", broker_url),
        )
        ran = calls.read_text().splitlines()
        assert [line.split()[1] for line in ran] == ["Hold", "After"], ran  # the held Task ran once
        history = [row.state_name for row in db.rows("SELECT state_name FROM smq_history ORDER BY sequence")]
        assert history == ["Hold", "After"]
        assert db.dead_letters() == []
    finally:
        db.engine.dispose()
