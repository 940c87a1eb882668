"""Several processes writing executions and history at once: nothing lost, nothing doubled, no locks.

Real child processes (spawn), each with its own connection pool, on SQLite (WAL, BEGIN IMMEDIATE)
and on PostgreSQL. Half the execution names are shared by every process, so the same execution is
raced by all of them: exactly one must exist, with each state recorded once.
"""

from __future__ import annotations

import multiprocessing
import time

from smq import Repository
from tests.integration import concurrency_workers
from tests.integration.concurrency_workers import FOUR_STATES

PROCESSES = 4
OWN_PER_PROCESS = 40
SHARED = 20
STATES_PER_EXECUTION = 4


def test_processes_writing_at_once_lose_and_duplicate_nothing(database_url: str) -> None:
    repository = Repository.open(database_url, auto_upgrade=True)
    repository.put_definition("four", FOUR_STATES)
    shared = [f"shared-{i}" for i in range(SHARED)]
    jobs = []
    start_at = time.time() + 2.0
    for worker in range(PROCESSES):
        own = [f"w{worker}-{i}" for i in range(OWN_PER_PROCESS)]
        names = [
            name
            for pair in zip(own, shared + [None] * OWN_PER_PROCESS, strict=False)
            for name in pair
            if name
        ]
        jobs.append((database_url, worker, names, start_at))
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        reports = pool.starmap(concurrency_workers.run_executions, jobs)

    errors = [error for report in reports for error in report["errors"]]
    assert errors == [], "\n".join(errors)
    expected = PROCESSES * OWN_PER_PROCESS + SHARED
    assert repository.count_executions() == expected
    records = repository.list_executions()
    assert len({r.name for r in records}) == expected
    assert {r.status for r in records} == {"SUCCEEDED"}
    for record in records:
        history = repository.history(record.execution_id)
        assert [h.sequence for h in history] == list(range(1, STATES_PER_EXECUTION + 1)), record.name
        assert [h.state_name for h in history] == ["Receive", "Work", "Check", "Done"], record.name
    # A process that lost a race on a shared execution stepped aside (RUNNING when it looked) or saw
    # it finished; it never failed it.
    for report in reports:
        assert {report["statuses"][name] for name in shared} <= {"SUCCEEDED", "RUNNING"}
    repository.close()


def test_concurrent_definition_versions_are_unique_and_gapless(database_url: str) -> None:
    start_at = time.time() + 1.5
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.starmap(
            concurrency_workers.put_definitions, [(database_url, w, start_at) for w in range(PROCESSES)]
        )
    repository = Repository.open(database_url)
    latest = repository.get_definition("shared").version
    # Versions are 1..latest with no gap or duplicate, each differing from the one before it
    # (an unchanged put never adds a version), and every version a process got back exists.
    comments = [repository.get_definition("shared", v).definition["Comment"] for v in range(1, latest + 1)]
    assert all(a != b for a, b in zip(comments, comments[1:], strict=False))
    assert {v for versions in results for v in versions} <= set(range(1, latest + 1))
    assert PROCESSES * 5 >= latest >= 5
    repository.close()
