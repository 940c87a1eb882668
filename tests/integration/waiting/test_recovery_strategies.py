"""The recovery scanner's strategies, without workers, on SQLite and on PostgreSQL.

A crash is made the fast way: an execution is run in this process for two states (`stop_after`), so
it is RUNNING at its third state with its checkpoint written, and its lease is then set to a lost
owner that expired five seconds ago (what a killed worker leaves behind). `smq recover` then applies
each state machine's policy (`smq definitions recovery`): retry, skip, fail, pause, and
smq.RecoveryExhausted after max_attempts. A woken execution whose continuation was lost (its wake
grace passed) is recovered too."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from smq import Repository, StartRequest, start_execution
from smq.engine.handlers import default_registry
from smq.execution.recovery import scan
from smq.loading import import_handlers
from smq.repository.tables import EXECUTIONS, HISTORY
from smq.repository.waits import WaitStore
from tests.integration.distributed.harness import smq_here
from tests.integration.waiting.support import HANDLERS, LINE

WOKEN = {
    "StartAt": "Await",
    "States": {
        "Await": {"Type": "Message", "CorrelationKey": "wt-rec-key", "ResultPath": "$.msg", "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}


def _crash(repository: Repository, machine: str, name: str, calls: Path) -> str:
    """RUNNING at state C (A and B checkpointed), its lease held by a process that is gone."""
    record = start_execution(
        repository,
        StartRequest(machine, {"n": 1, "calls": str(calls)}, name=name),
        handlers=default_registry,
        stop_after=2,
    )
    assert (record.status, record.current_state, record.history_length) == ("RUNNING", "C", 2)
    _expire(repository, record.execution_id)
    return record.execution_id


def _expire(repository: Repository, execution_id: str) -> None:
    with repository.engine.begin() as connection:
        connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == execution_id)
            .values(lease_owner="lost-host:4242", lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )


def _row(repository: Repository, execution_id: str) -> Any:
    with repository.engine.connect() as connection:
        return connection.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id)).one()


def _path(repository: Repository, execution_id: str) -> list[tuple[str, str]]:
    with repository.engine.connect() as connection:
        rows = connection.execute(
            select(HISTORY.c.state_name, HISTORY.c.status)
            .where(HISTORY.c.execution_id == execution_id)
            .order_by(HISTORY.c.sequence)
        )
        return [(row.state_name, row.status) for row in rows]


@pytest.mark.timeout(60)
def test_recovery_strategies(repository: Repository, database_url: str, tmp_path: Path) -> None:
    import_handlers([str(HANDLERS)])
    env = {"SMQ_DATABASE_URL": database_url, "SMQ_HANDLERS": str(HANDLERS)}
    policies = {"retry": ("retry", 3), "skip": ("skip", 3), "fail": ("fail", 3), "pause": ("pause", 3)}
    policies["exhaust"] = ("retry", 1)
    for label, (strategy, attempts) in policies.items():
        repository.put_definition(f"wt-rec-{label}", LINE)
        if label != "retry":  # retry is the default policy
            shown = smq_here(
                [
                    "definitions",
                    "recovery",
                    f"wt-rec-{label}",
                    "--strategy",
                    strategy,
                    "--max-attempts",
                    str(attempts),
                    "--json",
                ],
                env,
            )
            assert json.loads(shown.stdout) == {
                "state_machine_id": f"wt-rec-{label}",
                "strategy": strategy,
                "max_attempts": attempts,
            }
    calls = tmp_path / "calls.txt"
    # The exhausted one crashes first, is recovered once, and its continuation is lost as well.
    ids = {"exhaust": _crash(repository, "wt-rec-exhaust", "exhaust-1", calls)}
    first = scan(repository, lease_seconds=30)
    assert [(r.execution_id, r.action, r.attempt) for r in first] == [(ids["exhaust"], "resume", 1)]
    assert _row(repository, ids["exhaust"]).lease_owner == "smq-recovery"
    _expire(repository, ids["exhaust"])
    ids.update(
        {
            label: _crash(repository, f"wt-rec-{label}", f"{label}-1", calls)
            for label in policies
            if label != "exhaust"
        }
    )

    # Woken by its message, but the continuation never ran: the wake grace (1 s here) runs out.
    repository.put_definition("wt-rec-woken", WOKEN)
    parked = start_execution(repository, StartRequest("wt-rec-woken", {"ref": 1}, name="woken-1"))
    assert parked.status == "WAITING"
    woken = WaitStore(repository.engine, wake_grace_seconds=1).send_message(
        "wt-rec-key", {"ref": 1}, {"paid": 5}
    )
    assert [w.execution_id for w in woken] == [parked.execution_id]
    ids["woken"] = parked.execution_id
    assert _row(repository, parked.execution_id).status == "RUNNING"
    time.sleep(1.2)

    dry = json.loads(smq_here(["recover", "--dry-run", "--json"], env).stdout)
    assert sorted((r["execution_id"], r["action"]) for r in dry["recovered"]) == sorted(
        (eid, "would-recover") for eid in ids.values()
    )
    assert {label: _row(repository, eid).status for label, eid in ids.items()} == dict.fromkeys(
        ids, "RUNNING"
    )

    done = json.loads(smq_here(["recover", "--json"], env).stdout)
    actions = {r["execution_id"]: (r["action"], r["state"], r["attempt"]) for r in done["recovered"]}
    assert actions == {
        ids["retry"]: ("resume", "C", 1),
        ids["skip"]: ("skip", "C", 1),
        ids["fail"]: ("fail", "C", 1),
        ids["pause"]: ("pause", "C", 1),
        ids["exhaust"]: ("exhausted", "C", 2),
        # Never taken by a worker since it was woken: published again, no attempt counted.
        ids["woken"]: ("requeue", "Await", 0),
    }
    assert done["continuations"]["ran"] == 3 and done["continuations"]["failed"] == 0

    rows = {label: _row(repository, eid) for label, eid in ids.items()}
    both = {"n": 1, "calls": str(calls), "a": {"n": 2}, "b": {"n": 4}}
    assert (rows["retry"].status, rows["retry"].output) == ("SUCCEEDED", {**both, "c": {"n": 8}})
    assert _path(repository, ids["retry"]) == [
        ("A", "SUCCEEDED"),
        ("B", "SUCCEEDED"),
        ("C", "SUCCEEDED"),
        ("D", "SUCCEEDED"),
    ]
    # skip: C never runs, its input passes through to D.
    assert (rows["skip"].status, rows["skip"].output) == ("SUCCEEDED", both)
    assert _path(repository, ids["skip"]) == [("A", "SUCCEEDED"), ("B", "SUCCEEDED"), ("D", "SUCCEEDED")]
    assert (rows["fail"].status, rows["fail"].error) == ("FAILED", "smq.WorkerLost")
    assert "'C'" in rows["fail"].cause and rows["fail"].stop_time is not None
    assert _path(repository, ids["fail"]) == [("A", "SUCCEEDED"), ("B", "SUCCEEDED")]
    assert (rows["exhaust"].status, rows["exhaust"].error, rows["exhaust"].recovery_attempts) == (
        "FAILED",
        "smq.RecoveryExhausted",
        2,
    )
    assert "recovered 1 time(s)" in rows["exhaust"].cause
    assert (rows["pause"].status, rows["pause"].lease_owner, rows["pause"].lease_expires_at) == (
        "PAUSED",
        None,
        None,
    )
    assert (rows["woken"].status, rows["woken"].output) == ("SUCCEEDED", {"ref": 1, "msg": {"paid": 5}})
    assert _path(repository, ids["woken"]) == [("Await", "SUCCEEDED"), ("Done", "SUCCEEDED")]
    assert {
        label: rows[label].recovery_attempts for label in ("retry", "skip", "fail", "pause", "woken")
    } == {**dict.fromkeys(("retry", "skip", "fail", "pause"), 1), "woken": 0}

    # Nothing is left for a scan; a PAUSED execution waits for an operator.
    assert json.loads(smq_here(["recover", "--json"], env).stdout)["recovered"] == []
    refused = smq_here(["executions", "resume", "wt-rec-retry/retry-1"], env, expect=4)
    assert "only PAUSED" in refused.stderr
    resumed = json.loads(smq_here(["executions", "resume", "wt-rec-pause/pause-1", "--json"], env).stdout)
    assert resumed["status"] == "SUCCEEDED"
    paused = _row(repository, ids["pause"])
    assert (paused.status, paused.output) == ("SUCCEEDED", {**both, "c": {"n": 8}})
    assert _path(repository, ids["pause"]) == [
        ("A", "SUCCEEDED"),
        ("B", "SUCCEEDED"),
        ("C", "SUCCEEDED"),
        ("D", "SUCCEEDED"),
    ]

    # What really ran: A and B once each everywhere, C once where it was resumed, never where skipped.
    ran = sorted(line.rsplit(" ", 1)[0] for line in calls.read_text().splitlines())
    expected = [f"{label}-1 {state}" for label in policies for state in ("A", "B")]
    expected += ["retry-1 C", "pause-1 C"]
    assert ran == sorted(expected)
