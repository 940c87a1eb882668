"""PostgreSQL stopped while a Task runs: its result is kept, its checkpoint written when the database
is back, and the Task never runs a second time (issue 16, point 1); a task dead-lettered during the
outage keeps its dead letter in the broker's spool until the database is back (point 3).

The database is a private server of this test (stopped and started again); the broker is the tier's
scratch Redis. The handler waits for the test's signal, so the outage is certain to fall between the
handler's return and its checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from smq import Repository
from smq.distributed.dead_letter_spool import SPOOL_KEY
from smq.repository.database import create_database_engine, upgrade
from tests.integration.distributed.harness import (
    Db,
    PostgresServer,
    Worker,
    private_postgres_server,
    run_smq,
    smq_env,
    smq_json,
    wait_until,
)
from tests.integration.distributed.test_dead_letters import _send_raw

DOOMED = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Task", "Resource": "hold-then-fail-infra", "End": True}},
}
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


def _deployed(
    server: PostgresServer, broker_url: str, machine: str, definition: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    """The machine put on the private server, and the workers' environment: the tier's 6 s soft limit
    would cut the outage short (a soft limit ends whatever runs), so the limits are longer here."""
    url = server.admin_url()
    repository = Repository.open(url)
    repository.put_definition(machine, definition)
    repository.close()
    env = smq_env(
        url,
        broker_url,
        SMQ_OUTAGE_BUDGET="60",
        SMQ_SOFT_TIME_LIMIT="90",
        SMQ_HARD_TIME_LIMIT="100",
        SMQ_VISIBILITY_TIMEOUT="120",
    )
    return url, env


def test_a_task_finished_during_a_database_outage_is_checkpointed_once_the_database_is_back(
    private_pg: PostgresServer, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    url, env = _deployed(private_pg, broker_url, "HOLD", HOLD)
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


def test_a_dead_letter_written_during_a_database_outage_is_spooled_and_listed_once_it_is_back(
    private_pg: PostgresServer, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    url, env = _deployed(private_pg, broker_url, "DOOMED", DOOMED)
    worker = start_worker("w1", env)
    started, go = tmp_path / "started", tmp_path / "go"
    payload = {
        "state_machine_id": "DOOMED",
        "name": "doomed-1",
        "input": {"started": str(started), "go": str(go)},
        "options": {"max_retries": 0},
    }
    ids = _send_raw(broker_url, {"doomed": payload}, "low")
    wait_until(started.exists, what="the handler to start", timeout=60, workers=[worker])

    private_pg.stop()
    go.write_text("go")  # the handler fails for good now: its dead letter meets a stopped database
    spool = redis.Redis.from_url(broker_url)
    try:
        wait_until(
            lambda: spool.llen(SPOOL_KEY) == 1,
            what="the dead letter to be spooled",
            timeout=30,
            workers=[worker],
        )
        (spooled,) = [json.loads(raw) for raw in spool.lrange(SPOOL_KEY, 0, -1)]
        assert (spooled["task_id"], spooled["reason"], spooled["queue"]) == (
            ids["doomed"],
            "retries_exhausted",
            "low",
        )
        assert spooled["payload"] == payload

        private_pg.start()
        listed = smq_json(["dead", "list"], env)[
            "dead_letters"
        ]  # moves the spooled letter into the database first
        assert [(item["task_id"], item["reason"]) for item in listed] == [
            (ids["doomed"], "retries_exhausted")
        ]
        assert spool.llen(SPOOL_KEY) == 0
    finally:
        spool.close()
    db = Db(create_database_engine(url), url)
    try:
        rows = db.rows("SELECT status, error, current_state FROM smq_executions WHERE name = 'doomed-1'")
        assert [tuple(row) for row in rows] == [("FAILED", "smq.DeadLettered", "Hold")]
    finally:
        db.engine.dispose()
    assert worker.alive()
