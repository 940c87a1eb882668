"""Resumable by design: stop after any step, serialise the cursor, resume in a fresh machine object."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from smq import Cursor, HandlerRegistry, StateMachine, TaskContext, TaskError, VirtualClock

T0 = 1_735_732_800.0

WORKFLOW = {
    "StartAt": "Init",
    "States": {
        "Init": {
            "Type": "Pass",
            "Parameters": {"order.$": "$.order", "items.$": "$.items", "who.$": "$.customer"},
            "Assign": {"customer.$": "$.who"},  # in a Pass, Assign's `$` is the state's result
            "Next": "Fetch",
        },
        "Fetch": {"Type": "Task", "Resource": "fetch", "ResultPath": "$.fetched", "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fetched.express", "BooleanEquals": True, "Next": "Process"}],
            "Default": "Summarize",
        },
        "Process": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "StartAt": "Work",
                "States": {"Work": {"Type": "Task", "Resource": "work", "End": True}},
            },
            "ResultPath": "$.processed",
            "Next": "Summarize",
        },
        "Summarize": {
            "Type": "Task",
            "Resource": "summarize",
            "Parameters": {"customer.$": "$customer", "processed.$": "$.processed", "order.$": "$.order"},
            "ResultPath": "$.summary",
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}
INPUT = {"order": 7, "items": ["a", "b", "c"], "customer": "ada"}


def make_registry(calls: Counter[str]) -> HandlerRegistry:
    lock = threading.Lock()
    reg = HandlerRegistry()

    def count(name: str) -> None:
        with lock:
            calls[name] += 1

    @reg.handler("fetch")
    def fetch(payload):
        count("fetch")
        return {"express": payload["order"] > 5}

    @reg.handler("work")
    def work(payload):
        count("work")
        return f"{payload['i']}:{payload['v'].upper()}"

    @reg.handler("summarize")
    def summarize(payload):
        count("summarize")
        return {"who": payload["customer"], "n": len(payload["processed"]), "order": payload["order"]}

    return reg


@pytest.fixture(scope="module")
def baseline():
    calls: Counter[str] = Counter()
    r = StateMachine.from_definition(WORKFLOW).run(INPUT, handlers=make_registry(calls), name="n")
    assert r.status == "SUCCEEDED", (r.error, r.cause)
    return r, calls


def top_level(history) -> list[str]:
    return [e.state_name for e in history if e.scope == ""]


def test_baseline_is_what_the_workflow_means(baseline):
    r, calls = baseline
    assert r.output == {
        "order": 7,
        "items": ["a", "b", "c"],
        "who": "ada",
        "fetched": {"express": True},
        "processed": ["0:A", "1:B", "2:C"],
        "summary": {"who": "ada", "n": 3, "order": 7},
    }
    assert calls == Counter({"fetch": 1, "work": 3, "summarize": 1})
    assert top_level(r.history) == ["Init", "Fetch", "Route", "Process", "Summarize", "Done"]


def test_stop_after_every_step_and_resume_in_a_fresh_machine(baseline):
    expected, expected_calls = baseline
    stops = 0
    for n in range(1, 50):
        calls: Counter[str] = Counter()
        reg = make_registry(calls)
        first = StateMachine.from_definition(WORKFLOW)
        partial = first.resume(first.begin(INPUT, name="n"), handlers=reg, stop_after=n)
        if partial.status != "RUNNING":
            assert partial.status == "SUCCEEDED"
            break
        stops += 1
        assert partial.cursor is not None
        text = partial.cursor.to_json()
        json.loads(text)  # plain JSON
        before = Counter(calls)

        fresh = StateMachine.from_definition(json.loads(json.dumps(WORKFLOW)))
        rest = fresh.resume(Cursor.from_json(text), handlers=reg)
        assert rest.status == "SUCCEEDED", (n, rest.error, rest.cause)
        assert rest.output == expected.output, n
        assert rest.name == "n"
        # nothing that completed before the stop ran again
        assert calls == expected_calls, (n, before, calls)
        assert top_level(partial.history) + top_level(rest.history) == top_level(expected.history), n
    assert stops == 5  # Init, Fetch, Route, Process, Summarize each leave a resumable cursor


def test_resume_accepts_json_text_and_dict(baseline):
    expected, _ = baseline
    calls: Counter[str] = Counter()
    reg = make_registry(calls)
    sm = StateMachine.from_definition(WORKFLOW)
    partial = sm.resume(sm.begin(INPUT), handlers=reg, stop_after=2)
    text = partial.cursor.to_json()
    assert StateMachine.from_definition(WORKFLOW).resume(text, handlers=reg).output == expected.output
    assert (
        StateMachine.from_definition(WORKFLOW).resume(json.loads(text), handlers=reg).output
        == expected.output
    )


def test_cursor_round_trips_exactly():
    sm = StateMachine.from_definition(WORKFLOW)
    calls: Counter[str] = Counter()
    partial = sm.resume(sm.begin(INPUT, name="n"), handlers=make_registry(calls), stop_after=2)
    cursor = partial.cursor
    again = Cursor.from_json(cursor.to_json())
    assert again == cursor
    assert again.to_json() == cursor.to_json()
    assert again.state == "Route"
    assert again.variables == {"customer": "ada"}


def test_moved_is_a_copy_with_the_changes_and_refuses_unknown_fields():
    machine = StateMachine.from_definition(WORKFLOW)
    cursor = machine.begin({"order": 1}, name="n", execution_id="e")
    moved = cursor.moved(state="Fetch", transitions=1)
    assert (moved.state, moved.transitions, moved.input) == ("Fetch", 1, cursor.input)
    assert (cursor.state, cursor.transitions) == ("Init", 0)  # the original is untouched
    assert Cursor.from_dict(moved.to_dict()) == moved
    with pytest.raises(TypeError, match="no field"):
        cursor.moved(stat="Fetch")


def test_context_survives_resume():
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {
                "Type": "Pass",
                "Parameters": {
                    "name.$": "$$.Execution.Name",
                    "id.$": "$$.Execution.Id",
                    "input.$": "$$.Execution.Input",
                    "start.$": "$$.Execution.StartTime",
                },
                "End": True,
            },
        },
    }
    clock = VirtualClock(T0)
    sm = StateMachine.from_definition(definition)
    cursor = sm.begin({"x": 1}, name="ctx-run", execution_id="exec-123", clock=clock.now)
    partial = sm.resume(cursor, stop_after=1, clock=clock.now, sleep=clock.sleep)
    later = VirtualClock(T0 + 500)
    r = StateMachine.from_definition(definition).resume(
        partial.cursor.to_json(), clock=later.now, sleep=later.sleep
    )
    assert r.status == "SUCCEEDED"
    assert r.output == {
        "name": "ctx-run",
        "id": "arn:aws:states:us-east-1:000000000000:execution:state-machine:ctx-run",
        "input": {"x": 1},
        "start": "2025-01-01T12:00:00.000Z",
    }


# ---------------------------------------------------------------------------------- Wait cursors

WAIT_WORKFLOW = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Result": "a", "ResultPath": "$.a", "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 30, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"a.$": "$.a", "at.$": "$$.State.EnteredTime"}, "End": True},
    },
}


def pending_wait_cursor() -> Cursor:
    clock = VirtualClock(T0)
    sm = StateMachine.from_definition(WAIT_WORKFLOW)
    cursor = sm.begin({}, clock=clock.now)
    partial = sm.resume(cursor, stop_after=2, clock=clock.now, sleep=clock.sleep)
    assert partial.status == "RUNNING"
    assert partial.cursor.state == "W"
    assert partial.cursor.pending is not None  # the Wait is half done
    assert clock.now() == T0  # nothing slept yet
    return partial.cursor


def test_half_done_wait_resumes_for_the_remaining_time():
    text = pending_wait_cursor().to_json()
    clock = VirtualClock(T0 + 10)  # the process came back 10 s later
    r = StateMachine.from_definition(WAIT_WORKFLOW).resume(
        Cursor.from_json(text), clock=clock.now, sleep=clock.sleep
    )
    assert r.status == "SUCCEEDED"
    assert clock.now() == pytest.approx(T0 + 30)
    assert r.output == {"a": "a", "at": "2025-01-01T12:00:30.000Z"}
    wait = [e for e in r.history if e.state_name == "W"]
    assert len(wait) == 1
    assert wait[0].entered_at == pytest.approx(T0)  # the original entry time, not the resume time


def test_half_done_wait_resumed_after_its_end_does_not_wait_again():
    text = pending_wait_cursor().to_json()
    clock = VirtualClock(T0 + 100)
    r = StateMachine.from_definition(WAIT_WORKFLOW).resume(text, clock=clock.now, sleep=clock.sleep)
    assert r.status == "SUCCEEDED"
    assert clock.now() == pytest.approx(T0 + 100)


def test_execution_timeout_counts_from_the_original_start_after_resume():
    definition = {**WAIT_WORKFLOW, "TimeoutSeconds": 20}
    clock = VirtualClock(T0)
    sm = StateMachine.from_definition(definition)
    partial = sm.resume(sm.begin({}, clock=clock.now), stop_after=2, clock=clock.now, sleep=clock.sleep)
    later = VirtualClock(T0 + 5)
    r = StateMachine.from_definition(definition).resume(
        partial.cursor.to_json(), clock=later.now, sleep=later.sleep
    )
    assert r.status == "TIMED_OUT"
    assert later.now() <= T0 + 20 + 1e-6
    assert not [e for e in r.history if e.state_name == "B"]


# --------------------------------------------------------------------------------- retry cursors

RETRY_WORKFLOW = {
    "StartAt": "T",
    "States": {
        "T": {
            "Type": "Task",
            "Resource": "flaky",
            "Parameters": {"rc.$": "$$.State.RetryCount"},
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 5, "MaxAttempts": 2}],
            "End": True,
        }
    },
}


def flaky_registry(fail_until_attempt: int, attempts: list[int]) -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("flaky")
    def flaky(payload, ctx: TaskContext):
        attempts.append(ctx.attempt)
        if ctx.attempt < fail_until_attempt:
            raise TaskError("Flaky", f"attempt {ctx.attempt}")
        return {"attempt": ctx.attempt, "rc": payload["rc"]}

    return reg


def retry_cursor(reg: HandlerRegistry) -> str:
    clock = VirtualClock(T0)
    sm = StateMachine.from_definition(RETRY_WORKFLOW)
    partial = sm.resume(
        sm.begin({}, clock=clock.now), handlers=reg, stop_after=1, clock=clock.now, sleep=clock.sleep
    )
    assert partial.status == "RUNNING"
    assert [e.status for e in partial.history] == ["RETRIED"]
    assert partial.cursor.attempt == 2
    return partial.cursor.to_json()


def test_retry_cursor_resumes_with_attempt_two():
    attempts: list[int] = []
    reg = flaky_registry(2, attempts)
    text = retry_cursor(reg)
    assert attempts == [1]
    clock = VirtualClock(T0 + 1)
    r = StateMachine.from_definition(RETRY_WORKFLOW).resume(
        text, handlers=reg, clock=clock.now, sleep=clock.sleep
    )
    assert r.status == "SUCCEEDED"
    assert r.output == {"attempt": 2, "rc": 1}
    assert attempts == [1, 2]
    assert clock.now() == pytest.approx(T0 + 5)  # the back-off still ends 5 s after the failure
    assert [(e.status, e.attempt) for e in r.history] == [("SUCCEEDED", 2)]


def test_retry_cursor_keeps_the_retry_budget():
    attempts: list[int] = []
    reg = flaky_registry(99, attempts)  # always fails
    text = retry_cursor(reg)
    clock = VirtualClock(T0)
    r = StateMachine.from_definition(RETRY_WORKFLOW).resume(
        text, handlers=reg, clock=clock.now, sleep=clock.sleep
    )
    assert r.status == "FAILED"
    assert r.error == "Flaky"
    assert attempts == [1, 2, 3]  # MaxAttempts 2: one retry was spent before the stop, one after
    assert clock.now() == pytest.approx(T0 + 5 + 10)
