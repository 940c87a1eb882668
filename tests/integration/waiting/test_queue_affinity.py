"""An execution keeps its queue: a worker records the queue it took the execution from, and whatever
continues it later (the recovery scanner after a crash, `smq redrive`, `smq executions resume`) enqueues
the continuation on that queue, so a crash never demotes critical work to `default`. `--queue` moves it.

The continuations are read back from a private Redis that no worker consumes (SQLite and PostgreSQL);
one test runs a real worker to show the queue a task came from is what gets recorded (PostgreSQL)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from sqlalchemy import select, update

from smq import Repository, StartRequest, start_execution
from smq.engine.handlers import default_registry
from smq.loading import import_handlers
from smq.repository.tables import EXECUTIONS, WAITS
from smq.settings import QUEUES
from tests.integration.distributed.harness import Db, RedisServer, Worker, run_smq, smq_here, wait_until
from tests.integration.waiting.support import HANDLERS, LINE, local, waiting_env

PARKED = {
    "StartAt": "Await",
    "States": {
        "Await": {"Type": "Message", "CorrelationKey": "wt-affinity", "ResultPath": "$.msg", "End": True},
    },
}


def _queued_names(broker_url: str) -> dict[str, list[str]]:
    """The execution names of the messages waiting in each queue (kombu's Redis lists, read raw)."""
    client = redis.Redis.from_url(broker_url)
    try:
        found: dict[str, list[str]] = {}
        for queue in QUEUES:
            names = []
            for raw in client.lrange(queue, 0, -1):
                message = json.loads(raw)
                args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                names.append(args[0]["name"])
            found[queue] = sorted(names)
        return found
    finally:
        client.close()


def _crashed(repository: Repository, name: str, calls: Path, queue: str | None) -> str:
    """RUNNING at state C (A and B checkpointed) with the lease of a process that is gone."""
    record = start_execution(
        repository,
        StartRequest("wt-affinity", {"n": 1, "calls": str(calls)}, name=name),
        handlers=default_registry,
        queue=queue,
        stop_after=2,
    )
    assert (record.status, record.current_state, record.queue) == ("RUNNING", "C", queue)
    with repository.engine.begin() as connection:
        connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == record.execution_id)
            .values(lease_owner="lost-host:4242", lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    return record.execution_id


def _queue_column(repository: Repository, execution_id: str) -> str | None:
    with repository.engine.connect() as connection:
        return cast(
            "str | None",
            connection.execute(
                select(EXECUTIONS.c.queue).where(EXECUTIONS.c.id == execution_id)
            ).scalar_one(),
        )


@pytest.mark.timeout(120)
def test_continuations_go_back_to_the_queue_the_execution_ran_from(
    repository: Repository, database_url: str, private_broker: RedisServer, tmp_path: Path
) -> None:
    import_handlers([str(HANDLERS)])
    repository.put_definition("wt-affinity", LINE)
    env = waiting_env(database_url, private_broker.url)
    calls = tmp_path / "calls.txt"
    critical = _crashed(repository, "crashed-critical", calls, "critical")
    low = _crashed(repository, "crashed-low", calls, "low")
    unrecorded = _crashed(repository, "crashed-here", calls, None)  # started in-process: no queue

    done = json.loads(run_smq(["recover", "--json"], env).stdout)
    assert sorted((r["name"], r["action"], r["queue"]) for r in done["recovered"]) == [
        ("crashed-critical", "resume", "critical"),
        ("crashed-here", "resume", "default"),
        ("crashed-low", "resume", "low"),
    ]
    assert done["continuations"]["enqueued"] == 3
    assert _queued_names(private_broker.url) == {
        "critical": ["crashed-critical"],
        "default": ["crashed-here"],
        "low": ["crashed-low"],
    }
    private_broker.client().flushdb()

    # Redrive: back on its own queue; with --queue on the one named, which it keeps from then on.
    for execution_id in (critical, low, unrecorded):
        smq_here(["executions", "stop", execution_id], local(env))
    run_smq(["redrive", critical], env)
    run_smq(["redrive", low, "--queue", "critical"], env)
    run_smq(["redrive", unrecorded], env)
    assert _queued_names(private_broker.url) == {
        "critical": ["crashed-critical", "crashed-low"],
        "default": ["crashed-here"],
        "low": [],
    }
    assert [_queue_column(repository, eid) for eid in (critical, low, unrecorded)] == [
        "critical",
        "critical",
        None,
    ]
    assert (
        smq_here(["executions", "show", low, "--json"], local(env)).stdout.count('"queue": "critical"') == 1
    )


@pytest.mark.timeout(180)
def test_a_worker_records_the_queue_it_took_the_execution_from(
    pg: Db, private_broker: RedisServer, spawn: Callable[..., Worker]
) -> None:
    repository = Repository.open(pg.url)
    try:
        repository.put_definition("wt-affinity-parked", PARKED)
        env = waiting_env(pg.url, private_broker.url)
        spawn("affinity", env)
        started = json.loads(
            run_smq(
                [
                    "start",
                    "wt-affinity-parked",
                    "--input",
                    '{"ref": 7}',
                    "--name",
                    "parked-low",
                    "--queue",
                    "low",
                    "--json",
                ],
                env,
            ).stdout
        )
        assert started["name"] == "parked-low"

        def parked() -> Any:
            record = repository.find_execution("wt-affinity-parked", "parked-low")
            return record if record is not None and record.status == "WAITING" else None

        wait_until(lambda: parked() is not None, timeout=60, what="parked-low to park on its Message state")
        record = parked()
        assert record.queue == "low"
        with repository.engine.connect() as connection:
            wait_queue = connection.execute(
                select(WAITS.c.queue).where(WAITS.c.execution_id == record.execution_id)
            ).scalar_one()
        assert wait_queue == "low"
    finally:
        repository.close()
