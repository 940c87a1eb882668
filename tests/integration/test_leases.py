"""One execution, one runner at a time, on real databases (SQLite and PostgreSQL).

A new execution is leased to the process that creates it from its first write; whoever else is handed
it (a duplicate message, a recovery re-publish, a re-run batch) takes the lease before running it, and
leaves it alone while a live process holds it, so the state in progress is never run twice at once.
Other processes are stood in for by their lease rows: an owner on another host (alive as far as we
can tell), or one on this host whose pid does not exist."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from smq import ExecutionRecord, HandlerRegistry, Repository, StartRequest, resume_execution, start_execution
from smq.execution.leases import ExecutionHeld, LeaseKeeper, local_owner, process_owner
from smq.repository.models import DEAD_LETTER_OWNER_PREFIX, RECOVERY_OWNER
from smq.repository.tables import EXECUTIONS

TWO_TASKS = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Task", "Resource": "count", "ResultPath": "$.first", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "count", "ResultPath": "$.second", "End": True},
    },
}
# Starts side-effect free: inserted by its first write (the coalesced path), then a Task.
PASS_THEN_TASK = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.prepared", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "count", "ResultPath": "$.second", "End": True},
    },
}


class Calls:
    """A `count` handler that records which state called it."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.registry = HandlerRegistry()
        self.registry.register("count", self._count)

    def _count(self, payload: Any, ctx: Any) -> dict[str, Any]:
        self.states.append(ctx.state_name)
        return {"n": len(self.states)}


def _stopped_at_second(repository: Repository, calls: Calls, machine: str, name: str) -> ExecutionRecord:
    """RUNNING at Second, First done: what a process leaves when it stops (or dies) mid-run."""
    record = start_execution(
        repository,
        StartRequest(machine, {}, name=name),
        handlers=calls.registry,
        stop_after=1,
        lease_seconds=30,
    )
    assert (record.status, record.current_state) == ("RUNNING", "Second")
    return record


def _lease(repository: Repository, execution_id: str, owner: str | None, expires: datetime | None) -> None:
    with repository.engine.begin() as connection:
        connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == execution_id)
            .values(lease_owner=owner, lease_expires_at=expires)
        )


def _lease_row(repository: Repository, execution_id: str) -> Any:
    with repository.engine.connect() as connection:
        return connection.execute(
            select(EXECUTIONS.c.lease_owner, EXECUTIONS.c.lease_expires_at).where(
                EXECUTIONS.c.id == execution_id
            )
        ).one()


def _dead_local_pid() -> int:
    """A pid that existed on this host and no longer does."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("definition", [TWO_TASKS, PASS_THEN_TASK], ids=["task-first", "pass-first"])
def test_a_new_execution_is_leased_to_its_creator_from_its_first_write(
    repository: Repository, definition: dict[str, Any]
) -> None:
    repository.put_definition("lease-new", definition)
    calls = Calls()
    before = datetime.now(UTC)
    record = start_execution(
        repository,
        StartRequest("lease-new", {}, name="n-1"),
        handlers=calls.registry,
        stop_after=1,
        lease_seconds=30,
    )
    assert record.status == "RUNNING"
    row = _lease_row(repository, record.execution_id)
    assert row.lease_owner == process_owner()
    assert before + timedelta(seconds=25) < row.lease_expires_at <= datetime.now(UTC) + timedelta(seconds=30)
    # The same process may go on with it (it holds the lease): it finishes, each state once.
    done = start_execution(repository, StartRequest("lease-new", {}, name="n-1"), handlers=calls.registry)
    assert done.status == "SUCCEEDED"
    assert calls.states == (["Second"] if definition is PASS_THEN_TASK else ["First", "Second"])


def test_a_live_lease_keeps_every_other_runner_out(repository: Repository) -> None:
    repository.put_definition("lease-held", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-held", "h-1")
    alive_elsewhere = "another-host.example:4242"
    expires = datetime.now(UTC) + timedelta(seconds=60)
    _lease(repository, record.execution_id, alive_elsewhere, expires)

    # A worker (defer_held) is told who holds it and until when; nothing runs.
    with pytest.raises(ExecutionHeld) as held:
        start_execution(
            repository, StartRequest("lease-held", {}, name="h-1"), handlers=calls.registry, defer_held=True
        )
    assert (held.value.execution_id, held.value.owner) == (record.execution_id, alive_elsewhere)
    assert 55 < held.value.seconds_left() <= 60
    # Anyone else (a local batch, an in-process continuation) gets the record as it is.
    as_is = resume_execution(
        repository, repository.get_execution(record.execution_id), handlers=calls.registry
    )
    assert (as_is.status, as_is.current_state, as_is.history_length) == ("RUNNING", "Second", 1)
    assert calls.states == ["First"]
    assert _lease_row(repository, record.execution_id).lease_owner == alive_elsewhere

    # Once that lease has expired (its process stopped renewing), the next one takes it over.
    _lease(repository, record.execution_id, alive_elsewhere, datetime.now(UTC) - timedelta(seconds=1))
    done = start_execution(
        repository, StartRequest("lease-held", {}, name="h-1"), handlers=calls.registry, defer_held=True
    )
    assert (done.status, calls.states) == ("SUCCEEDED", ["First", "Second"])


@pytest.mark.parametrize(
    "owner",
    [None, RECOVERY_OWNER, f"{DEAD_LETTER_OWNER_PREFIX}task-1", "dead-local-process"],
    ids=["handed-to-the-queue", "recovery", "dead-letter-hold", "dead-local-process"],
)
def test_leases_that_hold_no_live_process_are_taken_at_once(
    repository: Repository, owner: str | None
) -> None:
    repository.put_definition("lease-free", TWO_TASKS)
    calls = Calls()
    name = f"f-{owner}"
    record = _stopped_at_second(repository, calls, "lease-free", name)
    if owner == "dead-local-process":
        owner = local_owner(_dead_local_pid())
    _lease(repository, record.execution_id, owner, datetime.now(UTC) + timedelta(seconds=300))
    done = start_execution(
        repository, StartRequest("lease-free", {}, name=name), handlers=calls.registry, defer_held=True
    )
    assert (done.status, calls.states) == ("SUCCEEDED", ["First", "Second"])


def test_renewals_never_take_a_lease_back(repository: Repository) -> None:
    """A process that stalled past its lease and was taken over keeps renewing: the lease stays with
    the new owner."""
    repository.put_definition("lease-renew", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-renew", "r-1")
    keeper = LeaseKeeper(repository.engine, 30)
    keeper._write([record.execution_id])
    mine = _lease_row(repository, record.execution_id)
    assert mine.lease_owner == process_owner() and mine.lease_expires_at > datetime.now(UTC) + timedelta(
        seconds=25
    )

    successor, until = "successor-host:7", datetime.now(UTC) + timedelta(seconds=5)
    _lease(repository, record.execution_id, successor, until)
    keeper._write([record.execution_id])
    row = _lease_row(repository, record.execution_id)
    assert row.lease_owner == successor
    assert abs((row.lease_expires_at - until).total_seconds()) < 0.01


def test_this_process_pid_is_alive_so_its_lease_is_not_free(repository: Repository) -> None:
    """The dead-process check looks at this host's pids: a live one (here: our parent) holds."""
    repository.put_definition("lease-alive", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-alive", "a-1")
    alive_here = local_owner(os.getppid())
    _lease(repository, record.execution_id, alive_here, datetime.now(UTC) + timedelta(seconds=60))
    with pytest.raises(ExecutionHeld):
        start_execution(
            repository, StartRequest("lease-alive", {}, name="a-1"), handlers=calls.registry, defer_held=True
        )
    assert calls.states == ["First"]


@pytest.mark.parametrize(
    "owner_of",
    [
        lambda pid: f"{socket.gethostname()}:0:{pid}",  # same hostname, another container's namespace
        lambda pid: f"other-host:{pid}",  # an older smq's owner name on another host
    ],
    ids=["other-pid-namespace", "old-form-other-host"],
)
def test_a_dead_pid_counts_only_in_this_pid_namespace(
    repository: Repository, owner_of: Callable[[int], str]
) -> None:
    """Containers may share a hostname: a pid that is dead here may be alive in the holder's container,
    so only the lease's expiry frees it."""
    repository.put_definition("lease-ns", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-ns", "ns-1")
    owner = owner_of(_dead_local_pid())
    _lease(repository, record.execution_id, owner, datetime.now(UTC) + timedelta(seconds=60))
    with pytest.raises(ExecutionHeld) as held:
        start_execution(
            repository, StartRequest("lease-ns", {}, name="ns-1"), handlers=calls.registry, defer_held=True
        )
    assert held.value.owner == owner
    assert calls.states == ["First"]


def test_two_threads_of_one_process_never_run_an_execution_at_once(repository: Repository) -> None:
    """The lease names a process; which of its threads runs the execution is known only here."""
    repository.put_definition("lease-threads", TWO_TASKS)
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []
    registry = HandlerRegistry()

    def count(payload: Any, ctx: Any) -> dict[str, Any]:
        calls.append(ctx.state_name)
        if ctx.state_name == "First":
            entered.set()
            assert release.wait(30)
        return {"n": len(calls)}

    registry.register("count", count)
    request = StartRequest("lease-threads", {}, name="t-1")
    results: list[ExecutionRecord] = []
    first = threading.Thread(
        target=lambda: results.append(
            start_execution(repository, request, handlers=registry, lease_seconds=30)
        )
    )
    first.start()
    try:
        assert entered.wait(30)
        with pytest.raises(ExecutionHeld) as held:
            start_execution(repository, request, handlers=registry, lease_seconds=30, defer_held=True)
        assert held.value.owner == process_owner()
        as_is = start_execution(repository, request, handlers=registry, lease_seconds=30)
        assert (as_is.status, as_is.current_state) == ("RUNNING", "First")
    finally:
        release.set()
        first.join(30)
    assert [record.status for record in results] == ["SUCCEEDED"]
    assert calls == ["First", "Second"]


def test_an_old_form_lease_of_a_dead_local_process_is_taken_at_once(repository: Repository) -> None:
    """Issue 22, point 4: owners an older smq wrote as `host:pid` (no pid namespace). After an upgrade
    the worker that held one is gone: its execution is run at once, not after the lease expires."""
    repository.put_definition("lease-old", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-old", "old-1")
    owner = f"{socket.gethostname()}:{_dead_local_pid()}"
    _lease(repository, record.execution_id, owner, datetime.now(UTC) + timedelta(seconds=300))
    done = start_execution(
        repository, StartRequest("lease-old", {}, name="old-1"), handlers=calls.registry, defer_held=True
    )
    assert (done.status, calls.states) == ("SUCCEEDED", ["First", "Second"])


def test_an_old_form_lease_of_a_live_local_process_still_holds(repository: Repository) -> None:
    """The old form is read as this host's process: a live pid (our parent) keeps its lease."""
    repository.put_definition("lease-old-live", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-old-live", "old-2")
    owner = f"{socket.gethostname()}:{os.getppid()}"
    _lease(repository, record.execution_id, owner, datetime.now(UTC) + timedelta(seconds=60))
    with pytest.raises(ExecutionHeld) as held:
        start_execution(
            repository,
            StartRequest("lease-old-live", {}, name="old-2"),
            handlers=calls.registry,
            defer_held=True,
        )
    assert held.value.owner == owner
    assert calls.states == ["First"]


class Interrupted(Exception):
    """Stands for what stops a worker's run and is retried by Celery (a soft time limit, an outage)."""


def test_a_run_stopped_by_an_exception_lets_go_of_its_lease_for_the_retry(
    repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Celery retry may land on another pool process of the same worker: it resumes at once from the
    last checkpoint instead of waiting for the stopped run's lease to expire (this process is alive)."""
    repository.put_definition("lease-retry", TWO_TASKS)
    calls = Calls()
    record = _stopped_at_second(repository, calls, "lease-retry", "retry-1")

    def interrupted(payload: Any, ctx: Any) -> Any:
        raise Interrupted("soft time limit")

    stopping = HandlerRegistry()
    stopping.register("count", interrupted)
    with pytest.raises(Interrupted):
        start_execution(
            repository,
            StartRequest("lease-retry", {}, name="retry-1"),
            handlers=stopping,
            pass_through=(Interrupted,),
            lease_seconds=30,
        )
    row = _lease_row(repository, record.execution_id)
    assert (row.lease_owner, row.lease_expires_at) == (process_owner(), None)

    # The retry, in another (live) process of this host: stood in for by another owner name.
    monkeypatch.setattr("smq.execution.leases._owner", (os.getpid(), local_owner(os.getppid())))
    done = start_execution(
        repository,
        StartRequest("lease-retry", {}, name="retry-1"),
        handlers=calls.registry,
        defer_held=True,
        lease_seconds=30,
    )
    assert (done.status, calls.states) == ("SUCCEEDED", ["First", "Second"])
