"""The repository on real databases: definitions, recorded runs, checkpoints, queries and stats.

Every test runs twice, on SQLite (a private file) and on PostgreSQL (a private, emptied database),
through the `repository` fixture of tests/conftest.py.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

import smq
from smq import (
    ExecutionRecord,
    HandlerRegistry,
    NotFound,
    Repository,
    StartRequest,
    StateMachine,
    TaskError,
    resume_execution,
    start_execution,
)
from smq.engine.cursor import Cursor, HistoryEntry, Step
from smq.errors import CheckpointConflict, PayloadTooLarge
from smq.execution.runner import prepare_execution
from smq.repository.filters import ExecutionFilter, FilterError, parse_filter
from smq.repository.tables import CHAIN_LINKS as chain_links
from smq.repository.tables import EXECUTIONS as executions
from smq.repository.tables import HISTORY as history

# ---------------------------------------------------------------------------------------- machines

ORDER = {
    "Comment": "Prepare, work (a Task), check, succeed or fail.",
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Parameters": {"n.$": "$.n", "tag": "ü-ok"}, "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "work", "ResultPath": "$.work", "Next": "Check"},
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.work.doubled", "NumericGreaterThan": 100, "Next": "TooBig"}],
            "Default": "Done",
        },
        "TooBig": {"Type": "Fail", "Error": "Order.TooBig", "Cause": "doubled above 100"},
        "Done": {"Type": "Succeed"},
    },
}

FOUR_TASKS = {
    "StartAt": "T1",
    "States": {
        "T1": {"Type": "Task", "Resource": "t1", "ResultPath": "$.t1", "Next": "T2"},
        "T2": {"Type": "Task", "Resource": "t2", "ResultPath": "$.t2", "Next": "T3"},
        "T3": {"Type": "Task", "Resource": "t3", "ResultPath": "$.t3", "Next": "T4"},
        "T4": {"Type": "Task", "Resource": "t4", "ResultPath": "$.t4", "End": True},
    },
}

LOOP = {
    "StartAt": "Init",
    "States": {
        "Init": {"Type": "Pass", "Parameters": {"i": 0}, "Next": "Inc"},
        "Inc": {
            "Type": "Pass",
            "Parameters": {"i.$": "States.MathAdd($.i, 1)", "visit.$": "States.Format('visit {}', $.i)"},
            "Next": "Check",
        },
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.i", "NumericLessThan": 3, "Next": "Inc"}],
            "Default": "Done",
        },
        "Done": {"Type": "Pass", "Parameters": {"final.$": "$.i"}, "End": True},
    },
}

PASSES = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "ResultPath": "$.prepared", "Result": True, "Next": "Work"},
        "Work": {"Type": "Pass", "ResultPath": "$.worked", "Result": True, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}

FAILS = {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Refund.Denied", "Cause": "nope"}}}

UNKNOWN_RESOURCE = {
    "StartAt": "Call",
    "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:lambda:eu-west-1:1:function:missing", "End": True}
    },
}


def order_handlers(calls: Counter[str] | None = None) -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("work")
    def work(payload: dict[str, Any]) -> dict[str, Any]:
        if calls is not None:
            calls["work"] += 1
        return {"doubled": payload["n"] * 2}

    return registry


def counting_handlers(calls: Counter[str]) -> HandlerRegistry:
    """t1..t4: each adds its number to `value` and counts its calls."""
    registry = HandlerRegistry()

    def make(number: int) -> Any:
        def task(payload: dict[str, Any]) -> dict[str, Any]:
            calls[f"t{number}"] += 1
            previous = payload.get(f"t{number - 1}", {"value": payload["start"]})["value"]
            return {"value": previous * 10 + number}

        return task

    for number in range(1, 5):
        registry.register(f"t{number}", make(number))
    return registry


def rows(repository: Repository, table: Any) -> int:
    with repository.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def snapshot(repository: Repository) -> tuple[int, int, int]:
    return rows(repository, executions), rows(repository, history), rows(repository, chain_links)


def semantic(entry: Any) -> tuple[Any, ...]:
    """What a history entry says, without times or sequence numbers."""
    return (
        entry.state_name,
        entry.state_type,
        entry.status,
        entry.input,
        entry.output,
        entry.error,
        entry.cause,
        entry.attempt,
        entry.scope,
    )


# ------------------------------------------------------------------------------------- definitions


def test_definitions_are_versioned_by_content(repository: Repository) -> None:
    first = repository.put_definition("orders", ORDER)
    assert first.version == 1
    assert first.created_at.tzinfo is not None

    # The same definition (even with its keys in another order) keeps its version.
    reordered = {"States": ORDER["States"], "StartAt": ORDER["StartAt"], "Comment": ORDER["Comment"]}
    assert repository.put_definition("orders", dict(ORDER)).version == 1
    assert repository.put_definition("orders", reordered).version == 1

    changed = {**ORDER, "Comment": "changed"}
    assert repository.put_definition("orders", changed).version == 2
    assert repository.put_definition("orders", changed).version == 2
    repository.put_definition("refunds", FAILS)

    latest = repository.get_definition("orders")
    assert (latest.version, latest.definition) == (2, changed)
    assert repository.get_definition("orders", 1).definition == ORDER
    assert repository.get_definition("orders", 2).definition["Comment"] == "changed"

    listed = repository.list_definitions()
    assert [(d["state_machine_id"], d["latest_version"], d["versions"]) for d in listed] == [
        ("orders", 2, 2),
        ("refunds", 1, 1),
    ]
    assert all(isinstance(d["updated_at"], str) and d["updated_at"].endswith("Z") for d in listed)

    # The compiled machine is that version's.
    machine, version = repository.state_machine("orders", 1)
    assert version == 1 and machine.definition["Comment"] == ORDER["Comment"]


def test_invalid_definition_is_rejected_and_nothing_is_stored(repository: Repository) -> None:
    broken = {"StartAt": "Missing", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}
    with pytest.raises(smq.DefinitionError) as caught:
        repository.put_definition("broken", broken)
    assert "Nowhere" in str(caught.value) or "Missing" in str(caught.value)
    assert repository.list_definitions() == []
    with pytest.raises(NotFound):
        repository.get_definition("broken")

    # An invalid change to an existing machine does not add a version either.
    repository.put_definition("orders", ORDER)
    with pytest.raises(smq.DefinitionError):
        repository.put_definition("orders", broken)
    assert repository.get_definition("orders").version == 1
    assert repository.list_definitions()[0]["versions"] == 1


def test_unknown_definitions_and_executions_are_not_found(repository: Repository) -> None:
    with pytest.raises(NotFound, match="nosuch"):
        repository.get_definition("nosuch")
    repository.put_definition("orders", ORDER)
    with pytest.raises(NotFound, match="version 7"):
        repository.get_definition("orders", 7)
    with pytest.raises(NotFound):
        repository.get_execution("no-such-execution")
    with pytest.raises(NotFound):
        repository.history("no-such-execution")
    with pytest.raises(NotFound):
        start_execution(repository, StartRequest("nosuch", {}), handlers=HandlerRegistry())
    assert snapshot(repository) == (0, 0, 0)


# ------------------------------------------------------------------------------- starting executions


def test_start_records_the_run_and_its_history(repository: Repository) -> None:
    repository.put_definition("orders", ORDER)
    calls: Counter[str] = Counter()
    before = datetime.now(UTC)
    record = start_execution(
        repository, StartRequest("orders", {"n": 21}, name="order-21"), handlers=order_handlers(calls)
    )
    after = datetime.now(UTC)

    assert record.status == "SUCCEEDED"
    assert record.output == {"n": 21, "tag": "ü-ok", "work": {"doubled": 42}}
    assert (record.error, record.cause) == (None, None)
    assert record.name == "order-21" and record.version == 1 and record.state_machine_id == "orders"
    assert calls == {"work": 1}

    stored = repository.get_execution(record.execution_id)
    assert stored.status == "SUCCEEDED" and stored.output == record.output
    assert stored.input == {"n": 21}
    # A finished execution keeps the cursor of the state it ended in (redrive restarts from there).
    assert stored.cursor is not None and stored.cursor["state"] == stored.current_state
    assert (
        before - timedelta(seconds=1) <= stored.start_time <= stored.stop_time <= after + timedelta(seconds=1)
    )
    assert stored.start_time.tzinfo is not None and stored.stop_time.tzinfo is not None
    assert stored.duration_ms is not None and stored.duration_ms >= 0
    assert repository.find_execution("orders", "order-21") == stored
    assert repository.resolve_execution("orders/order-21").execution_id == record.execution_id

    # The recorded history is the engine's own run, state for state.
    expected = StateMachine.from_definition(ORDER).run({"n": 21}, handlers=order_handlers())
    recorded = repository.history(record.execution_id)
    assert [h.sequence for h in recorded] == list(range(1, len(expected.history) + 1))
    assert [semantic(h) for h in recorded] == [semantic(h) for h in expected.history]
    assert [h.state_name for h in recorded] == ["Prepare", "Work", "Check", "Done"]
    assert [h.state_type for h in recorded] == ["Pass", "Task", "Choice", "Succeed"]
    assert stored.history_length == len(recorded)
    previous = stored.start_time - timedelta(milliseconds=1)
    for entry in recorded:
        assert entry.entered_at.tzinfo is not None and entry.exited_at.tzinfo is not None
        assert previous <= entry.entered_at <= entry.exited_at
        previous = entry.exited_at
    assert recorded[-1].exited_at == stored.stop_time
    body = recorded[1].to_dict()
    assert body["timestamp"].endswith("Z") and body["output"] == {
        "n": 21,
        "tag": "ü-ok",
        "work": {"doubled": 42},
    }


def test_starting_the_same_name_again_returns_the_same_execution(repository: Repository) -> None:
    repository.put_definition("orders", ORDER)
    calls: Counter[str] = Counter()
    handlers = order_handlers(calls)
    first = start_execution(repository, StartRequest("orders", {"n": 1}, name="once"), handlers=handlers)
    counts = snapshot(repository)
    history_before = repository.history(first.execution_id)

    again = start_execution(repository, StartRequest("orders", {"n": 999}, name="once"), handlers=handlers)
    assert again.execution_id == first.execution_id
    assert again.status == "SUCCEEDED" and again.output == first.output and again.input == {"n": 1}
    assert snapshot(repository) == counts
    assert repository.history(first.execution_id) == history_before
    assert calls == {"work": 1}

    # Names are unique per state machine only; an unnamed start always makes a new execution.
    repository.put_definition("other", ORDER)
    other = start_execution(repository, StartRequest("other", {"n": 1}, name="once"), handlers=handlers)
    assert other.execution_id != first.execution_id
    unnamed = [
        start_execution(repository, StartRequest("orders", {"n": 2}), handlers=handlers) for _ in range(2)
    ]
    assert unnamed[0].execution_id != unnamed[1].execution_id
    assert unnamed[0].name == unnamed[0].execution_id
    assert repository.count_executions() == 4


def test_failed_execution_records_error_and_cause(repository: Repository) -> None:
    repository.put_definition("orders", ORDER)
    record = start_execution(
        repository, StartRequest("orders", {"n": 51}, name="big"), handlers=order_handlers()
    )
    assert (record.status, record.error, record.cause, record.output) == (
        "FAILED",
        "Order.TooBig",
        "doubled above 100",
        None,
    )
    stored = repository.get_execution(record.execution_id)
    assert (stored.status, stored.error, stored.cause) == ("FAILED", "Order.TooBig", "doubled above 100")
    assert stored.stop_time is not None and stored.duration_ms is not None
    entries = repository.history(record.execution_id)
    assert [(h.state_name, h.status) for h in entries][-1] == ("TooBig", "FAILED")
    assert (entries[-1].error, entries[-1].cause) == ("Order.TooBig", "doubled above 100")

    # A handler raising TaskError fails the execution with the handler's error name.
    def refuse(payload: Any) -> Any:
        raise TaskError("Work.Refused", "closed on Sundays")

    handlers = HandlerRegistry()
    handlers.register("work", refuse)
    refused = start_execution(repository, StartRequest("orders", {"n": 1}), handlers=handlers)
    assert (refused.status, refused.error, refused.cause) == ("FAILED", "Work.Refused", "closed on Sundays")
    assert repository.count_executions(ExecutionFilter(statuses=("FAILED",))) == 2


def test_payload_above_the_limit_writes_nothing(repository: Repository) -> None:
    repository.put_definition("orders", ORDER)
    counts = snapshot(repository)
    with pytest.raises(PayloadTooLarge, match="100 bytes"):
        start_execution(
            repository,
            StartRequest("orders", {"n": 1, "blob": "x" * 200}, name="too-big"),
            handlers=order_handlers(),
            payload_limit=100,
        )
    assert snapshot(repository) == counts == (0, 0, 0)
    assert repository.find_execution("orders", "too-big") is None
    # Just under the limit is fine.
    small = start_execution(
        repository, StartRequest("orders", {"n": 1}), handlers=order_handlers(), payload_limit=100
    )
    assert small.status == "SUCCEEDED"


def test_unregistered_resource_writes_nothing(repository: Repository) -> None:
    repository.put_definition("calls", UNKNOWN_RESOURCE)
    with pytest.raises(smq.UnknownResourceError, match="missing"):
        start_execution(repository, StartRequest("calls", {}, name="c"), handlers=order_handlers())
    assert snapshot(repository) == (0, 0, 0)
    with pytest.raises(smq.UnknownResourceError):
        prepare_execution(repository, StartRequest("calls", {}, name="c"), handlers=HandlerRegistry())
    assert repository.count_executions() == 0


def test_executions_ended_by_the_driver_are_recorded(repository: Repository) -> None:
    forever = {
        "StartAt": "Spin",
        "States": {
            "Spin": {"Type": "Pass", "Next": "Again"},
            "Again": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "End"}],
                "Default": "Spin",
            },
            "End": {"Type": "Succeed"},
        },
    }
    repository.put_definition("forever", forever)
    spun = start_execution(
        repository, StartRequest("forever", {}), handlers=HandlerRegistry(), max_transitions=5
    )
    assert (spun.status, spun.error) == ("FAILED", "States.Runtime")
    assert "5" in (spun.cause or "")
    stored = repository.get_execution(spun.execution_id)
    assert stored == spun
    assert stored.cursor is not None and stored.cursor["state"] == stored.current_state
    assert stored.stop_time is not None and stored.duration_ms is not None
    assert stored.history_length == len(repository.history(spun.execution_id)) == 5

    slow = {
        "TimeoutSeconds": 1,
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Nap"},
            "Nap": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    repository.put_definition("slow", slow)
    clock = smq.VirtualClock()
    timed_out = start_execution(
        repository, StartRequest("slow", {}), handlers=HandlerRegistry(), clock=clock.now, sleep=clock.sleep
    )
    assert (timed_out.status, timed_out.error) == ("TIMED_OUT", "States.Timeout")
    stored = repository.get_execution(timed_out.execution_id)
    assert (stored.status, stored.error) == ("TIMED_OUT", "States.Timeout")
    assert stored.cursor is not None and stored.cursor["state"] == "Nap"  # kept for redrive
    assert stored.stop_time is not None
    entries = repository.history(timed_out.execution_id)
    assert entries[0].state_name == "First" and "Done" not in [h.state_name for h in entries]
    assert stored.history_length == len(entries)


def test_a_running_execution_finishes_on_the_version_it_started_with(repository: Repository) -> None:
    repository.put_definition("passes", PASSES)
    record, machine, _ = prepare_execution(repository, StartRequest("passes", {"v": 1}, name="old"))
    record = resume_execution(repository, record, machine=machine, handlers=HandlerRegistry(), stop_after=1)
    assert record.current_state == "Work"

    changed = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": "v2", "ResultPath": "$.version", "Next": "Work"},
            "Work": {"Type": "Pass", "Result": "v2", "ResultPath": "$.worked", "End": True},
        },
    }
    assert repository.put_definition("passes", changed).version == 2
    finished = resume_execution(
        repository, repository.get_execution(record.execution_id), handlers=HandlerRegistry()
    )
    assert (finished.version, finished.status) == (1, "SUCCEEDED")
    assert finished.output == {"v": 1, "prepared": True, "worked": True}
    assert [h.state_name for h in repository.history(record.execution_id)] == ["Prepare", "Work", "Done"]

    # Starting the same name again, now that v2 is the latest, still returns the v1 execution.
    again = start_execution(
        repository, StartRequest("passes", {"v": 1}, name="old"), handlers=HandlerRegistry()
    )
    assert (again.execution_id, again.version) == (record.execution_id, 1)
    new = start_execution(repository, StartRequest("passes", {"v": 2}), handlers=HandlerRegistry())
    assert (new.version, new.output) == (2, {"v": 2, "version": "v2", "worked": "v2"})
    pinned = start_execution(
        repository, StartRequest("passes", {"v": 3}, version=1), handlers=HandlerRegistry()
    )
    assert (pinned.version, pinned.output) == (1, {"v": 3, "prepared": True, "worked": True})


ODD_VALUES: list[Any] = [
    0,
    False,
    "",
    [],
    {},
    1.5,
    -(2**63),
    2**63 - 1,
    "123",
    "ünï 😀",
    [None, True, {"a": [1, {"b": None}], "big": 2**70 + 1}],
]


def test_json_values_round_trip_exactly(repository: Repository) -> None:
    """Inputs, outputs and history payloads come back as they went in, scalars and edge values included."""
    echo = {"StartAt": "Echo", "States": {"Echo": {"Type": "Task", "Resource": "echo", "End": True}}}
    repository.put_definition("echo", echo)
    handlers = HandlerRegistry()
    handlers.register("echo", lambda payload: payload)
    for index, value in enumerate(ODD_VALUES):
        record = start_execution(repository, StartRequest("echo", value, name=f"v{index}"), handlers=handlers)
        stored = repository.get_execution(record.execution_id)
        expected = {} if value is None else value
        assert (stored.status, stored.input, stored.output) == ("SUCCEEDED", expected, expected), value
        assert type(stored.output) is type(expected), value
        (entry,) = repository.history(record.execution_id)
        assert (entry.input, entry.output) == (expected, expected), value
        assert type(entry.output) is type(expected), value


def test_a_bare_integer_beyond_64_bits_round_trips_exactly(
    repository: Repository, request: pytest.FixtureRequest
) -> None:
    echo = {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}
    repository.put_definition("echo", echo)
    record = start_execution(repository, StartRequest("echo", 2**70 + 1), handlers=HandlerRegistry())
    stored = repository.get_execution(record.execution_id)
    assert (stored.input, stored.output) == (2**70 + 1, 2**70 + 1)
    assert type(stored.input) is type(stored.output) is int


def test_a_value_the_database_cannot_store_does_not_leave_the_execution_running(
    repository: Repository, request: pytest.FixtureRequest
) -> None:
    nul = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "nul", "Next": "Done"}, "Done": {"Type": "Succeed"}},
    }
    repository.put_definition("nul", nul)
    handlers = HandlerRegistry()
    handlers.register("nul", lambda payload: {"s": "a\u0000b"})
    try:
        start_execution(repository, StartRequest("nul", {}, name="nul"), handlers=handlers)
    finally:
        stored = repository.find_execution("nul", "nul")
    assert stored is not None and stored.status != "RUNNING"
    if stored.status == "SUCCEEDED":
        assert stored.output == {"s": "a\u0000b"}


# ------------------------------------------------------------------------------------- checkpoints


def test_partial_progress_resumes_without_repeating_completed_states(repository: Repository) -> None:
    repository.put_definition("four", FOUR_TASKS)
    calls: Counter[str] = Counter()
    handlers = counting_handlers(calls)

    record, machine, created = prepare_execution(
        repository, StartRequest("four", {"start": 7}, name="resumable"), handlers=handlers
    )
    assert created and record.status == "RUNNING" and record.current_state == "T1"
    assert record.history_length == 0 and repository.history(record.execution_id) == []
    assert calls == {}

    partial = resume_execution(repository, record, machine=machine, handlers=handlers, stop_after=2)
    assert partial.status == "RUNNING"
    assert partial.current_state == "T3"
    assert partial.history_length == 2
    assert [h.state_name for h in repository.history(record.execution_id)] == ["T1", "T2"]
    assert partial.cursor is not None and partial.output is None and partial.stop_time is None
    assert calls == {"t1": 1, "t2": 1}
    assert repository.list_executions(ExecutionFilter(current_state="T3")) == [partial]

    # Preparing the same name again finds the RUNNING execution, it does not start a new one.
    found, _, created_again = prepare_execution(
        repository, StartRequest("four", {"start": 7}, name="resumable"), handlers=handlers
    )
    assert not created_again and found.execution_id == record.execution_id and found.history_length == 2

    finished = resume_execution(repository, repository.get_execution(record.execution_id), handlers=handlers)
    assert finished.status == "SUCCEEDED"
    assert calls == {"t1": 1, "t2": 1, "t3": 1, "t4": 1}
    entries = repository.history(record.execution_id)
    assert [h.state_name for h in entries] == ["T1", "T2", "T3", "T4"]
    assert [h.sequence for h in entries] == [1, 2, 3, 4]

    uninterrupted = StateMachine.from_definition(FOUR_TASKS).run(
        {"start": 7}, handlers=counting_handlers(Counter())
    )
    assert finished.output == uninterrupted.output
    assert finished.output["t4"] == {"value": 71234}
    assert [semantic(h) for h in entries] == [semantic(h) for h in uninterrupted.history]

    # Resuming from a stale record (read before the work was done) writes nothing more.
    counts = snapshot(repository)
    stale = resume_execution(repository, partial, handlers=handlers)
    assert stale.status == "SUCCEEDED" and stale.execution_id == record.execution_id
    assert snapshot(repository) == counts
    assert [h.state_name for h in repository.history(record.execution_id)] == ["T1", "T2", "T3", "T4"]


def test_checkpoint_with_a_stale_history_length_conflicts_and_writes_nothing(repository: Repository) -> None:
    repository.put_definition("four", FOUR_TASKS)
    handlers = counting_handlers(Counter())
    record, machine, _ = prepare_execution(repository, StartRequest("four", {"start": 1}), handlers=handlers)
    record = resume_execution(repository, record, machine=machine, handlers=handlers, stop_after=1)
    assert record.history_length == 1

    cursor = Cursor.from_dict(record.cursor or {})
    now = datetime.now(UTC).timestamp()
    entry = HistoryEntry(
        "T2", "Task", "SUCCEEDED", input={"x": 1}, output={"x": 2}, entered_at=now, exited_at=now
    )
    step = Step([entry], cursor=cursor.moved(state="T3", input={"x": 2}, transitions=cursor.transitions + 1))
    start_time = cursor.execution.start_time
    counts = snapshot(repository)

    for stale in (0, 2, 5):
        with pytest.raises(CheckpointConflict):
            repository.checkpoint(record.execution_id, stale, step, start_time=start_time)
    assert snapshot(repository) == counts
    unchanged = repository.get_execution(record.execution_id)
    assert (unchanged.history_length, unchanged.current_state, unchanged.status) == (1, "T2", "RUNNING")

    # The writer holding the right length succeeds, once.
    repository.checkpoint(record.execution_id, 1, step, start_time=start_time)
    moved = repository.get_execution(record.execution_id)
    assert (moved.history_length, moved.current_state) == (2, "T3")
    with pytest.raises(CheckpointConflict):
        repository.checkpoint(record.execution_id, 1, step, start_time=start_time)
    assert [h.sequence for h in repository.history(record.execution_id)] == [1, 2]

    # A finished execution accepts no checkpoint, even at its true length.
    repository.finish(record.execution_id, 2, "ABORTED", "States.Aborted", "stopped", start_time=start_time)
    aborted = repository.get_execution(record.execution_id)
    assert (aborted.status, aborted.error) == ("ABORTED", "States.Aborted")
    assert aborted.cursor is not None and aborted.cursor["state"] == aborted.current_state  # kept for redrive
    with pytest.raises(CheckpointConflict):
        repository.checkpoint(record.execution_id, 2, step, start_time=start_time)
    assert rows(repository, history) == 2


# ------------------------------------------------------------------------------------------ queries

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def start_at(
    repository: Repository,
    state_machine_id: str,
    name: str,
    seconds: float,
    *,
    stop_after: int | None = None,
    run: bool = True,
    source: ExecutionRecord | None = None,
) -> ExecutionRecord:
    """An execution whose start time is T0 + seconds (the public begin/create/resume path)."""
    machine, version = repository.state_machine(state_machine_id)
    cursor = machine.begin(
        {"name": name}, name=name, start_time=(T0 + timedelta(seconds=seconds)).timestamp()
    )
    record, created = repository.create_execution(
        cursor, version=version, source_execution_id=None if source is None else source.execution_id
    )
    assert created
    if not run:
        return record
    options = {} if stop_after is None else {"stop_after": stop_after}
    return resume_execution(repository, record, machine=machine, handlers=HandlerRegistry(), **options)


@pytest.fixture
def seeded(repository: Repository) -> dict[str, ExecutionRecord]:
    repository.put_definition("orders", PASSES)
    repository.put_definition("refunds", FAILS)
    repository.put_definition("audit", PASSES)
    made: dict[str, ExecutionRecord] = {}
    plan: list[tuple[str, str, float, dict[str, Any]]] = [
        ("orders", "o-1", 0, {}),
        ("orders", "o-2", 10, {}),
        ("refunds", "r-1", 15, {}),
        ("orders", "o-3", 20, {}),
        ("refunds", "r-2", 25, {}),
        ("orders", "100%_done", 30, {}),
        ("orders", "w-1", 35, {"run": False}),
        ("orders", "100xxdone", 40, {}),
        ("orders", "w-2", 45, {"stop_after": 1}),
        ("orders", "a_b", 50, {}),
        ("orders", "axb", 60, {}),
        *[("orders", f"t-{i}", 70, {}) for i in range(5)],  # five executions started at the same instant
    ]
    for machine_id, name, seconds, options in plan:
        made[name] = start_at(repository, machine_id, name, seconds, **options)
    made["audit-1"] = start_at(repository, "audit", "audit-1", 80, source=made["o-1"])
    return made


def names(records: list[ExecutionRecord]) -> list[str]:
    return [r.name for r in records]


def query(repository: Repository, flt: ExecutionFilter) -> set[str]:
    found = repository.list_executions(flt)
    assert repository.count_executions(flt) == len(found), flt
    return set(names(found))


def test_seeded_executions_have_the_expected_statuses(
    repository: Repository, seeded: dict[str, ExecutionRecord]
) -> None:
    statuses = {name: repository.get_execution(r.execution_id).status for name, r in seeded.items()}
    assert statuses["r-1"] == statuses["r-2"] == "FAILED"
    assert statuses["w-1"] == statuses["w-2"] == "RUNNING"
    assert Counter(statuses.values()) == {"SUCCEEDED": 13, "FAILED": 2, "RUNNING": 2}
    assert repository.count_executions() == len(seeded) == 17
    assert repository.get_execution(seeded["o-2"].execution_id).start_time == T0 + timedelta(seconds=10)


def test_filter_by_each_key(repository: Repository, seeded: dict[str, ExecutionRecord]) -> None:
    everyone = set(seeded)
    orders = everyone - {"r-1", "r-2", "audit-1"}
    ties = {f"t-{i}" for i in range(5)}

    assert query(repository, ExecutionFilter()) == everyone
    assert query(repository, ExecutionFilter(state_machine_id="refunds")) == {"r-1", "r-2"}
    assert query(repository, ExecutionFilter(state_machine_id="orders")) == orders
    assert query(repository, ExecutionFilter(state_machine_id="nosuch")) == set()

    assert query(repository, ExecutionFilter(statuses=("RUNNING",))) == {"w-1", "w-2"}
    assert query(repository, ExecutionFilter(statuses=("FAILED", "RUNNING"))) == {"r-1", "r-2", "w-1", "w-2"}
    assert query(repository, parse_filter("status=failed|running")) == {"r-1", "r-2", "w-1", "w-2"}
    assert query(repository, parse_filter("status=SUCCEEDED|FAILED|RUNNING")) == everyone
    assert query(repository, parse_filter("status=TIMED_OUT|ABORTED")) == set()
    assert query(repository, parse_filter("state_machine_id=orders,status=SUCCEEDED")) == orders - {
        "w-1",
        "w-2",
    }

    assert query(repository, ExecutionFilter(name_prefix="o-")) == {"o-1", "o-2", "o-3"}
    assert query(repository, ExecutionFilter(name_prefix="t-")) == ties
    # LIKE wildcards in the text are literal characters.
    assert query(repository, ExecutionFilter(name_prefix="a_")) == {"a_b"}
    assert query(repository, ExecutionFilter(name_prefix="100%")) == {"100%_done"}
    assert query(repository, ExecutionFilter(name_contains="%_")) == {"100%_done"}
    assert query(repository, ExecutionFilter(name_contains="%")) == {"100%_done"}
    assert query(repository, ExecutionFilter(name_contains="_")) == {"100%_done", "a_b"}
    assert query(repository, ExecutionFilter(name_contains="x")) == {"100xxdone", "axb"}
    assert query(repository, parse_filter("name_contains=0%_d")) == {"100%_done"}
    assert query(repository, ExecutionFilter(name_contains="done")) == {"100%_done", "100xxdone"}

    at_20 = T0 + timedelta(seconds=20)
    assert query(repository, ExecutionFilter(started_before=at_20)) == {"o-1", "o-2", "r-1"}
    assert query(repository, ExecutionFilter(started_after=T0 + timedelta(seconds=60))) == ties | {"audit-1"}
    # Both bounds are exclusive; other time zones name the same instant.
    window = ExecutionFilter(started_after=at_20, started_before=T0 + timedelta(seconds=40))
    assert query(repository, window) == {"r-2", "100%_done", "w-1"}
    plus_five = timezone(timedelta(hours=5))
    assert query(
        repository,
        ExecutionFilter(started_after=at_20.astimezone(plus_five), started_before=T0 + timedelta(seconds=40)),
    ) == {
        "r-2",
        "100%_done",
        "w-1",
    }
    assert query(
        repository,
        parse_filter("started_after=2025-03-01T17:00:20+05:00,started_before=2025-03-01T12:00:40Z"),
    ) == {
        "r-2",
        "100%_done",
        "w-1",
    }
    # A time without a zone given as text is read as UTC.
    assert query(repository, parse_filter("started_before=2025-03-01T12:00:20")) == {"o-1", "o-2", "r-1"}

    assert query(repository, ExecutionFilter(current_state="Prepare")) == {"w-1"}
    assert query(repository, ExecutionFilter(current_state="Work")) == {"w-2"}
    assert query(repository, parse_filter("current_state=Work,status=RUNNING")) == {"w-2"}

    source = seeded["o-1"].execution_id
    assert query(repository, ExecutionFilter(source_execution_id=source)) == {"audit-1"}
    assert query(repository, parse_filter(f"source_execution_id={seeded['o-2'].execution_id}")) == set()
    assert query(repository, ExecutionFilter(not_chained_into="audit")) == everyone - {"o-1"}
    assert query(
        repository, ExecutionFilter(state_machine_id="orders", not_chained_into="audit")
    ) == orders - {"o-1"}
    assert query(repository, ExecutionFilter(not_chained_into="orders")) == everyone


def test_name_filters_are_case_sensitive_on_every_backend(
    repository: Repository, request: pytest.FixtureRequest
) -> None:
    repository.put_definition("orders", PASSES)
    for name in ("Order-1", "order-2"):
        start_execution(repository, StartRequest("orders", {}, name=name), handlers=HandlerRegistry())
    assert query(repository, ExecutionFilter(name_prefix="order")) == {"order-2"}
    assert query(repository, ExecutionFilter(name_contains="Order")) == {"Order-1"}


def test_limit_offset_and_ordering(repository: Repository, seeded: dict[str, ExecutionRecord]) -> None:
    everything = repository.list_executions()
    keys = [(r.start_time, r.execution_id) for r in everything]
    assert keys == sorted(keys)
    assert len({r.execution_id for r in everything}) == len(everything) == 17

    assert repository.list_executions(ExecutionFilter(limit=3)) == everything[:3]
    assert repository.list_executions(ExecutionFilter(offset=5)) == everything[5:]
    assert repository.list_executions(ExecutionFilter(limit=4, offset=10)) == everything[10:14]
    assert repository.list_executions(ExecutionFilter(limit=0)) == []
    assert repository.list_executions(ExecutionFilter(offset=100)) == []
    orders = repository.list_executions(ExecutionFilter(state_machine_id="orders"))
    assert (
        repository.list_executions(ExecutionFilter(state_machine_id="orders", limit=2, offset=1))
        == orders[1:3]
    )
    # count ignores limit/offset: it counts what matches.
    assert repository.count_executions(ExecutionFilter(state_machine_id="orders", limit=2, offset=1)) == len(
        orders
    )
    with pytest.raises(FilterError, match="limit"):
        ExecutionFilter(limit=-1)
    with pytest.raises(FilterError, match="offset"):
        ExecutionFilter(offset=-1)


@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_stream_executions_matches_list_for_every_page_size(
    repository: Repository, seeded: dict[str, ExecutionRecord], page_size: int
) -> None:
    filters = [
        ExecutionFilter(),
        ExecutionFilter(state_machine_id="orders"),
        ExecutionFilter(name_prefix="t-"),  # five ties on start_time: keyset must break them by id
        ExecutionFilter(statuses=("SUCCEEDED",), limit=5),
        ExecutionFilter(offset=4),
        ExecutionFilter(limit=4, offset=11),  # a page boundary inside the tied rows
        ExecutionFilter(limit=2, offset=12),
        ExecutionFilter(limit=100, offset=3),
        ExecutionFilter(limit=0),
        ExecutionFilter(offset=17),
        ExecutionFilter(state_machine_id="nosuch"),
    ]
    for flt in filters:
        streamed = list(repository.stream_executions(flt, page_size=page_size))
        listed = repository.list_executions(flt)
        assert [r.execution_id for r in streamed] == [r.execution_id for r in listed], flt
        keys = [(r.start_time, r.execution_id) for r in streamed]
        assert keys == sorted(keys)
    everything = list(repository.stream_executions(page_size=page_size))
    assert len(everything) == 17 and len({r.execution_id for r in everything}) == 17


def test_parse_filter_errors_name_the_key(repository: Repository) -> None:
    cases = {
        "bogus=1": "bogus",
        "state_machine_id=orders,colour=red": "colour",
        "status=SUCCEEDED|DONE": "status",
        "status=": "status",
        "started_after=yesterday": "started_after",
        "started_before=2025-13-40T00:00:00Z": "started_before",
        "state_machine_id": "state_machine_id",
        "name_prefix=a,name_prefix=b": "name_prefix",
    }
    for text, key in cases.items():
        with pytest.raises(FilterError) as caught:
            parse_filter(text)
        assert key in str(caught.value), (text, str(caught.value))
    with pytest.raises(FilterError, match="started_after"):
        ExecutionFilter(started_after=datetime(2025, 1, 1))  # naive
    assert isinstance(FilterError("x"), ValueError)
    assert parse_filter(None) == parse_filter("") == parse_filter(" , ") == ExecutionFilter()
    assert parse_filter("state_machine_id= orders ").state_machine_id == "orders"
    assert parse_filter("state_machine_id=a", limit=3, offset=None) == ExecutionFilter(
        state_machine_id="a", limit=3
    )


# ---------------------------------------------------------------------------------- outputs, stats


def test_last_output_of_state_is_the_last_visit(repository: Repository) -> None:
    repository.put_definition("loop", LOOP)
    record = start_execution(repository, StartRequest("loop", {}, name="loop"), handlers=HandlerRegistry())
    assert record.status == "SUCCEEDED" and record.output == {"final": 3}
    entries = repository.history(record.execution_id)
    assert [h.state_name for h in entries] == [
        "Init",
        *itertools.chain.from_iterable(itertools.repeat(["Inc", "Check"], 3)),
        "Done",
    ]
    assert [h.output for h in entries if h.state_name == "Inc"] == [
        {"i": 1, "visit": "visit 0"},
        {"i": 2, "visit": "visit 1"},
        {"i": 3, "visit": "visit 2"},
    ]
    assert repository.last_output_of_state(record.execution_id, "Inc") == {"i": 3, "visit": "visit 2"}
    assert repository.last_output_of_state(record.execution_id, "Check") == {"i": 3, "visit": "visit 2"}
    assert repository.last_output_of_state(record.execution_id, "Init") == {"i": 0}
    with pytest.raises(NotFound, match="Nowhere"):
        repository.last_output_of_state(record.execution_id, "Nowhere")

    # A failed state has no output to give.
    repository.put_definition("refunds", FAILS)
    failed = start_execution(repository, StartRequest("refunds", {}), handlers=HandlerRegistry())
    with pytest.raises(NotFound):
        repository.last_output_of_state(failed.execution_id, "Boom")


def test_stats_per_state_machine_and_status(repository: Repository) -> None:
    repository.put_definition("orders", ORDER)
    repository.put_definition("refunds", FAILS)
    handlers = order_handlers()
    for n in range(6):
        start_execution(repository, StartRequest("orders", {"n": n}), handlers=handlers)
    start_execution(repository, StartRequest("orders", {"n": 80}), handlers=handlers)
    for _ in range(3):
        start_execution(repository, StartRequest("refunds", {}), handlers=handlers)
    prepare_execution(repository, StartRequest("orders", {"n": 1}, name="still-running"), handlers=handlers)

    stats = repository.stats()
    keyed = {(row["state_machine_id"], row["status"]): row for row in stats}
    assert set(keyed) == {
        ("orders", "SUCCEEDED"),
        ("orders", "FAILED"),
        ("orders", "RUNNING"),
        ("refunds", "FAILED"),
    }
    assert {key: row["count"] for key, row in keyed.items()} == {
        ("orders", "SUCCEEDED"): 6,
        ("orders", "FAILED"): 1,
        ("orders", "RUNNING"): 1,
        ("refunds", "FAILED"): 3,
    }
    for (machine_id, status), row in keyed.items():
        assert {"count", "mean_ms", "p50_ms", "p95_ms", "p99_ms"} <= set(row)
        if status == "RUNNING":
            assert row["mean_ms"] is row["p50_ms"] is row["p95_ms"] is row["p99_ms"] is None
            continue
        durations = [
            r.duration_ms
            for r in repository.list_executions(
                ExecutionFilter(state_machine_id=machine_id, statuses=(status,))
            )
        ]
        assert all(isinstance(d, int) and d >= 0 for d in durations)
        assert min(durations) <= row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= max(durations)
        assert min(durations) <= row["mean_ms"] <= max(durations)
        assert row["mean_ms"] == pytest.approx(sum(durations) / len(durations), abs=0.001)
        assert {row["p50_ms"], row["p95_ms"], row["p99_ms"]} <= set(durations)
    assert [(r["state_machine_id"], r["status"]) for r in stats] == sorted(keyed)
    only = repository.stats("refunds")
    assert [(r["state_machine_id"], r["status"], r["count"]) for r in only] == [("refunds", "FAILED", 3)]
    assert repository.stats("nosuch") == []


def finish_with_duration(
    repository: Repository, machine: StateMachine, version: int, milliseconds: int
) -> None:
    """An execution that took exactly `milliseconds` (checkpointed by hand, times chosen)."""
    start = 1_700_000_000.0
    cursor = machine.begin({}, start_time=start)
    record, _ = repository.create_execution(cursor, version=version)
    end = start + milliseconds / 1000
    entry = HistoryEntry(
        "Boom", "Fail", "FAILED", input={}, error="E", cause="c", entered_at=start, exited_at=end
    )
    step = Step([entry], status="FAILED", error="E", cause="c")
    repository.checkpoint(record.execution_id, 0, step, start_time=start)


def test_stats_percentiles_are_nearest_rank(repository: Repository) -> None:
    repository.put_definition("timed", FAILS)
    machine, version = repository.state_machine("timed")
    percentiles = []
    for first, last in ((1, 10), (11, 100)):
        for milliseconds in range(first, last + 1):
            finish_with_duration(repository, machine, version, milliseconds)
        (row,) = repository.stats("timed")
        assert row["count"] == last and row["mean_ms"] == (last + 1) / 2
        percentiles.append((row["p50_ms"], row["p95_ms"], row["p99_ms"]))
    # Nearest rank (ceil(f * n)): 1..10 → 5, 10, 10; 1..100 → 50, 95, 99.
    assert percentiles == [(5, 10, 10), (50, 95, 99)]
