"""Retention on SQLite and PostgreSQL: `smq executions prune|delete` and `smq definitions delete` remove
executions with their history, waits (timers, branch waits), chain links and ledger claims, in bounded
batches; nothing that is not final goes without --force; an execution redriven meanwhile is kept
whole; the scheduler prunes on its own with SMQ_RETENTION."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from smq.execution.pruning import PruneChore
from smq.repository.repository import Repository
from smq.repository.retention import DefinitionInUse, Retention
from smq.repository.tables import (
    BRANCHES,
    CHAIN_LINKS,
    DEFINITIONS,
    ENQUEUED,
    EXECUTIONS,
    HISTORY,
    RECOVERY_POLICIES,
    WAITS,
)
from smq.settings import Settings, SettingsError
from tests.integration.cli import Smq

NOW = datetime.now(UTC)
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def seed(
    repository: Repository,
    machine: str,
    count: int,
    *,
    status: str = "SUCCEEDED",
    ended_days_ago: float = 40,
    prefix: str = "e",
) -> list[str]:
    """`count` executions of `machine` with 2 history rows, a wait (and a branch wait), a branch row
    (a parked fan-out's iteration), a ledger claim each; every one after the first is chained from the one before. Returns their ids."""
    final = status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
    stop = NOW - timedelta(days=ended_days_ago)
    ids = [f"{machine}-{prefix}-{i:04d}" for i in range(count)]
    with repository.engine.begin() as connection:
        connection.execute(
            EXECUTIONS.insert(),
            [
                {
                    "id": execution_id,
                    "name": execution_id,
                    "state_machine_id": machine,
                    "version": 1,
                    "status": status,
                    "start_time": stop - timedelta(seconds=i + 1),
                    "stop_time": stop - timedelta(seconds=i) if final else None,
                    "updated_at": stop,
                    "history_length": 2,
                }
                for i, execution_id in enumerate(ids)
            ],
        )
        connection.execute(
            HISTORY.insert(),
            [
                {
                    "execution_id": execution_id,
                    "sequence": sequence,
                    "state_name": "P",
                    "state_type": "Pass",
                    "status": "SUCCEEDED",
                    "scope": "",
                    "attempt": 1,
                    "entered_at": stop,
                    "exited_at": stop,
                }
                for execution_id in ids
                for sequence in (1, 2)
            ],
        )
        connection.execute(
            WAITS.insert(),
            [
                {
                    "id": f"{execution_id}-{branch or 'top'}",
                    "execution_id": execution_id,
                    "history_length": 2,
                    "kind": "timer",
                    "status": "RESOLVED",
                    "due_at": stop,
                    "queue": "default",
                    "created_at": stop,
                    "branch": branch,
                }
                for execution_id in ids
                for branch in (None, "0")
            ],
        )
        connection.execute(
            BRANCHES.insert(),
            [
                {
                    "execution_id": execution_id,
                    "idx": 0,
                    "status": "SUCCEEDED",
                    "output": 1,
                    "updated_at": stop,
                }
                for execution_id in ids
            ],
        )
        links = [
            {
                "source_execution_id": source,
                "target_execution_id": target,
                "target_state_machine_id": machine,
                "created_at": stop,
            }
            for source, target in zip(ids, ids[1:], strict=False)
        ]
        if links:
            connection.execute(CHAIN_LINKS.insert(), links)
        connection.execute(
            ENQUEUED.insert(),
            [
                {
                    "state_machine_id": machine,
                    "name": execution_id,
                    "task_id": "t",
                    "queue": "default",
                    "enqueued_at": stop,
                }
                for execution_id in ids
            ],
        )
    return ids


def count(repository: Repository, table, *clauses) -> int:
    with repository.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(*clauses)).scalar_one())


def remaining(repository: Repository, ids: list[str]) -> dict[str, int]:
    return {
        "executions": count(repository, EXECUTIONS, EXECUTIONS.c.id.in_(ids)),
        "history": count(repository, HISTORY, HISTORY.c.execution_id.in_(ids)),
        "waits": count(repository, WAITS, WAITS.c.execution_id.in_(ids)),
        "branches": count(repository, BRANCHES, BRANCHES.c.execution_id.in_(ids)),
        "links": count(
            repository,
            CHAIN_LINKS,
            CHAIN_LINKS.c.source_execution_id.in_(ids) | CHAIN_LINKS.c.target_execution_id.in_(ids),
        ),
        "ledger": count(repository, ENQUEUED, ENQUEUED.c.name.in_(ids)),
    }


def test_prune_deletes_old_final_executions_with_their_rows_in_batches(repository: Repository) -> None:
    old = seed(repository, "orders", 11)
    old_failed = seed(repository, "orders", 3, status="FAILED", prefix="f")
    recent = seed(repository, "orders", 4, ended_days_ago=2, prefix="r")
    waiting = seed(repository, "orders", 2, status="WAITING", ended_days_ago=90, prefix="w")
    other = seed(repository, "refunds", 5)
    retention = Retention(repository.engine, batch_size=4)
    cutoff = NOW - timedelta(days=30)

    assert retention.count_prunable(cutoff, state_machine_id="orders") == 14
    only_failed = retention.prune(cutoff, statuses=["FAILED"], state_machine_id="orders")
    assert (only_failed.executions, only_failed.batches) == (3, 1)
    assert remaining(repository, old_failed) == dict.fromkeys(remaining(repository, old_failed), 0)

    deleted = retention.prune(cutoff, state_machine_id="orders")
    # 11 in batches of 4: 4 + 4 + 3; 2 history rows, 2 waits and a branch row each; 10 links among the 11.
    assert deleted.to_dict() == {
        "executions": 11,
        "history": 22,
        "waits": 22,
        "branches": 11,
        "chain_links": 10,
        "child_links": 0,
        "ledger": 11,
        "batches": 3,
    }
    assert remaining(repository, old) == {
        "executions": 0,
        "history": 0,
        "waits": 0,
        "branches": 0,
        "links": 0,
        "ledger": 0,
    }
    for kept in (recent, waiting, other):  # newer, not final, another machine: whole
        assert remaining(repository, kept)["executions"] == len(kept)
        assert remaining(repository, kept)["history"] == 2 * len(kept)
    assert retention.prune(cutoff).executions == 5  # then the other machine, every status
    with pytest.raises(ValueError, match="only final"):
        retention.prune(cutoff, statuses=["WAITING"])


def test_a_batch_keeps_an_execution_that_left_its_final_status(repository: Repository) -> None:
    """Redriven between the choice of a batch and its delete: its history, waits and links stay."""
    ids = seed(repository, "orders", 3)
    with repository.engine.begin() as connection:
        connection.execute(EXECUTIONS.update().where(EXECUTIONS.c.id == ids[1]).values(status="RUNNING"))
    deleted = Retention(repository.engine).delete_executions(ids)
    assert deleted.executions == 2
    assert remaining(repository, [ids[1]]) == {
        "executions": 1,
        "history": 2,
        "waits": 2,
        "branches": 1,
        "links": 0,
        "ledger": 1,
    }


def test_delete_definition_refuses_while_executions_run_unless_forced(repository: Repository) -> None:
    repository.put_definition("orders", PASS)
    repository.put_definition("orders", {**PASS, "Comment": "v2"})
    finished = seed(repository, "orders", 3)
    running = seed(repository, "orders", 1, status="RUNNING", prefix="run")
    retention = Retention(repository.engine)
    with pytest.raises(DefinitionInUse, match="1 execution"):
        retention.delete_definition("orders")
    assert count(repository, DEFINITIONS, DEFINITIONS.c.state_machine_id == "orders") == 2
    done = retention.delete_definition("orders", force=True)
    assert (done["versions"], done["not_final_executions"], done["executions"]["executions"]) == (2, 1, 0)
    assert count(repository, DEFINITIONS) == 0 and count(repository, RECOVERY_POLICIES) == 0
    assert remaining(repository, finished)["executions"] == 3  # still readable
    repository.put_definition("orders", PASS)
    gone = retention.delete_definition("orders", force=True, with_executions=True)
    assert gone["executions"]["executions"] == 4
    assert remaining(repository, finished + running)["executions"] == 0


def test_the_scheduler_chore_prunes_with_a_time_budget(repository: Repository) -> None:
    seed(repository, "orders", 7)
    keep = seed(repository, "orders", 2, ended_days_ago=1, prefix="k")
    chore = PruneChore(repository, retention_seconds=30 * 86400, max_seconds=0.0, batch_size=3)
    assert chore.run()["executions"] == 3  # one batch, then its time is up
    assert chore.run()["executions"] == 3
    assert chore.run()["executions"] == 1
    assert chore.run()["executions"] == 0
    assert remaining(repository, keep)["executions"] == 2


def test_retention_setting() -> None:
    assert Settings.from_env({}).retention is None
    assert Settings.from_env({"SMQ_RETENTION": "off"}).retention is None
    assert Settings.from_env({"SMQ_RETENTION": "30d"}).retention == 30 * 86400
    assert Settings.from_env({"SMQ_RETENTION": "12h"}).retention == 12 * 3600
    for bad in ("soon", "10m", "-1d"):
        with pytest.raises(SettingsError, match="SMQ_RETENTION"):
            Settings.from_env({"SMQ_RETENTION": bad})


def test_the_commands(repository: Repository, database_url: str) -> None:
    smq = Smq(database_url)
    repository.put_definition("orders", PASS)
    old = seed(repository, "orders", 6)
    running = seed(repository, "orders", 1, status="RUNNING", prefix="run")

    # definitions delete: refused (exit 4) while one runs; not found: 3.
    refused = smq("definitions", "delete", "orders", expect=4)
    assert "1 execution(s) not final" in refused.stderr and "--force" in refused.stderr
    smq("definitions", "delete", "nope", expect=3)

    # executions delete: one by reference (a running one needs --force), then by filter.
    assert "RUNNING" in smq("executions", "delete", f"orders/{running[0]}", expect=4).stderr
    one = json.loads(smq("executions", "delete", f"orders/{old[0]}", "--json").stdout)
    assert (one["executions"], one["history"]) == (1, 2)
    by_filter = smq(
        "executions", "delete", "--filter", f"name_prefix={old[1][:-2]},status=SUCCEEDED", "--yes"
    )
    assert by_filter.stdout.startswith("5 execution(s) deleted (10 history rows, 10 waits and timers")
    nothing = smq(
        "executions", "delete", "--filter", "state_machine_id=orders,status=FAILED", "--yes", expect=1
    )
    assert nothing.stdout.startswith("0 execution(s) deleted")
    smq("executions", "delete", expect=2)  # neither an execution nor --filter

    # prune: dry run, bad arguments (2), then for real.
    seed(repository, "orders", 4, prefix="again")
    dry = json.loads(smq("executions", "prune", "--older-than", "30d", "--dry-run", "--json").stdout)
    assert dry["executions"] == 4
    assert "--older-than" in smq("executions", "prune", "--older-than", "soon", expect=2).stderr
    assert (
        "only final"
        in smq("executions", "prune", "--older-than", "1d", "--status", "RUNNING", expect=2).stderr
    )
    pruned = json.loads(
        smq("executions", "prune", "--older-than", "30d", "--batch-size", "3", "--json").stdout
    )
    assert (pruned["executions"], pruned["batches"]) == (4, 2)
    assert smq("executions", "prune", "--older-than", "30d").stdout.startswith("0 execution(s) deleted")

    # The scheduler prunes on its own with SMQ_RETENTION (off by default).
    forced = json.loads(smq("executions", "delete", f"orders/{running[0]}", "--force", "--json").stdout)
    assert forced["executions"] == 1
    seed(repository, "orders", 2, prefix="late")
    off = json.loads(smq("scheduler", "--once", "--json").stdout)
    assert "retention" not in off
    on = json.loads(smq("scheduler", "--once", "--json", SMQ_RETENTION="30d").stdout)
    assert on["retention"]["executions"] == 2
    fresh = seed(repository, "orders", 1, ended_days_ago=1, prefix="fresh")
    gone = json.loads(smq("definitions", "delete", "orders", "--with-executions", "--json").stdout)
    assert gone["executions"]["executions"] == 1 and gone["versions"] == 1
    assert remaining(repository, fresh)["history"] == 0
