"""A long Wait parks on a durable timer instead of holding a worker slot.

One worker with one process (-c 1) and SMQ_PARK_AFTER=2: a workflow waiting 30 s becomes WAITING with
a timer due 30 s out, and a quick workflow enqueued after it runs meanwhile (its own 1 s Wait is
below park-after: slept in the worker, no timer). A timer fired early wakes it for nothing: the
continuation parks it again on the same deadline. The same Wait in an execution with TimeoutSeconds
4 parks on a timer due at that deadline, and ends TIMED_OUT when fired. Then the 30 s are made to
pass (the cursor's wake time and the timer's due time moved to now) and `smq scheduler --once` fires
it; the worker finishes it. The worker runs on a private redis-server, so the shared workers never see these tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from smq import QueueClient, Repository
from tests.integration.distributed.harness import Db, RedisServer, Worker, client_app, run_smq, wait_until
from tests.integration.waiting.support import execution, history, run_tool, waiting_env, waits

LONG = "wt-long-wait"
QUICK = "wt-quick"
LONG_DEFINITION = {
    "StartAt": "Nap",
    "States": {
        "Nap": {"Type": "Wait", "Seconds": 30, "Next": "After"},
        "After": {"Type": "Pass", "Result": {"woke": True}, "End": True},
    },
}
DEADLINE = "wt-wait-deadline"
DEADLINE_DEFINITION = {**LONG_DEFINITION, "TimeoutSeconds": 4}
QUICK_DEFINITION = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Task", "Resource": "wt-step", "Parameters": {"n": 21}, "Next": "Breath"},
        "Breath": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


def _enqueue(repository: Repository, broker_url: str, machine: str, name: str) -> None:
    app = client_app(broker_url)
    try:
        QueueClient(repository, app).enqueue({"state_machine_id": machine, "name": name, "input": {}})
    finally:
        app.close()


@pytest.mark.timeout(120)
def test_a_long_wait_does_not_hold_the_only_worker_slot(
    pg: Db, pg_repository: Repository, private_broker: RedisServer, spawn: Callable[..., Worker]
) -> None:
    env = waiting_env(pg.url, private_broker.url, SMQ_PARK_AFTER="2")
    pg_repository.put_definition(LONG, LONG_DEFINITION)
    pg_repository.put_definition(QUICK, QUICK_DEFINITION)
    pg_repository.put_definition(DEADLINE, DEADLINE_DEFINITION)
    worker = spawn("single", env, concurrency=1)

    _enqueue(pg_repository, private_broker.url, LONG, "long-1")
    wait_until(lambda: pg.count(LONG, "WAITING") == 1, timeout=20, what="long-1 parked", workers=[worker])
    long_row = execution(pg, LONG, "long-1")
    [timer] = waits(pg, long_row.id)
    assert (timer.kind, timer.status, timer.resolution) == ("timer", "WAITING", None)
    assert timedelta(seconds=29) <= timer.due_at - timer.created_at <= timedelta(seconds=30)
    assert (long_row.lease_owner, long_row.lease_expires_at, history(pg, long_row.id)) == (None, None, [])

    started = time.monotonic()
    _enqueue(pg_repository, private_broker.url, QUICK, "quick-1")
    wait_until(lambda: pg.finished(QUICK) == 1, timeout=15, what="quick-1 to finish", workers=[worker])
    took = time.monotonic() - started
    quick = execution(pg, QUICK, "quick-1")
    assert quick.status == "SUCCEEDED"
    assert history(pg, quick.id) == [
        ("Work", "SUCCEEDED", None),
        ("Breath", "SUCCEEDED", None),
        ("Done", "SUCCEEDED", None),
    ]
    assert waits(pg, quick.id) == []  # 1 s is below SMQ_PARK_AFTER: slept in the worker
    assert took < 10, f"the quick workflow took {took:.1f}s behind a parked 30 s Wait"
    long_row = execution(pg, LONG, "long-1")
    assert long_row.status == "WAITING" and datetime.now(UTC) < timer.due_at - timedelta(seconds=15)

    # Fired early (a dispatcher whose clock runs ahead): woken, then parked again on the same deadline.
    fired = run_tool(["fire", str(timer.due_at.timestamp() + 1)], env)
    assert fired["woken"] == [{"execution_id": long_row.id, "resolution": "timer"}]
    assert fired["continuations"]["enqueued"] == 1
    wait_until(
        lambda: len(worker.task_ids("succeeded")) == 3 and pg.count(LONG, "WAITING") == 1,
        timeout=20,
        what="the early continuation to park long-1 again",
        workers=[worker],
    )
    [again] = waits(pg, long_row.id)
    assert (again.kind, again.status, again.due_at) == ("timer", "WAITING", timer.due_at)
    assert history(pg, long_row.id) == []

    # The same 30 s Wait in an execution with TimeoutSeconds 4 (beyond SMQ_PARK_AFTER): due at the deadline.
    _enqueue(pg_repository, private_broker.url, DEADLINE, "deadline-1")
    wait_until(
        lambda: pg.count(DEADLINE, "WAITING") == 1, timeout=20, what="deadline-1 parked", workers=[worker]
    )
    bounded = execution(pg, DEADLINE, "deadline-1")
    [deadline_timer] = waits(pg, bounded.id)
    assert deadline_timer.due_at == bounded.start_time + timedelta(seconds=4)
    assert deadline_timer.timeout_at - bounded.start_time >= timedelta(seconds=29)  # the Wait's own end
    wait_until(lambda: datetime.now(UTC) > deadline_timer.due_at, timeout=8, what="deadline-1's deadline")

    # The 30 s pass: the wake time in the cursor and the timer's due time are moved to now.
    now = time.time() - 0.5
    with pg.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE smq_executions SET cursor = jsonb_set(jsonb_set(cursor, '{not_before}', to_jsonb(CAST(:t AS float8))), "
                "'{pending,until}', to_jsonb(CAST(:t AS float8))) WHERE id = :e"
            ),
            {"t": now, "e": long_row.id},
        )
        connection.execute(
            text("UPDATE smq_waits SET due_at = to_timestamp(:t) WHERE execution_id = :e"),
            {"t": now, "e": long_row.id},
        )
    tick = json.loads(run_smq(["scheduler", "--once", "--json"], env).stdout)
    assert (tick["timers_fired"], tick["continuations"]["enqueued"]) == (2, 2)
    wait_until(
        lambda: pg.finished(LONG) == 1 and pg.finished(DEADLINE) == 1,
        timeout=20,
        what="long-1 and deadline-1 to finish",
        workers=[worker],
    )
    timed_out = execution(pg, DEADLINE, "deadline-1")
    assert (timed_out.status, timed_out.error, history(pg, timed_out.id)) == (
        "TIMED_OUT",
        "States.Timeout",
        [],
    )
    done = execution(pg, LONG, "long-1")
    assert (done.status, done.output) == ("SUCCEEDED", {"woke": True})
    assert history(pg, done.id) == [("Nap", "SUCCEEDED", None), ("After", "SUCCEEDED", None)]
    assert [(w.status, w.resolution) for w in waits(pg, done.id)] == [("RESOLVED", "timer")]
