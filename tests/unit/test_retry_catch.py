"""Retry and Catch, as AWS Step Functions documents them ("Handling errors in Step Functions workflows")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smq import HandlerRegistry, StateMachine, TaskContext, TaskError, VirtualClock

T0 = 1_735_732_800.0


class Script:
    """A handler that raises the scripted errors in turn (then returns `result`) and records call times."""

    def __init__(self, clock: VirtualClock, errors: list[str | None], result: Any = "ok"):
        self.clock = clock
        self.errors = list(errors)
        self.result = result
        self.times: list[float] = []
        self.attempts: list[int] = []

    def __call__(self, payload: Any, ctx: TaskContext) -> Any:
        self.times.append(self.clock.now())
        self.attempts.append(ctx.attempt)
        index = len(self.times) - 1
        if index < len(self.errors) and self.errors[index] is not None:
            raise TaskError(self.errors[index], f"failure #{index + 1}")
        return self.result

    @property
    def delays(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


def task_machine(task: dict[str, Any], extra: dict[str, Any] | None = None) -> StateMachine:
    states = {"T": {"Type": "Task", "Resource": "h", **task}, **(extra or {})}
    if "Next" not in states["T"]:
        states["T"]["End"] = True
    return StateMachine.from_definition({"StartAt": "T", "States": states})


def run_script(
    task: dict[str, Any], errors: list[str | None], extra: dict[str, Any] | None = None, inp: Any = None
):
    clock = VirtualClock(T0)
    script = Script(clock, errors)
    reg = HandlerRegistry()
    reg.register("h", script)
    r = task_machine(task, extra).run(
        {"in": 1} if inp is None else inp, handlers=reg, clock=clock.now, sleep=clock.sleep
    )
    return r, script


HANDLED = {"Handled": {"Type": "Pass", "End": True}}


# ------------------------------------------------------------------------------------------ Retry


class TestRetry:
    def test_retry_until_success_with_exponential_backoff(self):
        retry = [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}]
        r, script = run_script({"Retry": retry}, ["Flaky", "Flaky", "Flaky"])
        assert r.status == "SUCCEEDED"
        assert r.output == "ok"
        assert script.delays == pytest.approx([1, 2, 4])
        assert script.attempts == [1, 2, 3, 4]

    def test_defaults_interval_1_attempts_3_backoff_2(self):
        r, script = run_script({"Retry": [{"ErrorEquals": ["Flaky"]}]}, ["Flaky"] * 10)
        assert r.status == "FAILED"
        assert r.error == "Flaky"
        assert len(script.times) == 4  # first try + 3 retries
        assert script.delays == pytest.approx([1, 2, 4])

    def test_interval_and_backoff_rate(self):
        retry = [{"ErrorEquals": ["E"], "IntervalSeconds": 3, "MaxAttempts": 3, "BackoffRate": 1.5}]
        r, script = run_script({"Retry": retry}, ["E"] * 10)
        assert r.status == "FAILED"
        assert script.delays == pytest.approx([3, 4.5, 6.75])

    def test_max_attempts_exhausted_fails_with_last_error(self):
        retry = [{"ErrorEquals": ["E"], "MaxAttempts": 2}]
        r, script = run_script({"Retry": retry}, ["E"] * 10)
        assert r.status == "FAILED"
        assert r.error == "E"
        assert r.cause == "failure #3"
        assert len(script.times) == 3

    def test_max_attempts_zero_never_retries(self):
        retry = [{"ErrorEquals": ["E"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]
        r, script = run_script({"Retry": retry}, ["E"] * 10)
        assert r.status == "FAILED"
        assert len(script.times) == 1

    def test_max_delay_seconds_caps_the_backoff(self):
        retry = [
            {
                "ErrorEquals": ["E"],
                "IntervalSeconds": 3,
                "MaxAttempts": 5,
                "BackoffRate": 3,
                "MaxDelaySeconds": 10,
            }
        ]
        r, script = run_script({"Retry": retry}, ["E"] * 10)
        assert r.status == "FAILED"
        assert script.delays == pytest.approx([3, 9, 10, 10, 10])

    def test_jitter_full_delay_within_zero_and_cap(self):
        retry = [
            {
                "ErrorEquals": ["E"],
                "IntervalSeconds": 2,
                "MaxAttempts": 8,
                "BackoffRate": 2,
                "MaxDelaySeconds": 20,
                "JitterStrategy": "FULL",
            }
        ]
        r, script = run_script({"Retry": retry}, ["E"] * 20)
        assert r.status == "FAILED"
        caps = [min(2 * 2**i, 20) for i in range(8)]
        assert len(script.delays) == 8
        for delay, cap in zip(script.delays, caps, strict=True):
            assert 0 <= delay <= cap + 1e-9
        assert script.delays != pytest.approx(caps)  # jitter actually moved something

    def test_only_first_matching_retrier_applies_aws_example(self):
        # AWS docs: ErrorA, ErrorB, ErrorC, ErrorB -> the first retrier (A/B, MaxAttempts 2) is used up by
        # the first two errors, ErrorC uses the second retrier, and the last ErrorB is not retried.
        retry = [
            {"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 2},
            {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
        ]
        r, script = run_script({"Retry": retry}, ["ErrorA", "ErrorB", "ErrorC", "ErrorB", None])
        assert r.status == "FAILED"
        assert r.error == "ErrorB"
        assert len(script.times) == 4
        assert script.delays == pytest.approx([1, 2, 5])

    def test_exhausted_first_match_does_not_fall_through_to_later_retrier(self):
        retry = [{"ErrorEquals": ["X"], "MaxAttempts": 1}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]
        r, script = run_script({"Retry": retry}, ["X"] * 10)
        assert r.status == "FAILED"
        assert len(script.times) == 2

    def test_non_matching_error_is_not_retried(self):
        r, script = run_script({"Retry": [{"ErrorEquals": ["Other"]}]}, ["E"])
        assert r.status == "FAILED"
        assert len(script.times) == 1

    def test_states_all_retries_anything(self):
        r, script = run_script({"Retry": [{"ErrorEquals": ["States.ALL"]}]}, ["Whatever", "Else"])
        assert r.status == "SUCCEEDED"
        assert len(script.times) == 3

    def test_task_failed_matches_any_error_except_timeout(self):
        retry = [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 5}]
        r, script = run_script({"Retry": retry}, ["Custom.One", "ValueError"])
        assert r.status == "SUCCEEDED"
        assert len(script.times) == 3

        r, script = run_script({"Retry": retry}, ["States.Timeout"])
        assert r.status == "FAILED"
        assert r.error == "States.Timeout"
        assert len(script.times) == 1

    def test_history_records_retried_attempts(self):
        retry = [{"ErrorEquals": ["E"], "MaxAttempts": 3}]
        r, _ = run_script({"Retry": retry}, ["E", "E"])
        assert [(e.status, e.attempt, e.error) for e in r.history] == [
            ("RETRIED", 1, "E"),
            ("RETRIED", 2, "E"),
            ("SUCCEEDED", 3, None),
        ]

    def test_retry_counters_reset_on_next_state_visit(self):
        # The same Task visited twice (via a loop): each visit gets the full MaxAttempts.
        clock = VirtualClock(T0)
        script = Script(clock, ["E", None, "E", None])
        reg = HandlerRegistry()
        reg.register("h", script)
        sm = StateMachine.from_definition(
            {
                "StartAt": "T",
                "States": {
                    "T": {
                        "Type": "Task",
                        "Resource": "h",
                        "ResultPath": None,
                        "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1}],
                        "Next": "Count",
                    },
                    "Count": {
                        "Type": "Pass",
                        "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
                        "Next": "Loop",
                    },
                    "Loop": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.n", "NumericLessThan": 2, "Next": "T"}],
                        "Default": "Done",
                    },
                    "Done": {"Type": "Succeed"},
                },
            }
        )
        r = sm.run({"n": 0}, handlers=reg, clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"n": 2}
        assert len(script.times) == 4


# ------------------------------------------------------------------------------------------ Catch


class TestCatch:
    def test_catch_default_result_path_replaces_with_error_output(self):
        catch = [{"ErrorEquals": ["E"], "Next": "Handled"}]
        r, _ = run_script({"Catch": catch}, ["E"], HANDLED, inp={"keep": 1})
        assert r.status == "SUCCEEDED"
        assert r.output == {"Error": "E", "Cause": "failure #1"}

    def test_catch_result_path_into_input(self):
        catch = [{"ErrorEquals": ["E"], "ResultPath": "$.err", "Next": "Handled"}]
        r, _ = run_script({"Catch": catch}, ["E"], HANDLED, inp={"keep": 1})
        assert r.output == {"keep": 1, "err": {"Error": "E", "Cause": "failure #1"}}

    def test_catch_result_path_applies_to_raw_input_not_input_path(self):
        catch = [{"ErrorEquals": ["E"], "ResultPath": "$.a.err", "Next": "Handled"}]
        r, _ = run_script({"InputPath": "$.sub", "Catch": catch}, ["E"], HANDLED, inp={"sub": 1})
        assert r.output == {"sub": 1, "a": {"err": {"Error": "E", "Cause": "failure #1"}}}

    def test_catch_result_path_null_keeps_input(self):
        catch = [{"ErrorEquals": ["E"], "ResultPath": None, "Next": "Handled"}]
        r, _ = run_script({"Catch": catch}, ["E"], HANDLED, inp={"keep": 1})
        assert r.output == {"keep": 1}

    def test_catch_next_and_first_matching_catcher(self):
        catch = [
            {"ErrorEquals": ["Other"], "Next": "Wrong"},
            {"ErrorEquals": ["E", "F"], "Next": "Right"},
            {"ErrorEquals": ["States.ALL"], "Next": "Wrong"},
        ]
        extra = {
            "Wrong": {"Type": "Fail", "Error": "WrongCatcher"},
            "Right": {"Type": "Pass", "Result": "right", "End": True},
        }
        r, _ = run_script({"Catch": catch}, ["F"], extra)
        assert r.status == "SUCCEEDED"
        assert r.output == "right"

    def test_catch_task_failed_does_not_catch_timeout(self):
        catch = [
            {"ErrorEquals": ["States.TaskFailed"], "Next": "Generic"},
            {"ErrorEquals": ["States.ALL"], "Next": "Handled"},
        ]
        extra = {**HANDLED, "Generic": {"Type": "Pass", "Result": "generic", "End": True}}
        r, _ = run_script({"Catch": catch}, ["States.Timeout"], extra)
        assert r.output == {"Error": "States.Timeout", "Cause": "failure #1"}
        r, _ = run_script({"Catch": catch}, ["Anything"], extra)
        assert r.output == "generic"

    def test_uncaught_error_fails(self):
        r, _ = run_script({"Catch": [{"ErrorEquals": ["Other"], "Next": "Handled"}]}, ["E"], HANDLED)
        assert r.status == "FAILED"
        assert r.error == "E"

    def test_retry_then_catch(self):
        retry = [{"ErrorEquals": ["E"], "MaxAttempts": 2}]
        catch = [{"ErrorEquals": ["E"], "ResultPath": "$.err", "Next": "Handled"}]
        r, script = run_script({"Retry": retry, "Catch": catch}, ["E"] * 10, HANDLED, inp={})
        assert r.status == "SUCCEEDED"
        assert len(script.times) == 3
        assert r.output == {"err": {"Error": "E", "Cause": "failure #3"}}
        assert [(e.state_name, e.status, e.attempt) for e in r.history] == [
            ("T", "RETRIED", 1),
            ("T", "RETRIED", 2),
            ("T", "CAUGHT", 3),
            ("Handled", "SUCCEEDED", 1),
        ]

    def test_caught_history_entry_has_error(self):
        r, _ = run_script({"Catch": [{"ErrorEquals": ["E"], "Next": "Handled"}]}, ["E"], HANDLED)
        caught = r.history[0]
        assert (caught.state_name, caught.status, caught.error, caught.cause) == (
            "T",
            "CAUGHT",
            "E",
            "failure #1",
        )


# ------------------------------------------------------------------------ uncatchable errors


class TestUncatchable:
    CATCH_ALL = {
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}],
    }

    def test_runtime_error_from_parameters_is_not_caught_or_retried(self):
        r, script = run_script({"Parameters": {"x.$": "$.missing"}, **self.CATCH_ALL}, [], HANDLED)
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"
        assert script.times == []
        assert all(e.state_name != "Handled" for e in r.history)

    def test_runtime_error_from_input_path_is_not_caught(self):
        r, _ = run_script({"InputPath": "$.missing", **self.CATCH_ALL}, [], HANDLED)
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_runtime_error_not_caught_by_explicit_name(self):
        catch = [{"ErrorEquals": ["States.Runtime"], "Next": "Handled"}]
        r, _ = run_script({"Parameters": {"x.$": "$.missing"}, "Catch": catch}, [], HANDLED)
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_data_limit_exceeded_is_not_caught(self):
        clock = VirtualClock(T0)
        reg = HandlerRegistry()
        reg.register("h", lambda p: "x" * 5000)
        sm = task_machine(self.CATCH_ALL, HANDLED)
        r = sm.run({}, handlers=reg, clock=clock.now, sleep=clock.sleep, payload_limit=1000)
        assert r.status == "FAILED"
        assert r.error == "States.DataLimitExceeded"
        assert all(e.state_name != "Handled" for e in r.history)

    def test_oversized_task_result_fails_even_when_discarded(self):
        clock = VirtualClock(T0)
        reg = HandlerRegistry()
        reg.register("h", lambda p: "x" * 5000)
        sm = task_machine({"ResultPath": None, **self.CATCH_ALL}, HANDLED)
        r = sm.run({}, handlers=reg, clock=clock.now, sleep=clock.sleep, payload_limit=1000)
        assert r.status == "FAILED"
        assert r.error == "States.DataLimitExceeded"

    def test_oversized_parameters_fail_before_the_handler_runs(self):
        clock = VirtualClock(T0)
        calls: list[Any] = []
        reg = HandlerRegistry()
        reg.register("h", lambda p: calls.append(1))
        task = {"Parameters": {"big.$": "States.ArrayRange(1, 400, 1)"}, "ResultPath": None}
        sm = task_machine(task)
        r = sm.run({}, handlers=reg, clock=clock.now, sleep=clock.sleep, payload_limit=1000)
        assert r.status == "FAILED"
        assert r.error == "States.DataLimitExceeded"
        assert calls == []

    def test_result_path_match_failure_is_catchable(self):
        clock = VirtualClock(T0)
        reg = HandlerRegistry()
        reg.register("h", lambda p: 1)
        catch = [{"ErrorEquals": ["States.ResultPathMatchFailure"], "Next": "Handled"}]
        sm = task_machine({"ResultPath": "$.x", "Catch": catch}, HANDLED)
        r = sm.run([1, 2], handlers=reg, clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED"
        assert r.output["Error"] == "States.ResultPathMatchFailure"


# --------------------------------------------------------------------------- Parallel and Map


def fanout_run(definition: dict[str, Any], handlers: dict[str, Callable[..., Any]], inp: Any):
    clock = VirtualClock(T0)
    reg = HandlerRegistry()
    for name, fn in handlers.items():
        reg.register(name, fn)
    return StateMachine.from_definition(definition).run(inp, handlers=reg, clock=clock.now, sleep=clock.sleep)


def branch(resource: str) -> dict[str, Any]:
    return {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": resource, "End": True}}}


class TestFanoutErrors:
    def test_parallel_catch_gets_branch_error_name(self):
        def bad(p):
            raise TaskError("Branch.Broken", "branch 2 broke")

        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [branch("good"), branch("bad")],
                    "Catch": [{"ErrorEquals": ["Branch.Broken"], "ResultPath": "$.err", "Next": "Handled"}],
                    "End": True,
                },
                **HANDLED,
            },
        }
        r = fanout_run(definition, {"good": lambda p: "g", "bad": bad}, {"in": 1})
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"in": 1, "err": {"Error": "Branch.Broken", "Cause": "branch 2 broke"}}

    def test_parallel_uncaught_branch_error_fails_with_its_name(self):
        def bad(p):
            raise TaskError("Branch.Broken", "x")

        definition = {
            "StartAt": "P",
            "States": {"P": {"Type": "Parallel", "Branches": [branch("good"), branch("bad")], "End": True}},
        }
        r = fanout_run(definition, {"good": lambda p: "g", "bad": bad}, {})
        assert r.status == "FAILED"
        assert r.error == "Branch.Broken"

    def test_parallel_retry_reruns_branches(self):
        calls = {"flaky": 0, "good": 0}

        def flaky(p):
            calls["flaky"] += 1
            if calls["flaky"] == 1:
                raise TaskError("Flaky", "first time")
            return "f"

        def good(p):
            calls["good"] += 1
            return "g"

        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [branch("good"), branch("flaky")],
                    "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2}],
                    "End": True,
                }
            },
        }
        r = fanout_run(definition, {"good": good, "flaky": flaky}, {})
        assert r.status == "SUCCEEDED"
        assert r.output == ["g", "f"]
        assert calls == {"flaky": 2, "good": 2}
        top = [(e.state_name, e.status, e.attempt) for e in r.history if e.scope == ""]
        assert top == [("P", "RETRIED", 1), ("P", "SUCCEEDED", 2)]

    def test_parallel_fail_state_in_branch(self):
        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "F",
                            "States": {"F": {"Type": "Fail", "Error": "In.Branch", "Cause": "c"}},
                        },
                    ],
                    "Catch": [{"ErrorEquals": ["In.Branch"], "Next": "Handled"}],
                    "End": True,
                },
                **HANDLED,
            },
        }
        r = fanout_run(definition, {}, {})
        assert r.status == "SUCCEEDED"
        assert r.output == {"Error": "In.Branch", "Cause": "c"}

    def test_map_catch_gets_iteration_error_name(self):
        def item(p):
            if p == 2:
                raise TaskError("Item.Bad", "item 2")
            return p * 10

        definition = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": branch("item"),
                    "ResultPath": "$.out",
                    "Catch": [{"ErrorEquals": ["Item.Bad"], "ResultPath": "$.err", "Next": "Handled"}],
                    "End": True,
                },
                **HANDLED,
            },
        }
        r = fanout_run(definition, {"item": item}, {"items": [1, 2, 3]})
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"items": [1, 2, 3], "err": {"Error": "Item.Bad", "Cause": "item 2"}}

    def test_map_uncaught_iteration_error_fails_with_its_name(self):
        def item(p):
            raise TaskError("Item.Bad", "x")

        definition = {
            "StartAt": "M",
            "States": {"M": {"Type": "Map", "ItemProcessor": branch("item"), "End": True}},
        }
        r = fanout_run(definition, {"item": item}, [1, 2])
        assert r.status == "FAILED"
        assert r.error == "Item.Bad"

    def test_map_retry_reruns_iterations(self):
        seen: list[int] = []

        def item(p):
            seen.append(p)
            if len(seen) == 1:
                raise TaskError("Flaky", "once")
            return p + 1

        definition = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "MaxConcurrency": 1,
                    "ItemProcessor": branch("item"),
                    "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 1}],
                    "End": True,
                }
            },
        }
        r = fanout_run(definition, {"item": item}, [1, 2])
        assert r.status == "SUCCEEDED"
        assert r.output == [2, 3]
        assert seen[0] == 1 and sorted(seen[1:]) == [1, 2]

    def test_retry_inside_iteration_is_local(self):
        counts: dict[int, int] = {}

        def item(p, ctx: TaskContext):
            counts[p] = counts.get(p, 0) + 1
            if p == 1 and ctx.attempt == 1:
                raise TaskError("Flaky", "once")
            return {"v": p, "attempt": ctx.attempt}

        definition = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "B",
                        "States": {
                            "B": {
                                "Type": "Task",
                                "Resource": "item",
                                "Retry": [{"ErrorEquals": ["Flaky"]}],
                                "End": True,
                            }
                        },
                    },
                    "End": True,
                }
            },
        }
        r = fanout_run(definition, {"item": item}, [0, 1, 2])
        assert r.status == "SUCCEEDED"
        assert r.output == [{"v": 0, "attempt": 1}, {"v": 1, "attempt": 2}, {"v": 2, "attempt": 1}]
        assert counts == {0: 1, 1: 2, 2: 1}
