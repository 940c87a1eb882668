"""Timers fire set-wise (one UPDATE of a batch's waits, one of their executions): every due timer of
a batch is resolved once, only executions still parked at that wait are woken, each with its queue,
and a second pass finds nothing. On SQLite and on PostgreSQL, no workers: continuations run here."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from smq import Repository, Settings, StartRequest, start_execution
from smq.execution.continuation import Continuation
from smq.launching import continue_executions
from smq.repository.waits import WaitStore

NAPS = "wt-naps"
DEFINITION = {
    "StartAt": "Nap",
    "States": {
        "Nap": {"Type": "Wait", "Seconds": 2, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "rested", "ResultPath": "$.nap", "End": True},
    },
}


def test_a_batch_of_timers_wakes_exactly_the_executions_still_parked(repository: Repository) -> None:
    repository.put_definition(NAPS, DEFINITION)
    parked = [
        start_execution(
            repository, StartRequest(NAPS, {"i": i}, name=f"nap-{i}"), park_after=0.5, queue=queue
        )
        for i, queue in enumerate(["default", "critical", "low", "default", "default"])
    ]
    assert [record.status for record in parked] == ["WAITING"] * 5
    # One execution leaves WAITING behind its wait's back (as a concurrent stop would, before the
    # wait is cancelled): its timer resolves, but it must not be woken.
    with repository.engine.begin() as connection:
        connection.execute(
            text("UPDATE smq_executions SET status = 'ABORTED' WHERE id = :id"),
            {"id": parked[3].execution_id},
        )
    store = WaitStore(repository.engine)
    assert store.fire_due(limit=10) == []  # not due yet
    time.sleep(max(0.0, parked[-1].start_time.timestamp() + 2.05 - time.time()))
    woken = store.fire_due(limit=10)
    expected = {(r.execution_id, r.name) for i, r in enumerate(parked) if i != 3}
    assert {(w.execution_id, w.name) for w in woken} == expected
    assert {w.name: (w.queue, w.resolution) for w in woken} == {
        "nap-0": ("default", "timer"),
        "nap-1": ("critical", "timer"),
        "nap-2": ("low", "timer"),
        "nap-4": ("default", "timer"),
    }
    with repository.engine.connect() as connection:
        waits = dict(connection.execute(text("SELECT execution_id, status FROM smq_waits")).all())
        statuses = dict(connection.execute(text("SELECT name, status FROM smq_executions")).all())
    assert set(waits.values()) == {"RESOLVED"} and len(waits) == 5
    assert statuses == {
        "nap-0": "RUNNING",
        "nap-1": "RUNNING",
        "nap-2": "RUNNING",
        "nap-3": "ABORTED",
        "nap-4": "RUNNING",
    }
    assert store.fire_due(now=datetime.now(UTC) + timedelta(hours=1), limit=10) == []  # never twice

    summary = continue_executions(
        repository, [Continuation(w.state_machine_id, w.name, w.queue) for w in woken], Settings()
    )
    assert (summary.ran, summary.failed, summary.statuses) == (4, 0, {"SUCCEEDED": 4})
    for record in parked:
        if record.name == "nap-3":
            continue
        done = repository.get_execution(record.execution_id)
        assert done.output == {"i": int(record.name[-1]), "nap": "rested"}
        assert [(e.state_name, e.status) for e in repository.history(record.execution_id)] == [
            ("Nap", "SUCCEEDED"),
            ("Done", "SUCCEEDED"),
        ]
