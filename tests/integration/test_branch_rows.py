"""Waiting fan-outs keep each branch's progress in its own row (issue 22.3, smq.engine.branch_rows).

A Map whose iterations wait for task tokens parks with a summary in its checkpoint and one row per
iteration in smq_branches: the checkpoint is the same size at 10 and at 1,000 iterations, and an
answer changes its iteration's row only (the other rows, and the other iterations' waits, are not
touched). The last answer gathers every row's result in order; the rows then go. Also: a Map that is
not the first state (its input kept in a row of its own), tolerated failures, a stop and redrive
while parked, and nested fan-outs (Map in Map, Map in Parallel), which keep their progress in the
cursor as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from smq import (
    ExecutionRecord,
    Operations,
    Repository,
    Settings,
    StartRequest,
    start_execution,
)
from smq.execution.control import redrive_execution, stop_execution
from smq.repository.tables import BRANCHES
from smq.repository.waits import WaitStore
from tests.integration.callbacks import Asker

ASK = {
    "Type": "Task",
    "Resource": "ask.waitForTaskToken",
    "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"},
    "ResultPath": "$.answer",
    "End": True,
}
EACH = {"Type": "Map", "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": ASK}}, "End": True}
MAP = {"StartAt": "Each", "States": {"Each": EACH}}


def _rows(repository: Repository, record: ExecutionRecord) -> dict[int, dict[str, Any]]:
    with repository.engine.connect() as connection:
        rows = connection.execute(select(BRANCHES).where(BRANCHES.c.execution_id == record.execution_id))
        return {row.idx: dict(row._mapping) for row in rows}


def _operations(repository: Repository, database_url: str, asker: Asker) -> Operations:
    return Operations(repository, Settings(database_url=database_url), handlers=asker.registry)


def test_the_checkpoint_is_the_same_size_at_10_and_1000_waiting_iterations(
    repository: Repository, database_url: str
) -> None:
    repository.put_definition("br-size", MAP)
    sizes = {}
    for count in (10, 1000):
        asker = Asker()
        parked = start_execution(
            repository,
            StartRequest("br-size", [{"order": n} for n in range(count)], name=f"s-{count:05d}"),
            handlers=asker.registry,
        )
        assert parked.status == "WAITING"
        stored = repository.get_execution(parked.execution_id)
        assert stored.cursor is not None
        pending = stored.cursor["pending"]
        assert (pending["rows"], pending["count"], pending["waiting"]) == (True, count, count)
        assert "jobs" not in pending
        # Neither the items nor the iterations' progress are in the checkpoint.
        sizes[count] = len(json.dumps({**stored.cursor, "pending": {**pending, "count": 0, "waiting": 0}}))
        rows = _rows(repository, stored)
        assert sorted(rows) == list(range(count))
        assert {row["status"] for row in rows.values()} == {"WAITING"}
    assert abs(sizes[1000] - sizes[10]) < 40  # the digits of its times differ, nothing else


def test_an_answer_changes_only_its_own_row_and_the_last_gathers_them_in_order(
    repository: Repository, database_url: str
) -> None:
    repository.put_definition("br-one", MAP)
    asker = Asker()
    parked = start_execution(
        repository,
        StartRequest("br-one", [{"order": n} for n in range(5)], name="o-1"),
        handlers=asker.registry,
    )
    before = _rows(repository, parked)
    waits_before = {w["id"]: w for w in WaitStore(repository.engine).open_waits(parked.execution_id)}
    operations = _operations(repository, database_url, asker)

    operations.task_success(asker.tokens[3], {"ok": 3})
    half = repository.get_execution(parked.execution_id)
    assert half.status == "WAITING"
    assert half.cursor is not None and half.cursor["pending"]["waiting"] == 4
    after = _rows(repository, half)
    assert after[3]["status"] == "SUCCEEDED" and after[3]["output"] == {"order": 3, "answer": {"ok": 3}}
    assert {i: after[i] for i in (0, 1, 2, 4)} == {i: before[i] for i in (0, 1, 2, 4)}  # untouched
    waits_after = {w["id"]: w for w in WaitStore(repository.engine).open_waits(parked.execution_id)}
    assert waits_after == {key: wait for key, wait in waits_before.items() if wait["branch"] != "3"}

    for n in (4, 0, 2, 1):
        operations.task_success(asker.tokens[n], {"ok": n})
    done = repository.get_execution(parked.execution_id)
    assert done.status == "SUCCEEDED"
    assert done.output == [{"order": n, "answer": {"ok": n}} for n in range(5)]
    assert asker.calls == 5
    assert _rows(repository, done) == {}
    assert WaitStore(repository.engine).open_waits(parked.execution_id) == []


PASS_THEN_MAP = {
    "StartAt": "Orders",
    "States": {
        "Orders": {"Type": "Pass", "Parameters": {"lines.$": "$.lines", "who": "ops"}, "Next": "Each"},
        "Each": {**EACH, "ItemsPath": "$.lines", "ResultPath": "$.answers", "End": False, "Next": "Done"},
        "Done": {
            "Type": "Pass",
            "Parameters": {
                "who.$": "$.who",
                "answers.$": "$.answers",
                "first.$": "$$.Execution.Input.lines[0]",
            },
            "End": True,
        },
    },
}


def test_a_map_with_an_input_of_its_own_and_a_tolerated_failure(
    repository: Repository, database_url: str
) -> None:
    """The Map's input is not the execution's: kept in a row of its own, put back for its ResultPath.
    A failure it tolerates is counted when the last answer comes."""
    definition = json.loads(json.dumps(PASS_THEN_MAP))
    definition["States"]["Each"]["ToleratedFailureCount"] = 1
    repository.put_definition("br-input", definition)
    asker = Asker()
    lines = [{"order": n} for n in range(3)]
    parked = start_execution(
        repository, StartRequest("br-input", {"lines": lines}, name="i-1"), handlers=asker.registry
    )
    assert parked.status == "WAITING" and parked.cursor is not None
    assert parked.cursor["input"] is None and parked.cursor["pending"]["inputs"] == "INPUT"
    operations = _operations(repository, database_url, asker)
    operations.task_failure(asker.tokens[1], "Line.Refused", "no")
    operations.task_success(asker.tokens[0], "yes")
    assert repository.get_execution(parked.execution_id).status == "WAITING"
    operations.task_success(asker.tokens[2], "also")
    done = repository.get_execution(parked.execution_id)
    assert done.status == "SUCCEEDED", (done.error, done.cause)
    assert done.output == {
        "who": "ops",
        "answers": [
            {"order": 0, "answer": "yes"},
            {"Error": "Line.Refused", "Cause": "no"},
            {"order": 2, "answer": "also"},
        ],
        "first": {"order": 0},
    }


def test_stopped_while_parked_then_redriven_keeps_the_iterations_that_succeeded(
    repository: Repository, database_url: str
) -> None:
    repository.put_definition("br-redrive", MAP)
    asker = Asker()
    parked = start_execution(
        repository,
        StartRequest("br-redrive", [{"order": n} for n in range(3)], name="r-1"),
        handlers=asker.registry,
    )
    _operations(repository, database_url, asker).task_success(asker.tokens[1], "one")
    stop_execution(repository, "br-redrive/r-1")
    assert WaitStore(repository.engine).open_waits(parked.execution_id) == []
    asker.tokens.clear()
    redrive_execution(repository, "br-redrive/r-1")
    again = start_execution(repository, StartRequest("br-redrive", None, name="r-1"), handlers=asker.registry)
    assert again.status == "WAITING"
    assert sorted(asker.tokens) == [0, 2]  # iteration 1 is kept, not asked again
    operations = _operations(repository, database_url, asker)
    operations.task_success(asker.tokens[0], "zero")
    operations.task_success(asker.tokens[2], "two")
    done = repository.get_execution(parked.execution_id)
    assert done.status == "SUCCEEDED"
    assert [item["answer"] for item in done.output] == ["zero", "one", "two"]


INNER = {
    "Type": "Map",
    "ItemsPath": "$.lines",
    "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": ASK}},
    "End": True,
}
MAP_IN_MAP = {
    "StartAt": "Outer",
    "States": {
        "Outer": {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": INNER}},
            "End": True,
        }
    },
}
MAP_IN_PARALLEL = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Inner", "States": {"Inner": INNER}},
                {"StartAt": "Ask", "States": {"Ask": ASK}},
            ],
            "End": True,
        }
    },
}


@pytest.mark.parametrize("definition", [MAP_IN_MAP, MAP_IN_PARALLEL], ids=["map-in-map", "map-in-parallel"])
def test_nested_fanouts_keep_their_progress_in_the_cursor(
    repository: Repository, database_url: str, definition: dict[str, Any]
) -> None:
    repository.put_definition("br-nested", definition)
    asker = Asker()
    if definition is MAP_IN_MAP:
        data: Any = [{"lines": [{"order": f"{i}.{j}"} for j in range(2)]} for i in range(2)]
    else:
        data = {"lines": [{"order": "0.0"}, {"order": "0.1"}], "order": "p"}
    parked = start_execution(repository, StartRequest("br-nested", data, name="n-1"), handlers=asker.registry)
    assert parked.status == "WAITING" and parked.cursor is not None
    assert "jobs" in parked.cursor["pending"] and not parked.cursor["pending"].get("rows")
    assert _rows(repository, parked) == {}
    operations = _operations(repository, database_url, asker)
    for order in sorted(asker.tokens, reverse=True):
        operations.task_success(asker.tokens[order], f"ok {order}")
    done = repository.get_execution(parked.execution_id)
    assert done.status == "SUCCEEDED", (done.error, done.cause)
    if definition is MAP_IN_MAP:
        assert done.output == [
            [{"order": f"{i}.{j}", "answer": f"ok {i}.{j}"} for j in range(2)] for i in range(2)
        ]
    else:
        assert done.output[0] == [{"order": f"0.{j}", "answer": f"ok 0.{j}"} for j in range(2)]
        assert done.output[1]["answer"] == "ok p"
