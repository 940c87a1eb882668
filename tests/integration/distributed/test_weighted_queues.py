"""Weighted queue consumption: with a backlog in all three queues, one worker process takes critical,
default and low 6:3:1 (the default weights); with SMQ_QUEUE_ORDER=strict, every critical first.

The backlog is enqueued while no worker runs; one worker with one pool process then starts executions
one at a time, so the order of the executions' start times is the order the worker took the tasks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from smq import QueueClient, Repository
from tests.integration.distributed.harness import (
    QUEUES,
    Db,
    Worker,
    broker_backlog,
    client_app,
    smq_env,
    wait_until,
)

ONE_STATE = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}
WEIGHTS = {"critical": 0.6, "default": 0.3, "low": 0.1}


def _enqueue_backlog(repository: Repository, broker_url: str, backlog: dict[str, int]) -> None:
    """Enqueue `backlog[queue]` executions named `queue-i` on each queue, through smq's client."""
    app = client_app(broker_url)
    try:
        client = QueueClient(repository, app)
        for queue, count in backlog.items():
            payloads = ({"state_machine_id": "ONE", "name": f"{queue}-{i}"} for i in range(count))
            summary = client.enqueue_many(payloads, queue)
            assert (summary.enqueued, summary.skipped, summary.failed) == (count, 0, 0), summary
    finally:
        app.close()
    pending = broker_backlog(broker_url)
    assert pending == {**backlog, "unacked": 0}, "the backlog must be waiting before any worker starts"


def _queues_in_start_order(db: Db) -> list[str]:
    rows = db.rows("SELECT name FROM smq_executions WHERE state_machine_id = 'ONE' ORDER BY start_time, id")
    return [row.name.split("-", 1)[0] for row in rows]


@pytest.mark.timeout(240)
def test_one_worker_consumes_the_queues_six_three_one(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    # 1,500 draws: a miss of +-0.05 is 4 standard deviations or more on every queue (critical 0.0126,
    # default 0.0118, low 0.0077), so a correct 6:3:1 passes all but about 1 run in 10,000. Each queue's
    # backlog exceeds what it can lose in them (expected 900/450/150) by more than 5 standard deviations,
    # so every draw sees all three queues non-empty.
    draws = 1500
    backlog = {"critical": 1100, "default": 620, "low": 260}
    repository.put_definition("ONE", ONE_STATE)
    _enqueue_backlog(repository, broker_url, backlog)
    worker = start_worker("w1", smq_env(db.url, broker_url), concurrency=1)
    wait_until(
        lambda: db.count("ONE") >= draws,
        timeout=150,
        what=f"{draws} executions to start",
        workers=[worker],
        diagnose=lambda: db.describe("ONE", broker_url),
    )
    worker.stop()
    order = _queues_in_start_order(db)
    first = Counter(order[:draws])
    for queue in QUEUES:
        # All queues still had a backlog on every one of these draws...
        assert first[queue] < backlog[queue], f"{queue} ran dry within the first {draws}: {first}"
    fractions = {queue: first[queue] / draws for queue in QUEUES}
    print(f"fractions over the first {draws}: {fractions}")
    for queue, weight in WEIGHTS.items():
        # ...so each was chosen with its weight's probability.
        assert abs(fractions[queue] - weight) <= 0.05, f"fractions over the first {draws}: {fractions}"
    # The early part alone is weighted too, not only the total (no long run of one queue first).
    early = Counter(order[:200])
    assert all(early[queue] > 0 for queue in QUEUES), f"first 200: {early}"


def test_strict_order_runs_every_critical_before_default_before_low(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    backlog = {"critical": 40, "default": 40, "low": 40}
    repository.put_definition("ONE", ONE_STATE)
    _enqueue_backlog(repository, broker_url, backlog)
    worker = start_worker("w1", smq_env(db.url, broker_url, SMQ_QUEUE_ORDER="strict"), concurrency=1)
    total = sum(backlog.values())
    wait_until(
        lambda: db.finished("ONE") >= total,
        timeout=60,
        what=f"{total} executions to finish",
        workers=[worker],
        diagnose=lambda: db.describe("ONE", broker_url),
    )
    assert db.status_counts("ONE") == {"SUCCEEDED": total}
    order = _queues_in_start_order(db)
    assert order == ["critical"] * 40 + ["default"] * 40 + ["low"] * 40, Counter(
        (queue, index // 40) for index, queue in enumerate(order)
    )
