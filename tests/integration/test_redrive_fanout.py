"""Redriving an execution that failed in a Map or Parallel state runs only the iterations and branches
that did not succeed, as AWS's RedriveExecution does for Inline Map and Parallel states; their results
take their places in the state's output, in order. A Retry of the state still runs every one again."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from smq import ExecutionRecord, HandlerRegistry, Repository, StartRequest, TaskError, start_execution
from smq.execution.control import redrive_execution


def _map(processor_state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Work",
                    "States": {"Work": processor_state},
                },
                "ResultPath": "$.results",
                "Next": "Done",
                **extra,
            },
            "Done": {"Type": "Succeed"},
        },
    }


WORK = {"Type": "Task", "Resource": "work", "End": True}
MAP = _map(WORK, MaxConcurrency=2)
MAP_TOLERANT = _map(WORK, ToleratedFailureCount=1, MaxConcurrency=1)
MAP_RETRIED = _map(
    WORK, MaxConcurrency=1, Retry=[{"ErrorEquals": ["Item.Broken"], "MaxAttempts": 1, "IntervalSeconds": 1}]
)
PARALLEL = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {**WORK, "Parameters": {"item": "left"}}}},
                {"StartAt": "Right", "States": {"Right": {**WORK, "Parameters": {"item": "right"}}}},
            ],
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


class Work:
    """A `work` handler: doubles `item` (or names it), failing with Item.Broken for the broken ones."""

    def __init__(self, broken: set[Any]) -> None:
        self.broken = broken
        self.calls: list[Any] = []
        self._lock = threading.Lock()
        self.registry = HandlerRegistry()
        self.registry.register("work", self._work)

    def _work(self, payload: Any, ctx: Any) -> Any:
        item = payload["item"] if isinstance(payload, dict) else payload
        with self._lock:
            self.calls.append(item)
        if item in self.broken:
            raise TaskError("Item.Broken", f"item {item} is broken")
        return item * 2 if isinstance(item, int) else f"{item} done"


def _run(repository: Repository, work: Work, machine: str, name: str, data: Any) -> ExecutionRecord:
    return start_execution(repository, StartRequest(machine, data, name=name), handlers=work.registry)


def _redrive(repository: Repository, work: Work, machine: str, name: str) -> ExecutionRecord:
    redrive_execution(repository, f"{machine}/{name}")
    return _run(repository, work, machine, name, None)


def test_a_redriven_map_runs_only_the_items_that_failed(repository: Repository) -> None:
    repository.put_definition("rf-map", MAP)
    work = Work(broken={3})
    failed = _run(repository, work, "rf-map", "m-1", {"items": [1, 2, 3, 4]})
    assert (failed.status, failed.error, failed.current_state) == ("FAILED", "Item.Broken", "Each")
    ran_first = sorted(work.calls)
    # The failure cancels what had not started; whatever succeeded is kept for the redrive.
    assert 3 in ran_first
    succeeded = {item for item in ran_first if item != 3}

    work.broken.clear()
    work.calls.clear()
    done = _redrive(repository, work, "rf-map", "m-1")
    assert done.status == "SUCCEEDED"
    assert done.output == {"items": [1, 2, 3, 4], "results": [2, 4, 6, 8]}
    assert sorted(work.calls) == sorted({1, 2, 3, 4} - succeeded)
    assert 3 in work.calls


def test_a_redriven_tolerant_map_reruns_only_its_failures(repository: Repository) -> None:
    """ToleratedFailureCount 1: the second broken item fails the Map, and the item after it never
    started; the redrive runs those three, and keeps the two that succeeded."""
    repository.put_definition("rf-tolerant", MAP_TOLERANT)
    work = Work(broken={2, 4})
    failed = _run(repository, work, "rf-tolerant", "t-1", {"items": [1, 2, 3, 4, 5]})
    assert (failed.status, failed.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    assert work.calls == [1, 2, 3, 4]

    work.broken.clear()
    work.calls.clear()
    done = _redrive(repository, work, "rf-tolerant", "t-1")
    assert (done.status, done.output["results"]) == ("SUCCEEDED", [2, 4, 6, 8, 10])
    assert work.calls == [2, 4, 5]


def test_a_redriven_parallel_runs_only_the_branch_that_failed(repository: Repository) -> None:
    repository.put_definition("rf-parallel", PARALLEL)
    work = Work(broken={"right"})
    failed = _run(repository, work, "rf-parallel", "p-1", {})
    assert (failed.status, failed.error, failed.current_state) == ("FAILED", "Item.Broken", "Both")
    assert sorted(work.calls) == ["left", "right"]

    work.broken.clear()
    work.calls.clear()
    done = _redrive(repository, work, "rf-parallel", "p-1")
    assert (done.status, done.output) == ("SUCCEEDED", ["left done", "right done"])
    assert work.calls == ["right"]


def test_a_map_failing_again_after_a_redrive_keeps_everything_that_succeeded(repository: Repository) -> None:
    repository.put_definition("rf-twice", _map(WORK, MaxConcurrency=1))
    work = Work(broken={2, 3})
    _run(repository, work, "rf-twice", "w-1", {"items": [1, 2, 3]})
    assert work.calls == [1, 2]  # one at a time and not tolerant: the first failure stops the Map

    work.broken = {3}
    work.calls.clear()
    again = _redrive(repository, work, "rf-twice", "w-1")
    assert (again.status, work.calls) == ("FAILED", [2, 3])

    work.broken.clear()
    work.calls.clear()
    done = _redrive(repository, work, "rf-twice", "w-1")
    assert (done.status, done.output["results"]) == ("SUCCEEDED", [2, 4, 6])
    assert work.calls == [3]


def test_a_retry_of_the_map_still_runs_every_item(repository: Repository) -> None:
    """Retry is not redrive: the retried Map state runs all its items again, as in AWS."""
    repository.put_definition("rf-retry", MAP_RETRIED)
    work = Work(broken={2})
    failed = _run(repository, work, "rf-retry", "r-1", {"items": [1, 2]})
    assert (failed.status, work.calls) == ("FAILED", [1, 2, 1, 2])


@pytest.mark.parametrize("items", [[1, 2, 3], [1, 2, 3, 4, 5]], ids=["same-count", "other-count"])
def test_kept_results_apply_only_to_the_same_number_of_items(items: list[int]) -> None:
    """Kept results are matched by position: if the state now has another number of jobs (its input
    was changed), nothing is kept and every item runs."""
    from smq.engine.machine import StateMachine

    machine = StateMachine.from_definition(_map(WORK, MaxConcurrency=1))
    work = Work(broken={2})
    outcome = machine.run({"items": [1, 2, 3]}, handlers=work.registry)
    assert outcome.status == "FAILED"
    assert outcome.cursor is not None and outcome.cursor.kept_results == {"count": 3, "outputs": {"0": 2}}

    work.broken.clear()
    work.calls.clear()
    retried = outcome.cursor.moved(input={"items": items}, attempt=1, retry_counts=())
    done = machine.resume(retried, handlers=work.registry)
    assert done.status == "SUCCEEDED"
    assert work.calls == ([2, 3] if len(items) == 3 else items)


PARKING_PARALLEL = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 3600, "End": True}}},
                {"StartAt": "Right", "States": {"Right": {**WORK, "Parameters": {"item": "right"}}}},
            ],
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


def test_a_stopped_execution_parked_in_a_parallel_keeps_its_finished_branches_on_redrive(
    repository: Repository,
) -> None:
    """Stopped while one branch waited (parked) and the other had finished: the redrive runs only the
    waiting one again (from its start: the stop ended that attempt)."""
    from smq.execution.control import stop_execution

    repository.put_definition("rf-parked", PARKING_PARALLEL)
    work = Work(broken=set())
    parked = start_execution(
        repository, StartRequest("rf-parked", {}, name="pk-1"), handlers=work.registry, park_after=60
    )
    assert (parked.status, parked.current_state, work.calls) == ("WAITING", "Both", ["right"])
    stop_execution(repository, "rf-parked/pk-1")

    work.calls.clear()
    redrive_execution(repository, "rf-parked/pk-1")
    again = start_execution(
        repository, StartRequest("rf-parked", None, name="pk-1"), handlers=work.registry, park_after=60
    )
    assert (again.status, work.calls) == ("WAITING", [])  # the Wait parks again; Right is kept
    assert again.cursor is not None
    assert again.cursor["pending"]["jobs"]["1"] == {"status": "SUCCEEDED", "output": "right done"}
