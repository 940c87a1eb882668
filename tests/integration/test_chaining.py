"""Chained executions and local batches on real databases (SQLite and PostgreSQL).

A chained start takes its input from another execution: its final output, or the last output of a named
state, optionally reshaped by a registered transformer. `run_batch` chains a target machine from every
execution a filter matches, with deterministic names so that re-running it creates nothing new.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from smq import (
    ExecutionFilter,
    ExecutionRecord,
    HandlerRegistry,
    NotFound,
    Repository,
    StartRequest,
    start_execution,
)
from smq.errors import ChainError
from smq.execution.batch import BatchItem, chained_name, run_batch
from smq.execution.transformers import UnknownTransformer, transformer
from smq.repository.tables import CHAIN_LINKS as chain_links
from smq.repository.tables import EXECUTIONS as executions
from smq.repository.tables import HISTORY as history

SOURCE = {
    "StartAt": "Compute",
    "States": {
        "Compute": {
            "Type": "Pass",
            "Parameters": {"n.$": "$.n", "double.$": "States.MathAdd($.n, $.n)"},
            "Next": "Finish",
        },
        "Finish": {"Type": "Pass", "Parameters": {"total.$": "$.double", "from": "A"}, "End": True},
    },
}

# Computes, then fails for odd n (so a failed source still has a completed "Compute" state).
SOURCE_ODD_FAILS = {
    "StartAt": "Compute",
    "States": {
        "Compute": {
            "Type": "Pass",
            "Parameters": {
                "n.$": "$.n",
                "odd.$": "States.MathAdd($.n, 0)",
                "double.$": "States.MathAdd($.n, $.n)",
            },
            "Next": "Check",
        },
        "Check": {
            "Type": "Choice",
            "Choices": [
                {
                    "Or": [{"Variable": "$.n", "NumericEquals": n} for n in range(1, 40, 2)],
                    "Next": "Odd",
                }
            ],
            "Default": "Finish",
        },
        "Odd": {"Type": "Fail", "Error": "Source.Odd", "Cause": "odd n"},
        "Finish": {"Type": "Pass", "Parameters": {"total.$": "$.double"}, "End": True},
    },
}

TARGET = {"StartAt": "Consume", "States": {"Consume": {"Type": "Task", "Resource": "consume", "End": True}}}

# Fails when the chained input's total is 6 or 16 (sources n=3 and n=8).
TARGET_SOMETIMES_FAILS = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [
                {
                    "Or": [
                        {"Variable": "$.total", "NumericEquals": 6},
                        {"Variable": "$.total", "NumericEquals": 16},
                    ],
                    "Next": "Refuse",
                }
            ],
            "Default": "Accept",
        },
        "Refuse": {"Type": "Fail", "Error": "Target.Refused", "Cause": "total refused"},
        "Accept": {"Type": "Succeed"},
    },
}


@transformer("itest_wrap")
def wrap(value: Any) -> Any:
    return {"wrapped": value, "kind": type(value).__name__}


@transformer()
def itest_total_only(value: Any) -> Any:
    return {"total": value["total"] if "total" in value else value["double"]}


class Consumer:
    """The `consume` handler: echoes its input and counts calls (from several threads)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.registry = HandlerRegistry()
        self.registry.register("consume", self)

    def __call__(self, payload: Any) -> Any:
        with self.lock:
            self.calls += 1
        return {"got": payload}


def rows(repository: Repository, table: Any) -> int:
    with repository.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def snapshot(repository: Repository) -> tuple[int, int, int]:
    return rows(repository, executions), rows(repository, history), rows(repository, chain_links)


def make_sources(
    repository: Repository, count: int, definition: dict[str, Any] = SOURCE
) -> list[ExecutionRecord]:
    repository.put_definition("a", definition)
    return [
        start_execution(
            repository, StartRequest("a", {"n": n}, name=f"a-{n:02d}"), handlers=HandlerRegistry()
        )
        for n in range(count)
    ]


# -------------------------------------------------------------------------------------- chained starts


def test_chain_from_final_output_through_a_transformer(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("a", SOURCE)
    repository.put_definition("b", TARGET)
    source = start_execution(
        repository, StartRequest("a", {"n": 21}, name="a-21"), handlers=HandlerRegistry()
    )
    assert source.output == {"total": 42, "from": "A"}

    chained = start_execution(
        repository,
        StartRequest("b", name="b-from-a", source_execution_id=source.execution_id, transformer="itest_wrap"),
        handlers=consumer.registry,
    )
    assert chained.status == "SUCCEEDED"
    assert chained.input == {"wrapped": {"total": 42, "from": "A"}, "kind": "dict"}
    assert chained.output == {"got": chained.input}
    stored = repository.get_execution(chained.execution_id)
    assert (stored.source_execution_id, stored.source_state_name, stored.transformer) == (
        source.execution_id,
        None,
        "itest_wrap",
    )
    assert stored.to_dict()["source_execution_id"] == source.execution_id

    # Without a transformer the final output is the input, unchanged.
    plain = start_execution(
        repository, StartRequest("b", source_execution_id=source.execution_id), handlers=consumer.registry
    )
    assert plain.input == {"total": 42, "from": "A"}

    assert [t.execution_id for t in repository.chained_targets(source.execution_id)] == [
        chained.execution_id,
        plain.execution_id,
    ]
    assert repository.chained_targets(chained.execution_id) == []
    assert consumer.calls == 2


def test_chain_from_a_named_state(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("b", TARGET)
    repository.put_definition("a", SOURCE)
    source = start_execution(repository, StartRequest("a", {"n": 5}), handlers=HandlerRegistry())

    chained = start_execution(
        repository,
        StartRequest("b", source_execution_id=source.execution_id, source_state_name="Compute"),
        handlers=consumer.registry,
    )
    assert chained.input == {"n": 5, "double": 10}  # Compute's output, not the final {"total": 10, ...}
    assert chained.input == repository.last_output_of_state(source.execution_id, "Compute")
    assert repository.get_execution(chained.execution_id).source_state_name == "Compute"

    through = start_execution(
        repository,
        StartRequest(
            "b",
            source_execution_id=source.execution_id,
            source_state_name="Compute",
            transformer="itest_total_only",
        ),
        handlers=consumer.registry,
    )
    assert through.input == {"total": 10}
    links = repository.chained_targets(source.execution_id)
    assert [(t.execution_id, t.source_state_name, t.transformer) for t in links] == [
        (chained.execution_id, "Compute", None),
        (through.execution_id, "Compute", "itest_total_only"),
    ]

    # A state the source never completed is not there to chain from; nothing is written.
    counts = snapshot(repository)
    with pytest.raises(NotFound, match="Nowhere"):
        start_execution(
            repository,
            StartRequest("b", source_execution_id=source.execution_id, source_state_name="Nowhere"),
            handlers=consumer.registry,
        )
    assert snapshot(repository) == counts


def test_chain_errors_write_nothing(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("b", TARGET)
    sources = make_sources(repository, 2, SOURCE_ODD_FAILS)
    good, failed = sources
    assert (good.status, failed.status, failed.error) == ("SUCCEEDED", "FAILED", "Source.Odd")
    counts = snapshot(repository)

    with pytest.raises(ChainError, match="FAILED"):
        start_execution(
            repository,
            StartRequest("b", name="x", source_execution_id=failed.execution_id),
            handlers=consumer.registry,
        )
    with pytest.raises(UnknownTransformer, match="no_such_transformer"):
        start_execution(
            repository,
            StartRequest(
                "b", name="y", source_execution_id=good.execution_id, transformer="no_such_transformer"
            ),
            handlers=consumer.registry,
        )
    with pytest.raises(ChainError):  # input and a source at once
        start_execution(
            repository,
            StartRequest("b", {"n": 1}, source_execution_id=good.execution_id),
            handlers=consumer.registry,
        )
    with pytest.raises(ChainError):  # a source state without a source
        start_execution(
            repository, StartRequest("b", source_state_name="Compute"), handlers=consumer.registry
        )
    with pytest.raises(ChainError):  # a transformer without a source
        start_execution(
            repository, StartRequest("b", {}, transformer="itest_wrap"), handlers=consumer.registry
        )
    with pytest.raises(NotFound):
        start_execution(
            repository, StartRequest("b", source_execution_id="no-such-source"), handlers=consumer.registry
        )
    assert snapshot(repository) == counts
    assert consumer.calls == 0
    assert repository.chained_targets(failed.execution_id) == []

    # A failed source's completed states are still there to chain from.
    from_state = start_execution(
        repository,
        StartRequest("b", source_execution_id=failed.execution_id, source_state_name="Compute"),
        handlers=consumer.registry,
    )
    assert from_state.status == "SUCCEEDED" and from_state.input == {"n": 1, "odd": 1, "double": 2}


def test_chained_start_by_name_is_idempotent_and_links_once(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("b", TARGET)
    (source,) = make_sources(repository, 1)
    request = StartRequest(
        "b", name="once", source_execution_id=source.execution_id, transformer="itest_wrap"
    )
    first = start_execution(repository, request, handlers=consumer.registry)
    counts = snapshot(repository)
    again = start_execution(repository, request, handlers=consumer.registry)
    assert again.execution_id == first.execution_id and again.status == "SUCCEEDED"
    assert snapshot(repository) == counts
    assert [t.execution_id for t in repository.chained_targets(source.execution_id)] == [first.execution_id]
    assert consumer.calls == 1


def test_not_chained_into_excludes_chained_sources(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("b", TARGET)
    repository.put_definition("c", TARGET)
    sources = make_sources(repository, 4)
    start_execution(
        repository, StartRequest("b", source_execution_id=sources[1].execution_id), handlers=consumer.registry
    )
    start_execution(
        repository, StartRequest("c", source_execution_id=sources[2].execution_id), handlers=consumer.registry
    )

    def unchained(target: str) -> list[str]:
        flt = ExecutionFilter(state_machine_id="a", not_chained_into=target)
        found = [r.name for r in repository.list_executions(flt)]
        assert repository.count_executions(flt) == len(found)
        assert [r.name for r in repository.stream_executions(flt, page_size=1)] == found
        return found

    assert unchained("b") == ["a-00", "a-02", "a-03"]
    assert unchained("c") == ["a-00", "a-01", "a-03"]
    assert unchained("d") == ["a-00", "a-01", "a-02", "a-03"]
    # The chained executions themselves are sources of nothing: every one of them is "not chained".
    assert len(repository.list_executions(ExecutionFilter(not_chained_into="b"))) == 6 - 1


# ------------------------------------------------------------------------------------------- batches


@pytest.fixture
def twenty(repository: Repository) -> list[ExecutionRecord]:
    repository.put_definition("b", TARGET)
    sources = make_sources(repository, 20)
    assert {s.status for s in sources} == {"SUCCEEDED"}
    return sources


def outcome(repository: Repository, items: list[BatchItem]) -> dict[str, tuple[str, Any, Any]]:
    result = {}
    for item in items:
        assert item.execution_id is not None
        record = repository.get_execution(item.execution_id)
        result[item.source_execution_id] = (record.status, record.input, record.output)
    return result


def test_batch_chains_every_source_with_deterministic_names(
    repository: Repository, twenty: list[ExecutionRecord]
) -> None:
    consumer = Consumer()
    a_only = ExecutionFilter(state_machine_id="a")
    result = run_batch(
        repository,
        "b",
        a_only,
        name_prefix="b-",
        transformer="itest_wrap",
        concurrency=1,
        handlers=consumer.registry,
    )
    assert len(result.items) == result.total == 20
    assert result.counts == {"SUCCEEDED": 20}
    assert (result.stopped_early, result.already_existed) == (False, 0)
    assert {item.source_execution_id for item in result.items} == {s.execution_id for s in twenty}
    assert [item.name for item in result.items] == sorted(chained_name("b-", s) for s in twenty)
    assert len({item.name for item in result.items}) == 20
    by_source = {s.execution_id: s for s in twenty}
    for item in result.items:
        assert item.status == "SUCCEEDED" and not item.already_existed and item.error is None
        record = repository.get_execution(item.execution_id or "")
        source = by_source[item.source_execution_id]
        assert record.name == item.name == chained_name("b-", source)
        assert item.name.startswith("b-") and (source.execution_id in item.name or source.name in item.name)
        assert (record.state_machine_id, record.source_execution_id, record.transformer) == (
            "b",
            item.source_execution_id,
            "itest_wrap",
        )
        assert record.input == {"wrapped": by_source[item.source_execution_id].output, "kind": "dict"}
        assert record.output == {"got": record.input}
        assert [t.execution_id for t in repository.chained_targets(item.source_execution_id)] == [
            item.execution_id
        ]
    assert consumer.calls == 20
    assert repository.count_executions(ExecutionFilter(state_machine_id="b")) == 20
    assert repository.count_executions(ExecutionFilter(state_machine_id="a", not_chained_into="b")) == 0

    # The same batch again finds what it made: nothing new is created or run.
    counts = (repository.count_executions(), rows(repository, history), rows(repository, chain_links))
    again = run_batch(
        repository,
        "b",
        a_only,
        name_prefix="b-",
        transformer="itest_wrap",
        concurrency=4,
        handlers=consumer.registry,
    )
    assert (repository.count_executions(), rows(repository, history), rows(repository, chain_links)) == counts
    assert again.counts == {"SUCCEEDED": 20} and again.already_existed == 20
    assert all(item.already_existed for item in again.items)
    assert [(i.name, i.execution_id) for i in again.items] == [(i.name, i.execution_id) for i in result.items]
    assert consumer.calls == 20


def test_batch_with_four_workers_matches_one_worker(
    repository: Repository, twenty: list[ExecutionRecord]
) -> None:
    consumer = Consumer()
    a_only = ExecutionFilter(state_machine_id="a")
    one = run_batch(repository, "b", a_only, name_prefix="c1-", concurrency=1, handlers=consumer.registry)
    four = run_batch(repository, "b", a_only, name_prefix="c4-", concurrency=4, handlers=consumer.registry)
    assert one.counts == four.counts == {"SUCCEEDED": 20}
    assert outcome(repository, one.items) == outcome(repository, four.items)
    assert len(outcome(repository, four.items)) == 20
    assert [i.name.removeprefix("c4-") for i in four.items] == [i.name.removeprefix("c1-") for i in one.items]
    assert consumer.calls == 40
    assert repository.count_executions(ExecutionFilter(state_machine_id="b")) == 40
    for source in twenty:
        assert len(repository.chained_targets(source.execution_id)) == 2


def test_batch_callbacks_run_once_per_item(repository: Repository, twenty: list[ExecutionRecord]) -> None:
    consumer = Consumer()
    lock = threading.Lock()
    started: list[tuple[str, str]] = []
    completed: list[BatchItem] = []

    def on_start(source: ExecutionRecord, name: str) -> None:
        with lock:
            started.append((source.execution_id, name))

    def on_complete(item: BatchItem) -> None:
        with lock:
            completed.append(item)

    result = run_batch(
        repository,
        "b",
        ExecutionFilter(state_machine_id="a"),
        name_prefix="cb-",
        concurrency=4,
        on_start=on_start,
        on_complete=on_complete,
        handlers=consumer.registry,
        page_size=3,
    )
    expected = sorted((s.execution_id, chained_name("cb-", s)) for s in twenty)
    assert sorted(started) == expected
    assert sorted((i.source_execution_id, i.name) for i in completed) == expected
    assert sorted(completed, key=lambda i: i.name) == result.items
    assert Counter(i.status for i in completed) == {"SUCCEEDED": 20}


def test_batch_stop_on_error_stops_early(repository: Repository) -> None:
    sources = make_sources(repository, 20)
    repository.put_definition("picky", TARGET_SOMETIMES_FAILS)
    seen: list[BatchItem] = []
    result = run_batch(
        repository,
        "picky",
        ExecutionFilter(state_machine_id="a"),
        name_prefix="p-",
        concurrency=1,
        stop_on_error=True,
        on_complete=seen.append,
        handlers=HandlerRegistry(),
    )
    assert result.stopped_early
    assert 4 <= len(result.items) < len(sources)
    assert result.total == len(result.items) == len(seen)
    failed = [i for i in result.items if i.status == "FAILED"]
    assert [i.source_execution_id for i in failed] == [sources[3].execution_id]
    assert (failed[0].error, failed[0].cause) == ("Target.Refused", "total refused")
    # Sources are taken in (start_time, id) order: the first three were chained before the failure.
    done = {i.source_execution_id for i in result.items}
    assert {s.execution_id for s in sources[:4]} <= done
    assert repository.count_executions(ExecutionFilter(state_machine_id="picky")) == len(result.items)

    # Without stop_on_error every source gets an item, and both refusals are reported.
    full = run_batch(
        repository,
        "picky",
        ExecutionFilter(state_machine_id="a"),
        name_prefix="q-",
        concurrency=2,
        handlers=HandlerRegistry(),
    )
    assert not full.stopped_early
    assert full.counts == {"SUCCEEDED": 18, "FAILED": 2}
    assert {i.source_execution_id for i in full.items if i.status == "FAILED"} == {
        sources[3].execution_id,
        sources[8].execution_id,
    }


def test_batch_reports_sources_that_cannot_be_chained(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("b", TARGET)
    sources = make_sources(repository, 6, SOURCE_ODD_FAILS)
    a_only = ExecutionFilter(state_machine_id="a")

    final = run_batch(repository, "b", a_only, name_prefix="f-", concurrency=2, handlers=consumer.registry)
    assert final.counts == {"SUCCEEDED": 3, "ERROR": 3}
    assert len(final.items) == 6
    for item, source in zip(
        sorted(final.items, key=lambda i: i.source_execution_id),
        sorted(sources, key=lambda s: s.execution_id),
        strict=True,
    ):
        assert item.source_execution_id == source.execution_id
        if source.status == "FAILED":
            assert (item.status, item.execution_id, item.error) == (
                "ERROR",
                None,
                "SourceNotReady",
            )  # a ChainError: no final output
            assert repository.find_execution("b", item.name) is None
        else:
            assert item.status == "SUCCEEDED"
    assert repository.count_executions(ExecutionFilter(state_machine_id="b")) == 3

    from_state = run_batch(
        repository,
        "b",
        a_only,
        name_prefix="s-",
        source_state_name="Compute",
        concurrency=2,
        handlers=consumer.registry,
    )
    assert from_state.counts == {"SUCCEEDED": 6}

    # Every source is now chained into b (from a state, for the failed ones): nothing is left to do.
    rest = run_batch(
        repository,
        "b",
        ExecutionFilter(state_machine_id="a", not_chained_into="b"),
        name_prefix="r-",
        handlers=consumer.registry,
    )
    assert (rest.items, rest.counts, rest.total) == ([], {}, 0)


def test_batch_over_unchained_sources_only(repository: Repository, twenty: list[ExecutionRecord]) -> None:
    consumer = Consumer()
    for source in twenty[:5]:
        start_execution(
            repository, StartRequest("b", source_execution_id=source.execution_id), handlers=consumer.registry
        )
    result = run_batch(
        repository,
        "b",
        ExecutionFilter(state_machine_id="a", not_chained_into="b"),
        name_prefix="late-",
        concurrency=3,
        handlers=consumer.registry,
    )
    assert {i.source_execution_id for i in result.items} == {s.execution_id for s in twenty[5:]}
    assert result.counts == {"SUCCEEDED": 15}
    assert consumer.calls == 20


def test_batch_names_are_unique_across_source_machines_and_fit_long_names(repository: Repository) -> None:
    consumer = Consumer()
    repository.put_definition("b", TARGET)
    repository.put_definition("a", SOURCE)
    repository.put_definition("a2", SOURCE)
    long_name = "x" * 200  # the longest name an execution can have
    sources = [
        start_execution(repository, StartRequest(machine, {"n": n}, name=name), handlers=HandlerRegistry())
        for n, (machine, name) in enumerate([("a", "x-same"), ("a2", "x-same"), ("a", long_name)])
    ]
    result = run_batch(
        repository, "b", ExecutionFilter(name_prefix="x"), name_prefix="chain-", handlers=consumer.registry
    )
    assert result.counts == {"SUCCEEDED": 3}
    names = [item.name for item in result.items]
    assert len(set(names)) == 3
    assert all(name.startswith("chain-") and len(name) <= 200 for name in names)
    for source in sources:
        (target,) = repository.chained_targets(source.execution_id)
        assert target.name == chained_name("chain-", source)
        assert target.input == source.output
    again = run_batch(
        repository, "b", ExecutionFilter(name_prefix="x"), name_prefix="chain-", handlers=consumer.registry
    )
    assert again.already_existed == 3 and consumer.calls == 3


def test_batch_needs_a_known_target_and_at_least_one_worker(repository: Repository) -> None:
    make_sources(repository, 2)
    counts = snapshot(repository)
    with pytest.raises(NotFound):
        run_batch(repository, "nosuch", ExecutionFilter(state_machine_id="a"), handlers=HandlerRegistry())
    with pytest.raises(ValueError):
        run_batch(repository, "a", ExecutionFilter(), concurrency=0, handlers=HandlerRegistry())
    assert snapshot(repository) == counts
