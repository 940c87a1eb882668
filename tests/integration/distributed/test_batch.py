"""A distributed batch: `smq leader` fans 2,000 chained executions out to two prefork workers.

Every chained execution must exist exactly once, SUCCEEDED, each state recorded once, one per source;
both workers must have run some; and the same leader run again must publish nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from smq import Repository
from tests.integration.distributed.harness import (
    Db,
    Worker,
    broker_backlog,
    smq_env,
    smq_json,
    wait_until,
)

SOURCES = 2000
SOURCE = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}
TARGET = {
    "StartAt": "Tag",
    "States": {
        "Tag": {"Type": "Task", "Resource": "whoami", "ResultPath": "$.tag", "Next": "Shape"},
        "Shape": {"Type": "Pass", "Parameters": {"i.$": "$.i", "worker.$": "$.tag.worker"}, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


@pytest.mark.timeout(240)
def test_leader_fans_out_to_two_workers_exactly_once(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("SRC", SOURCE)
    repository.put_definition("DST", TARGET)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(SOURCES)))
    env = smq_env(db.url, broker_url)

    # The workers start while the sources run in the CLI process (--local): the workers see only the
    # chained executions.
    workers = [start_worker(name, env, concurrency=1, ready=False) for name in ("w1", "w2")]
    local = smq_json(["start", "SRC", "--inputs", str(inputs), "--local", "--concurrency", "4"], env)
    assert local["counts"] == {"SUCCEEDED": SOURCES}
    source_ids = {row.id for row in db.rows("SELECT id FROM smq_executions WHERE state_machine_id = 'SRC'")}
    assert len(source_ids) == SOURCES

    for worker in workers:
        worker.wait_ready()
    leader = ["leader", "--filter", "state_machine_id=SRC", "--target", "DST"]
    first = smq_json(leader, env)
    assert (first["mode"], first["sources"], first["enqueued"], first["skipped"], first["failed"]) == (
        "distributed",
        SOURCES,
        SOURCES,
        0,
        0,
    )

    wait_until(
        lambda: db.finished("DST") >= SOURCES,
        timeout=150,
        what=f"{SOURCES} DST executions to finish",
        workers=workers,
        diagnose=lambda: db.describe("DST", broker_url),
    )

    names = {f"DST-SRC:in-{i}" for i in range(1, SOURCES + 1)}  # `smq start --inputs` names lines FILE-N
    db.assert_each_state_once("DST", names, ["Tag", "Shape", "Done"])
    chained = db.rows("SELECT source_execution_id, output FROM smq_executions WHERE state_machine_id = 'DST'")
    assert {row.source_execution_id for row in chained} == source_ids  # one per source, all distinct
    assert sorted(row.output["i"] for row in chained) == list(range(SOURCES))
    links = db.scalar("SELECT count(DISTINCT source_execution_id) FROM smq_chain_links")
    assert links == SOURCES
    by_worker: dict[str, int] = {}
    for row in chained:
        by_worker[row.output["worker"]] = by_worker.get(row.output["worker"], 0) + 1
    assert set(by_worker) == {"w1", "w2"}, f"work per worker: {by_worker}"
    # Cross-check with the workers' own logs: what each reports as succeeded is what it ran.
    assert sum(len(worker.task_ids("succeeded")) for worker in workers) == SOURCES
    assert db.dead_letters() == []

    # The same leader again: every name is already run, so nothing is published.
    again = smq_json(leader, env)
    assert (again["sources"], again["enqueued"], again["skipped"], again["failed"]) == (
        SOURCES,
        0,
        SOURCES,
        0,
    )
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}
    assert db.count("DST") == SOURCES
