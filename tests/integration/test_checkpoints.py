"""Which steps share a write (SMQ_CHECKPOINTS), on real databases (SQLite and PostgreSQL).

With `boundaries` (the default) a side-effect-free step leading into another is written with the next
step, and an execution that starts side-effect free is inserted by its first write. What is stored in
the end must be exactly what `every-state` stores, and nothing with an effect may ever wait.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from smq import (
    HandlerRegistry,
    Repository,
    Settings,
    SettingsError,
    StartRequest,
    StateMachine,
    start_execution,
)
from smq.engine.cursor import Step
from smq.engine.handlers import TaskContext
from smq.execution.checkpoints import BOUNDARIES, EVERY_STATE, deferrable, starts_side_effect_free
from smq.execution.runner import prepare_execution

ALL_PURE = {
    "StartAt": "Init",
    "States": {
        "Init": {"Type": "Pass", "Parameters": {"i": 0}, "Next": "Inc"},
        "Inc": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"}, "Next": "Check"},
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.i", "NumericLessThan": 3, "Next": "Inc"}],
            "Default": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}

# Pass, Pass, Task, Pass, Choice, Task, Pass, then Succeed or Fail.
MIXED = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Pass", "Result": 2, "ResultPath": "$.b", "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "work", "ResultPath": "$.work", "Next": "C"},
        "C": {"Type": "Pass", "Result": 3, "ResultPath": "$.c", "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.work.ok", "BooleanEquals": True, "Next": "More"}],
            "Default": "Broken",
        },
        "More": {"Type": "Task", "Resource": "more", "ResultPath": "$.more", "Next": "D"},
        "D": {"Type": "Pass", "Result": 4, "ResultPath": "$.d", "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Broken": {"Type": "Fail", "Error": "Work.Broken", "Cause": "work said no"},
    },
}

STARTS_WITH_TASK = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Task", "Resource": "work", "ResultPath": "$.work", "Next": "After"},
        "After": {"Type": "Pass", "End": True},
    },
}


class CountingWrites:
    """Counts the write transactions a repository makes (its insert and checkpoint paths)."""

    def __init__(self, repository: Repository):
        self.counts: Counter[str] = Counter()
        writes = repository._writes
        insert, checkpoint = writes.insert_execution, writes.checkpoint

        def counted_insert(*args: Any, **kwargs: Any) -> bool:
            self.counts["insert"] += 1
            return insert(*args, **kwargs)

        def counted_checkpoint(*args: Any, **kwargs: Any) -> bool:
            self.counts["checkpoint"] += 1
            return checkpoint(*args, **kwargs)

        writes.insert_execution = counted_insert  # type: ignore[method-assign]
        writes.checkpoint = counted_checkpoint  # type: ignore[method-assign]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def observing_handlers(repository: Repository, seen: dict[str, Any], ok: bool = True) -> HandlerRegistry:
    """Handlers that record, while they run, what the database already holds for their execution."""
    registry = HandlerRegistry()

    def observe(name: str, context: TaskContext) -> None:
        execution = repository.get_execution(context.execution_id)
        seen[name] = (
            execution.status,
            execution.current_state,
            [entry.state_name for entry in repository.history(execution.execution_id)],
        )

    def work(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
        observe("work", context)
        return {"ok": ok}

    def more(payload: dict[str, Any], context: TaskContext) -> dict[str, Any]:
        observe("more", context)
        return {"more": True}

    registry.register("work", work)
    registry.register("more", more)
    return registry


def stored(repository: Repository, execution_id: str) -> tuple[Any, list[tuple[Any, ...]]]:
    record = repository.get_execution(execution_id)
    rows = [
        (h.sequence, h.state_name, h.state_type, h.status, h.input, h.output, h.error, h.cause)
        for h in repository.history(execution_id)
    ]
    assert record.cursor is not None
    # A finished execution keeps the cursor of the state it ended in (redrive restarts from there).
    where = (record.current_state, record.cursor["state"], record.cursor["input"])
    return (record.status, record.output, record.error, record.cause, record.history_length, where), rows


# ------------------------------------------------------------------------------------ the rule itself


def test_only_side_effect_free_steps_into_side_effect_free_states_wait() -> None:
    machine = StateMachine.from_definition(MIXED)
    states = machine.machine.states
    steps: list[Step] = []
    machine.run({}, handlers=observing_handlers_for_unit(), on_step=steps.append)
    ran = [(step.entries[0].state_name, deferrable(step, states)) for step in steps]
    # A→B waits (Pass into Pass); B→Work does not (the Task's effect needs A and B written first);
    # Work never waits (its result is written before anything else runs); C→Route waits; Route→More
    # does not; More does not; D→Done waits; Done ends the execution.
    assert ran == [
        ("A", True),
        ("B", False),
        ("Work", False),
        ("C", True),
        ("Route", False),
        ("More", False),
        ("D", True),
        ("Done", False),
    ]
    assert starts_side_effect_free(states, "A")
    assert not starts_side_effect_free(StateMachine.from_definition(STARTS_WITH_TASK).machine.states, "Work")


def observing_handlers_for_unit() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("work", lambda payload: {"ok": True})
    registry.register("more", lambda payload: {"more": True})
    return registry


def test_a_map_a_wait_and_a_parked_state_never_wait() -> None:
    definition = {
        "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Next": "M"},
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
                "ResultPath": "$.m",
                "Next": "Q",
            },
            "Q": {"Type": "Pass", "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 0, "Next": "End"},
            "End": {"Type": "Pass", "End": True},
        },
    }
    machine = StateMachine.from_definition(definition)
    steps: list[Step] = []
    machine.run({"items": [1, 2]}, on_step=steps.append)
    assert [deferrable(step, machine.machine.states) for step in steps] == [False, False, False, False, False]


# ------------------------------------------------------------------------------- on real databases


@pytest.mark.parametrize("definition, handlers_ok", [(ALL_PURE, True), (MIXED, True), (MIXED, False)])
def test_both_modes_store_the_same_execution_and_history(
    repository: Repository, definition: dict[str, Any], handlers_ok: bool
) -> None:
    repository.put_definition("m", definition)
    results = {}
    for mode in (BOUNDARIES, EVERY_STATE):
        seen: dict[str, Any] = {}
        record = start_execution(
            repository,
            StartRequest("m", {"n": 1}, name=f"run-{mode}"),
            handlers=observing_handlers(repository, seen, ok=handlers_ok),
            checkpoints=mode,
        )
        results[mode] = stored(repository, record.execution_id)
        assert record.history_length == results[mode][0][4]
    assert results[BOUNDARIES] == results[EVERY_STATE]
    status = results[BOUNDARIES][0][0]
    assert status == ("FAILED" if not handlers_ok else "SUCCEEDED")


def test_every_effect_finds_the_states_before_it_written(repository: Repository) -> None:
    repository.put_definition("m", MIXED)
    seen: dict[str, Any] = {}
    start_execution(
        repository,
        StartRequest("m", {}, name="x"),
        handlers=observing_handlers(repository, seen),
        checkpoints=BOUNDARIES,
    )
    # When Work runs, the execution exists (it began with two Pass states, written by its insert),
    # stands on Work and has A and B in its history; when More runs, everything before it is there.
    assert seen["work"] == ("RUNNING", "Work", ["A", "B"])
    assert seen["more"] == ("RUNNING", "More", ["A", "B", "Work", "C", "Route"])


@pytest.mark.parametrize(
    "mode, definition, expected",
    [
        # ALL_PURE enters 8 states: every-state writes the insert and 8 steps; boundaries one insert.
        (EVERY_STATE, ALL_PURE, {"insert": 1, "checkpoint": 8}),
        (BOUNDARIES, ALL_PURE, {"insert": 1}),
        # MIXED enters 8 states: boundaries inserts with A+B, then Work, C+Route, More, D+Done.
        (EVERY_STATE, MIXED, {"insert": 1, "checkpoint": 8}),
        (BOUNDARIES, MIXED, {"insert": 1, "checkpoint": 4}),
        # An execution starting with a Task is inserted before the Task runs, then Work, then After.
        (BOUNDARIES, STARTS_WITH_TASK, {"insert": 1, "checkpoint": 2}),
    ],
)
def test_write_transactions_per_execution(
    repository: Repository, mode: str, definition: dict[str, Any], expected: dict[str, int]
) -> None:
    repository.put_definition("m", definition)
    writes = CountingWrites(repository)
    record = start_execution(
        repository,
        StartRequest("m", {}, name="counted"),
        handlers=observing_handlers(repository, {}),
        checkpoints=mode,
    )
    assert record.status == "SUCCEEDED"
    assert dict(writes.counts) == expected
    assert repository.get_execution(record.execution_id).history_length == len(
        repository.history(record.execution_id)
    )


def test_a_name_taken_while_the_first_steps_ran_resumes_that_execution(repository: Repository) -> None:
    """Another delivery created the execution (written, not yet run): the deferred insert finds it,
    drops its own in-memory steps and carries on with the existing one, from its checkpoint."""
    repository.put_definition("m", ALL_PURE)
    existing, _machine, created = prepare_execution(repository, StartRequest("m", {}, name="dup"))
    assert created is True and existing.status == "RUNNING" and existing.history_length == 0

    record = start_execution(repository, StartRequest("m", {}, name="dup"), checkpoints=BOUNDARIES)
    assert record.execution_id == existing.execution_id
    assert record.status == "SUCCEEDED" and record.output == {"i": 3}
    assert repository.count_executions() == 1
    assert [h.sequence for h in repository.history(record.execution_id)] == list(range(1, 9))

    # And a finished one is returned as it is, with nothing written.
    writes = CountingWrites(repository)
    again = start_execution(repository, StartRequest("m", {}, name="dup"), checkpoints=BOUNDARIES)
    assert again.execution_id == existing.execution_id and again.status == "SUCCEEDED"
    assert writes.total == 1 and writes.counts["insert"] == 1  # the refused insert, nothing else
    assert len(repository.history(record.execution_id)) == 8


def test_a_definition_changed_under_a_cached_version_is_planned_again(
    repository: Repository, database_url: str
) -> None:
    repository.put_definition("m", ALL_PURE)
    first = start_execution(repository, StartRequest("m", {}, name="v1"), checkpoints=BOUNDARIES)
    assert first.version == 1 and first.output == {"i": 3}

    other = Repository.open(database_url)  # another process puts version 2
    try:
        changed = {
            **ALL_PURE,
            "States": {**ALL_PURE["States"], "Done": {"Type": "Pass", "Result": "v2", "End": True}},
        }
        assert other.put_definition("m", changed).version == 2
    finally:
        other.close()

    second = start_execution(repository, StartRequest("m", {}, name="v2"), checkpoints=BOUNDARIES)
    assert second.version == 2 and second.output == "v2"
    assert repository.count_executions() == 2


def test_smq_checkpoints_setting_is_checked() -> None:
    assert Settings.from_env({}).checkpoints == BOUNDARIES
    assert Settings.from_env({"SMQ_CHECKPOINTS": "every-state"}).checkpoints == EVERY_STATE
    with pytest.raises(SettingsError, match="SMQ_CHECKPOINTS"):
        Settings.from_env({"SMQ_CHECKPOINTS": "sometimes"})
    with pytest.raises(ValueError, match="checkpoints must be one of"):
        start_execution(None, StartRequest("m"), checkpoints="sometimes")  # type: ignore[arg-type]
