"""An execution whose task went to the dead letters is visibly finished (issue 16, point 7): FAILED with
error smq.DeadLettered and the reason as cause, still FAILED after its dead letter is purged, and
resumed from its last checkpoint by `smq dead retry` (reopen_dead_lettered) or `smq redrive`. SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from smq import HandlerRegistry, Repository, StartRequest, resume_execution, start_execution
from smq.execution.control import redrive_execution, reopen_dead_lettered
from smq.execution.runner import prepare_execution
from smq.repository.queue_records import DEAD_LETTERED, DeadLetters

MACHINE = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Task", "Resource": "work", "ResultPath": "$.first", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "work", "ResultPath": "$.second", "End": True},
    },
}


def _registry(calls: list[str]) -> HandlerRegistry:
    registry = HandlerRegistry()

    def work(payload: Any, ctx: Any) -> Any:
        calls.append(ctx.state_name)
        return ctx.state_name

    registry.register("work", work)
    return registry


def _dead_letter(store: DeadLetters, task_id: str, name: str) -> None:
    store.record(
        task_id=task_id,
        task_name="smq.execute_state_machine",
        queue="critical",
        reason="retries_exhausted",
        payload={"state_machine_id": "DL", "name": name, "input": {}},
        error="OperationalError: the database went away",
        traceback=None,
        attempts=4,
    )


def _at_second_state(repository: Repository, name: str, calls: list[str]) -> str:
    """An execution RUNNING at its checkpoint before Second (First done), as a worker leaves it."""
    record, _, _ = prepare_execution(repository, StartRequest("DL", {}, name=name), handlers=_registry(calls))
    done = resume_execution(repository, record, handlers=_registry(calls), claimed=True, stop_after=1)
    assert (done.status, done.current_state) == ("RUNNING", "Second")
    return record.execution_id


def test_a_dead_lettered_execution_fails_stays_failed_when_purged_and_resumes_on_retry(
    repository: Repository,
) -> None:
    repository.put_definition("DL", MACHINE)
    calls: list[str] = []
    execution_id = _at_second_state(repository, "dl-1", calls)
    store = DeadLetters(repository.engine)
    _dead_letter(store, "task-1", "dl-1")

    failed = repository.get_execution(execution_id)
    assert (failed.status, failed.error, failed.current_state) == ("FAILED", DEAD_LETTERED, "Second")
    assert failed.cause == "retries_exhausted: OperationalError: the database went away"
    assert failed.lease_owner is None and failed.stop_time is not None and failed.duration_ms is not None
    assert failed.cursor is not None  # the last checkpoint, kept for the retry

    (letter,) = store.list()
    store.delete([letter.task_id])  # purge: the execution stays as it ended
    assert repository.get_execution(execution_id).status == "FAILED"

    reopened_once = reopen_dead_lettered(repository, "DL", "dl-1")  # what `smq dead retry` does first
    assert reopened_once is not None and reopened_once.execution_id == execution_id
    assert reopen_dead_lettered(repository, "DL", "dl-1") is None  # once: it is RUNNING now
    reopened = repository.get_execution(execution_id)
    assert (reopened.status, reopened.error, reopened.cause) == ("RUNNING", None, None)
    finished = start_execution(repository, StartRequest("DL", {}, name="dl-1"), handlers=_registry(calls))
    assert finished.status == "SUCCEEDED" and finished.output == {"first": "First", "second": "Second"}
    assert calls == ["First", "Second"]  # First, completed before the dead letter, never ran again


def test_a_dead_lettered_execution_is_redriven_from_its_last_checkpoint(repository: Repository) -> None:
    repository.put_definition("DL", MACHINE)
    calls: list[str] = []
    execution_id = _at_second_state(repository, "dl-2", calls)
    _dead_letter(DeadLetters(repository.engine), "task-2", "dl-2")

    redriven = redrive_execution(repository, execution_id)
    assert (redriven.status, redriven.current_state) == ("RUNNING", "Second")
    assert redriven.cursor is not None and redriven.cursor["execution"]["redrive_count"] == 1
    finished = start_execution(repository, StartRequest("DL", {}, name="dl-2"), handlers=_registry(calls))
    assert finished.status == "SUCCEEDED"
    assert calls == ["First", "Second"]


def test_a_dead_letter_of_a_finished_or_unknown_execution_changes_no_execution(
    repository: Repository,
) -> None:
    repository.put_definition("DL", MACHINE)
    calls: list[str] = []
    done = start_execution(repository, StartRequest("DL", {}, name="dl-3"), handlers=_registry(calls))
    store = DeadLetters(repository.engine)
    _dead_letter(store, "task-3", "dl-3")
    _dead_letter(store, "task-4", "never-started")
    assert repository.get_execution(done.execution_id).status == "SUCCEEDED"
    assert {reopen_dead_lettered(repository, "DL", name) for name in ("dl-3", "never-started")} == {None}
