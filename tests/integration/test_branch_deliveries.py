"""Message states and callback tasks inside Parallel branches and Map iterations, through the store.

The Map parks with one wait row per waiting iteration (its `branch` path). An answer resumes that
iteration only; the others park again on the same rows (a token stays answerable). An answer that
arrives while the execution runs (woken by another iteration, its continuation not yet run) is held
on its row and applied when the execution parks again: nothing is lost, nothing runs twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from smq import (
    ExecutionRecord,
    Operations,
    Repository,
    Settings,
    StartRequest,
    start_execution,
)
from smq.repository.waits import TokenNotWaiting, WaitStore
from tests.integration.callbacks import Asker

CALLBACK_MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemProcessor": {
                "StartAt": "Ask",
                "States": {
                    "Ask": {
                        "Type": "Task",
                        "Resource": "ask.waitForTaskToken",
                        "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"},
                        "ResultPath": "$.answer",
                        "End": True,
                    }
                },
            },
            "End": True,
        }
    },
}
MESSAGE_PARALLEL = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Hear",
                    "States": {
                        "Hear": {
                            "Type": "Message",
                            "CorrelationKey": "signal",
                            "CorrelationValuePath": "$.ref",
                            "End": True,
                        }
                    },
                },
                {
                    "StartAt": "Listen",
                    "States": {
                        "Listen": {
                            "Type": "Message",
                            "CorrelationKey": "signal",
                            "CorrelationValuePath": "$.ref",
                            "TimeoutSeconds": 1,
                            "TimeoutPath": "Late",
                            "Next": "Heard",
                        },
                        "Heard": {"Type": "Pass", "Result": "heard", "End": True},
                        "Late": {"Type": "Pass", "Result": "late", "End": True},
                    },
                },
            ],
            "End": True,
        }
    },
}


def _open_waits(repository: Repository, record: ExecutionRecord) -> list[tuple[str | None, str]]:
    waits = WaitStore(repository.engine).open_waits(record.execution_id)
    return sorted(
        ((wait["branch"], wait["kind"]) for wait in waits), key=lambda found: (found[0] or "", found[1])
    )


def _operations(repository: Repository, database_url: str, asker: Asker | None = None) -> Operations:
    settings = Settings(database_url=database_url)  # no broker: continuations run in this process
    return Operations(repository, settings, handlers=asker.registry if asker else None)


def test_each_map_iteration_waits_on_its_own_token(repository: Repository, database_url: str) -> None:
    repository.put_definition("bd-tokens", CALLBACK_MAP)
    asker = Asker()
    orders = [{"order": n} for n in (1, 2, 3)]
    parked = start_execution(
        repository, StartRequest("bd-tokens", orders, name="t-1"), handlers=asker.registry
    )
    assert parked.status == "WAITING"
    assert _open_waits(repository, parked) == [("0", "callback"), ("1", "callback"), ("2", "callback")]
    ids_before = {w["branch"]: w["id"] for w in WaitStore(repository.engine).open_waits(parked.execution_id)}

    operations = _operations(repository, database_url, asker)
    resumed = operations.task_success(asker.tokens[2], {"ok": 2})
    assert resumed.matched
    half = repository.get_execution(parked.execution_id)
    assert half.status == "WAITING"
    still = WaitStore(repository.engine).open_waits(parked.execution_id)
    # The other two iterations wait on the same rows, untouched: an answer costs the same however
    # many iterations wait (their progress is in branch rows, smq.engine.branch_rows).
    assert {w["branch"]: w["id"] for w in still} == {b: ids_before[b] for b in ("0", "2")}
    assert {w["history_length"] for w in still} == {parked.history_length}
    assert half.cursor is not None and half.cursor["pending"]["rows"] is True

    operations.task_success(asker.tokens[1], {"ok": 1})
    operations.task_success(asker.tokens[3], {"ok": 3})
    done = repository.get_execution(parked.execution_id)
    assert done.status == "SUCCEEDED"
    assert done.output == [{"order": n, "answer": {"ok": n}} for n in (1, 2, 3)]
    assert asker.calls == 3  # no callback task ran twice
    assert _open_waits(repository, done) == []


def test_an_answer_that_comes_while_the_execution_runs_is_held_then_applied(
    repository: Repository, database_url: str
) -> None:
    repository.put_definition("bd-held", CALLBACK_MAP)
    asker = Asker()
    parked = start_execution(
        repository,
        StartRequest("bd-held", [{"order": n} for n in (1, 2, 3)], name="h-1"),
        handlers=asker.registry,
    )
    store = WaitStore(repository.engine)
    # Token 1 wakes it (RUNNING, its continuation not run yet); token 2 then finds it running.
    store.complete_callback(asker.tokens[1], {"kind": "success", "output": "one"})
    assert repository.get_execution(parked.execution_id).status == "RUNNING"
    store.complete_callback(asker.tokens[2], {"kind": "success", "output": "two"})
    held = [w for w in _all_waits(repository, parked) if w["status"] == "HELD"]
    assert [(w["branch"], w["delivery"]) for w in held] == [("1", {"kind": "success", "output": "two"})]

    # The continuation: iteration 1 ends, the Map would park, takes the held answer, goes on.
    again = start_execution(repository, StartRequest("bd-held", None, name="h-1"), handlers=asker.registry)
    assert again.status == "WAITING"
    assert _open_waits(repository, again) == [("2", "callback")]
    assert [w["status"] for w in _all_waits(repository, parked) if w["branch"] == "1"] == ["RESOLVED"]

    store.complete_callback(asker.tokens[3], {"kind": "success", "output": "three"})
    done = start_execution(repository, StartRequest("bd-held", None, name="h-1"), handlers=asker.registry)
    assert done.status == "SUCCEEDED"
    assert [item["answer"] for item in done.output] == ["one", "two", "three"]
    assert asker.calls == 3


def _all_waits(repository: Repository, record: ExecutionRecord) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from smq.repository.tables import WAITS

    with repository.engine.connect() as connection:
        rows = connection.execute(select(WAITS).where(WAITS.c.execution_id == record.execution_id))
        return [dict(row._mapping) for row in rows]


def test_one_message_for_two_branches_and_a_branch_timeout(repository: Repository, database_url: str) -> None:
    """Both branches wait on the same (key, value); the second has a 1 s timeout. One message answers
    both at once (one wakes the execution, the other is held); a second execution's timeout fires
    its TimeoutPath inside the branch."""
    repository.put_definition("bd-messages", MESSAGE_PARALLEL)
    operations = _operations(repository, database_url)
    both = start_execution(repository, StartRequest("bd-messages", {"ref": "a"}, name="m-1"))
    late = start_execution(repository, StartRequest("bd-messages", {"ref": "b"}, name="m-2"))
    assert _open_waits(repository, both) == [("0", "message"), ("1", "message")]

    resumed = operations.send_message("signal", "a", {"hello": 1})
    # One branch's answer wakes it; the other's finds it running and is held for its next park.
    assert [(w.execution_id, w.held) for w in resumed.executions] == [
        (both.execution_id, False),
        (both.execution_id, True),
    ]
    done = repository.get_execution(both.execution_id)
    assert (done.status, done.output) == ("SUCCEEDED", [{"hello": 1}, "heard"])

    time.sleep(1.1)
    fired = WaitStore(repository.engine).fire_due()
    assert [(w.execution_id, w.resolution) for w in fired] == [(late.execution_id, "timeout")]
    continued = start_execution(repository, StartRequest("bd-messages", None, name="m-2"))
    assert continued.status == "WAITING"  # branch 1 went to Late; branch 0 still waits, no timeout
    assert _open_waits(repository, continued) == [("0", "message")]
    operations.send_message("signal", "b", "bee")
    finished = repository.get_execution(late.execution_id)
    assert (finished.status, finished.output) == ("SUCCEEDED", ["bee", "late"])


def test_when_a_branch_fails_the_others_waits_are_cancelled(
    repository: Repository, database_url: str
) -> None:
    """One iteration's task is refused: the Map fails, and the token of the iteration still waiting
    is no longer answerable (a late answer is told so, nothing runs)."""
    repository.put_definition("bd-fail", CALLBACK_MAP)
    asker = Asker()
    parked = start_execution(
        repository, StartRequest("bd-fail", [{"order": 1}, {"order": 2}], name="f-1"), handlers=asker.registry
    )
    operations = _operations(repository, database_url, asker)
    operations.task_failure(asker.tokens[1], "Order.Refused", "no stock")
    failed = repository.get_execution(parked.execution_id)
    assert (failed.status, failed.error) == ("FAILED", "Order.Refused")
    assert _open_waits(repository, failed) == []
    with pytest.raises(TokenNotWaiting):
        operations.task_success(asker.tokens[2], "too late")
    assert asker.calls == 2


def test_answers_racing_from_many_threads_each_reach_their_iteration(
    repository: Repository, database_url: str
) -> None:
    """Twelve tokens answered from six threads at once, each answer continuing in its own thread:
    whichever wakes the execution, runs it, or finds it running, every answer ends up in its
    iteration exactly once (two answers must never both write the parked cursor)."""
    from concurrent.futures import ThreadPoolExecutor

    repository.put_definition("bd-race", CALLBACK_MAP)
    asker = Asker()
    orders = list(range(12))
    for round_ in range(2):
        parked = start_execution(
            repository,
            StartRequest("bd-race", [{"order": n} for n in orders], name=f"r-{round_}"),
            handlers=asker.registry,
        )
        tokens = dict(asker.tokens)
        operations = _operations(repository, database_url, asker)
        with ThreadPoolExecutor(6) as pool:
            answers = [(tokens[n], {"ok": n}) for n in orders]
            list(pool.map(lambda answer, ops=operations: ops.task_success(*answer), answers))
        done = repository.get_execution(parked.execution_id)
        assert done.status == "SUCCEEDED", WaitStore(repository.engine).open_waits(parked.execution_id)
        assert done.output == [{"order": n, "answer": {"ok": n}} for n in orders]
        assert _open_waits(repository, done) == []
        asker.tokens.clear()
    assert asker.calls == 24


TIMER_AND_TOKEN = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 3600, "End": True}}},
                CALLBACK_MAP["States"]["Each"]["ItemProcessor"],
            ],
            "End": True,
        }
    },
}


def test_a_parallel_parked_on_a_timer_and_a_token_keeps_one_of_each(
    repository: Repository, database_url: str
) -> None:
    """One branch sleeps an hour, the other waits for its token: one timer row and one branch row.
    The answer resumes the execution, which parks again on the same hour: still one timer."""
    repository.put_definition("bd-timer-token", TIMER_AND_TOKEN)
    asker = Asker()
    parked = start_execution(
        repository,
        StartRequest("bd-timer-token", {"order": 7}, name="tt-1"),
        handlers=asker.registry,
        park_after=60,
    )
    assert parked.status == "WAITING"
    assert _open_waits(repository, parked) == [(None, "timer"), ("1", "callback")]
    _operations(repository, database_url, asker).task_success(asker.tokens[7], "yes")
    again = repository.get_execution(parked.execution_id)
    assert again.status == "WAITING" and again.history_length > parked.history_length
    [timer] = WaitStore(repository.engine).open_waits(parked.execution_id)
    assert (timer["kind"], timer["branch"], timer["history_length"]) == ("timer", None, again.history_length)
