"""Execution semantics of each state type, as AWS Step Functions documents them (JSONPath mode)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from smq import DefinitionError, HandlerRegistry, StateMachine, TaskContext, VirtualClock

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def machine(states: dict[str, Any], start: str | None = None, **top: Any) -> StateMachine:
    definition = {"StartAt": start or next(iter(states)), "States": states, **top}
    return StateMachine.from_definition(definition)


def run(sm: StateMachine, inp: Any = None, handlers: HandlerRegistry | None = None, **kw: Any):
    clock = kw.pop("clock", None) or VirtualClock(T0)
    return sm.run(inp, handlers=handlers or HandlerRegistry(), clock=clock.now, sleep=clock.sleep, **kw)


def single(state: dict[str, Any], inp: Any = None, **kw: Any):
    """Run a one-state machine whose only state ends the execution."""
    return run(machine({"S": {**state, "End": True}}), inp, **kw)


def entries(result, name: str):
    return [e for e in result.history if e.state_name == name]


# ------------------------------------------------------------------------------------------ Pass


class TestPass:
    def test_without_result_passes_input_through(self):
        r = single({"Type": "Pass"}, {"a": 1})
        assert r.status == "SUCCEEDED"
        assert r.output == {"a": 1}

    def test_result_literal_keys_ending_in_dollar_are_not_evaluated(self):
        result = {"plain": 1, "ref.$": "$.a", "nested": {"deep.$": "$.b"}, "list": [{"x.$": "$"}]}
        r = single({"Type": "Pass", "Result": result}, {"a": "A", "b": "B"})
        assert r.status == "SUCCEEDED"
        assert r.output == result

    def test_parameters_evaluated_in_nested_objects_and_arrays(self):
        params = {
            "static": "s",
            "top.$": "$.a",
            "obj": {"inner.$": "$.b.c", "lit": 2},
            "arr": [{"el.$": "$.a"}, 3, {"deeper": {"d.$": "$.b"}}],
        }
        r = single({"Type": "Pass", "Parameters": params}, {"a": 1, "b": {"c": True}})
        assert r.status == "SUCCEEDED"
        assert r.output == {
            "static": "s",
            "top": 1,
            "obj": {"inner": True, "lit": 2},
            "arr": [{"el": 1}, 3, {"deeper": {"d": {"c": True}}}],
        }

    def test_result_path_creates_intermediate_objects_in_raw_input(self):
        r = single(
            {"Type": "Pass", "InputPath": "$.sub", "Result": "R", "ResultPath": "$.x.y.z"},
            {"sub": {"s": 1}, "keep": True},
        )
        # ResultPath writes into the *raw* input (not the InputPath selection).
        assert r.output == {"sub": {"s": 1}, "keep": True, "x": {"y": {"z": "R"}}}

    def test_parameters_result_goes_to_result_path_in_raw_input(self):
        r = single(
            {"Type": "Pass", "Parameters": {"copy.$": "$.a", "k": 1}, "ResultPath": "$.made"},
            {"a": [1, 2]},
        )
        assert r.output == {"a": [1, 2], "made": {"copy": [1, 2], "k": 1}}

    def test_parameters_with_intrinsics_and_context(self):
        r = single(
            {
                "Type": "Pass",
                "Parameters": {
                    "joined.$": "States.Format('{}-{}', $.a, $.b)",
                    "arr.$": "States.Array($.a, $.b)",
                    "len.$": "States.ArrayLength($.list)",
                    "json.$": "States.JsonToString($.obj)",
                    "state.$": "$$.State.Name",
                },
            },
            {"a": "x", "b": 2, "list": [1, 2, 3], "obj": {"k": "v"}},
        )
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"joined": "x-2", "arr": ["x", 2], "len": 3, "json": '{"k":"v"}', "state": "S"}

    def test_result_path_into_existing_object_keeps_siblings(self):
        r = single({"Type": "Pass", "Result": 5, "ResultPath": "$.a.n"}, {"a": {"m": 1}})
        assert r.output == {"a": {"m": 1, "n": 5}}

    def test_result_path_dollar_replaces_input(self):
        r = single({"Type": "Pass", "Result": {"new": 1}, "ResultPath": "$"}, {"old": 1})
        assert r.output == {"new": 1}

    def test_result_path_null_keeps_input(self):
        r = single({"Type": "Pass", "Result": {"new": 1}, "ResultPath": None}, {"old": 1})
        assert r.output == {"old": 1}

    def test_input_path_null_gives_empty_object(self):
        r = single({"Type": "Pass", "InputPath": None, "ResultPath": "$.seen"}, {"a": 1})
        assert r.output == {"a": 1, "seen": {}}

    def test_output_path_null_gives_empty_object(self):
        r = single({"Type": "Pass", "OutputPath": None}, {"a": 1})
        assert r.status == "SUCCEEDED"
        assert r.output == {}

    def test_output_path_selects(self):
        r = single(
            {"Type": "Pass", "Result": {"v": 7}, "ResultPath": "$.res", "OutputPath": "$.res.v"},
            {"a": 1},
        )
        assert r.output == 7

    def test_input_path_selects_then_parameters(self):
        r = single(
            {"Type": "Pass", "InputPath": "$.order", "Parameters": {"id.$": "$.id"}},
            {"order": {"id": 42}, "other": 0},
        )
        assert r.output == {"id": 42}

    def test_missing_output_path_fails_with_runtime(self):
        r = single({"Type": "Pass", "OutputPath": "$.nope"}, {"a": 1})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_pass_chain_history(self):
        sm = machine(
            {
                "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
                "B": {"Type": "Pass", "Result": 2, "ResultPath": "$.b", "End": True},
            }
        )
        r = run(sm, {})
        assert r.output == {"a": 1, "b": 2}
        assert [(e.state_name, e.status) for e in r.history] == [("A", "SUCCEEDED"), ("B", "SUCCEEDED")]
        assert r.history[1].input == {"a": 1}


# ---------------------------------------------------------------------------------------- Choice

CHOICE = {
    "Pick": {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
            {"Variable": "$.s", "StringEquals": "x", "Next": "IsX"},
        ],
        "Default": "Other",
    },
    "Big": {"Type": "Pass", "Result": "big", "End": True},
    "IsX": {"Type": "Pass", "Result": "x", "End": True},
    "Other": {"Type": "Pass", "Result": "other", "End": True},
}


class TestChoice:
    @pytest.mark.parametrize(
        ("inp", "expected"),
        [({"n": 11, "s": "x"}, "big"), ({"n": 1, "s": "x"}, "x"), ({"n": 1, "s": "y"}, "other")],
    )
    def test_first_matching_rule_then_default(self, inp, expected):
        r = run(machine(CHOICE), inp)
        assert r.status == "SUCCEEDED"
        assert r.output == expected

    def test_choice_passes_its_input_to_the_next_state(self):
        sm = machine(
            {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsPresent": True, "Next": "E"}]},
                "E": {"Type": "Pass", "End": True},
            }
        )
        r = run(sm, {"a": [1, 2]})
        assert r.output == {"a": [1, 2]}

    def test_no_match_and_no_default_fails_with_no_choice_matched(self):
        states = {k: v for k, v in CHOICE.items() if k != "Other"}
        states["Pick"] = {k: v for k, v in CHOICE["Pick"].items() if k != "Default"}
        r = run(machine(states), {"n": 1, "s": "zzz"})
        assert r.status == "FAILED"
        assert r.error == "States.NoChoiceMatched"

    def test_missing_variable_fails_with_runtime(self):
        r = run(machine(CHOICE), {"s": "x"})  # $.n is missing: the first rule cannot be evaluated
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"


# ------------------------------------------------------------------------------------------ Wait


def wait_machine(wait: dict[str, Any]) -> StateMachine:
    return machine(
        {
            "W": {"Type": "Wait", **wait, "Next": "After"},
            "After": {"Type": "Pass", "Parameters": {"t.$": "$$.State.EnteredTime"}, "End": True},
        }
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


class TestWait:
    def test_seconds(self):
        clock = VirtualClock(T0)
        r = run(wait_machine({"Seconds": 90}), {"a": 1}, clock=clock)
        assert r.status == "SUCCEEDED"
        assert clock.now() == pytest.approx(T0 + 90)
        assert r.output == {"t": iso(T0 + 90)}
        wait = entries(r, "W")[0]
        assert wait.output == {"a": 1}
        assert wait.exited_at - wait.entered_at == pytest.approx(90)

    def test_seconds_path(self):
        clock = VirtualClock(T0)
        r = run(wait_machine({"SecondsPath": "$.delay"}), {"delay": 42}, clock=clock)
        assert r.status == "SUCCEEDED"
        assert clock.now() == pytest.approx(T0 + 42)

    def test_timestamp(self):
        clock = VirtualClock(T0)
        r = run(wait_machine({"Timestamp": "2025-01-01T13:00:00Z"}), {}, clock=clock)
        assert r.status == "SUCCEEDED"
        assert clock.now() == pytest.approx(T0 + 3600)

    def test_timestamp_path_with_offset(self):
        clock = VirtualClock(T0)
        r = run(wait_machine({"TimestampPath": "$.at"}), {"at": "2025-01-01T14:00:30+02:00"}, clock=clock)
        assert r.status == "SUCCEEDED"
        assert clock.now() == pytest.approx(T0 + 30)  # 14:00:30+02:00 is 12:00:30Z

    def test_timestamp_in_the_past_does_not_wait(self):
        clock = VirtualClock(T0)
        r = run(wait_machine({"Timestamp": "2020-01-01T00:00:00Z"}), {}, clock=clock)
        assert r.status == "SUCCEEDED"
        assert clock.now() == pytest.approx(T0)

    @pytest.mark.parametrize("bad", [1.5, "ten", -3, None])
    def test_seconds_path_not_a_non_negative_integer_fails_with_runtime(self, bad):
        r = run(wait_machine({"SecondsPath": "$.delay"}), {"delay": bad})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_seconds_path_missing_fails_with_runtime(self):
        r = run(wait_machine({"SecondsPath": "$.delay"}), {})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_timestamp_path_not_a_timestamp_fails_with_runtime(self):
        r = run(wait_machine({"TimestampPath": "$.at"}), {"at": "tomorrow"})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"


# ------------------------------------------------------------------------------- Succeed and Fail


class TestSucceedFail:
    def test_succeed_ends_with_its_output(self):
        sm = machine(
            {
                "S": {"Type": "Succeed", "InputPath": "$.keep", "OutputPath": "$.v"},
            }
        )
        r = run(sm, {"keep": {"v": [1]}, "drop": 1})
        assert r.status == "SUCCEEDED"
        assert r.output == [1]

    def test_succeed_in_the_middle_stops_the_execution(self):
        sm = machine(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.done", "BooleanEquals": True, "Next": "Stop"}],
                    "Default": "More",
                },
                "Stop": {"Type": "Succeed"},
                "More": {"Type": "Pass", "Result": "more", "End": True},
            }
        )
        r = run(sm, {"done": True})
        assert r.status == "SUCCEEDED"
        assert r.output == {"done": True}
        assert [e.state_name for e in r.history] == ["C", "Stop"]

    def test_fail_error_and_cause(self):
        r = run(machine({"F": {"Type": "Fail", "Error": "Order.Bad", "Cause": "no stock"}}), {"a": 1})
        assert r.status == "FAILED"
        assert (r.error, r.cause) == ("Order.Bad", "no stock")
        assert entries(r, "F")[0].status == "FAILED"

    def test_fail_error_path_and_cause_path(self):
        sm = machine({"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.detail.why"}})
        r = run(sm, {"e": "Dyn.Error", "detail": {"why": "because"}})
        assert r.status == "FAILED"
        assert (r.error, r.cause) == ("Dyn.Error", "because")

    def test_fail_cause_path_intrinsic_format(self):
        sm = machine(
            {
                "F": {
                    "Type": "Fail",
                    "ErrorPath": "States.Format('Order.{}', $.kind)",
                    "CausePath": "States.Format('order {} failed: {}', $.id, $.reason)",
                }
            }
        )
        r = run(sm, {"kind": "Rejected", "id": 17, "reason": "card declined"})
        assert r.status == "FAILED"
        assert r.error == "Order.Rejected"
        assert r.cause == "order 17 failed: card declined"


# -------------------------------------------------------------------------------- Context object


class TestContextObject:
    def test_execution_state_and_machine_fields(self):
        sm = StateMachine.from_definition(
            {
                "StartAt": "First",
                "States": {
                    "First": {"Type": "Wait", "Seconds": 5, "Next": "Ctx"},
                    "Ctx": {
                        "Type": "Pass",
                        "Parameters": {
                            "input.$": "$$.Execution.Input",
                            "name.$": "$$.Execution.Name",
                            "state.$": "$$.State.Name",
                            "entered.$": "$$.State.EnteredTime",
                            "machine.$": "$$.StateMachine.Id",
                            "id.$": "$$.Execution.Id",
                        },
                        "End": True,
                    },
                },
            },
            id="arn:aws:states:us-east-1:123456789012:stateMachine:ctx",
        )
        clock = VirtualClock(T0)
        r = sm.run({"k": "v"}, name="exec-7", clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED"
        assert r.output == {
            "input": {"k": "v"},
            "name": "exec-7",
            "state": "Ctx",
            "entered": "2025-01-01T12:00:05.000Z",
            "machine": "arn:aws:states:us-east-1:123456789012:stateMachine:ctx",
            "id": "arn:aws:states:us-east-1:123456789012:execution:ctx:exec-7",
        }

    def test_execution_input_is_the_original_input_in_later_states(self):
        sm = machine(
            {
                "A": {"Type": "Pass", "Result": "changed", "Next": "B"},
                "B": {
                    "Type": "Pass",
                    "Parameters": {"orig.$": "$$.Execution.Input", "now.$": "$"},
                    "End": True,
                },
            }
        )
        r = run(sm, {"x": 1})
        assert r.output == {"orig": {"x": 1}, "now": "changed"}

    def test_retry_count_in_task(self):
        reg = HandlerRegistry()
        seen: list[int] = []

        @reg.handler("flaky")
        def flaky(payload, ctx: TaskContext):
            seen.append(payload["rc"])
            if len(seen) < 3:
                raise RuntimeError("again")
            return payload

        sm = machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "flaky",
                    "Parameters": {"rc.$": "$$.State.RetryCount"},
                    "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}],
                    "End": True,
                }
            }
        )
        r = run(sm, {}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert seen == [0, 1, 2]
        assert r.output == {"rc": 2}

    def test_entered_time_is_constant_across_retries(self):
        reg = HandlerRegistry()
        seen: list[Any] = []

        @reg.handler("flaky")
        def flaky(payload):
            seen.append(payload)
            if len(seen) < 3:
                raise RuntimeError("again")
            return "ok"

        sm = machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "flaky",
                    "Parameters": {"t.$": "$$.State.EnteredTime", "rc.$": "$$.State.RetryCount"},
                    "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 5, "MaxAttempts": 3}],
                    "End": True,
                }
            }
        )
        r = run(sm, {}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert [p["rc"] for p in seen] == [0, 1, 2]
        assert [p["t"] for p in seen] == ["2025-01-01T12:00:00.000Z"] * 3

    def test_map_item_index_and_value_in_item_selector(self):
        sm = machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemSelector": {
                        "i.$": "$$.Map.Item.Index",
                        "v.$": "$$.Map.Item.Value",
                        "tag.$": "$.tag",
                    },
                    "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                    "End": True,
                }
            }
        )
        r = run(sm, {"items": ["a", {"b": 1}], "tag": "T"})
        assert r.status == "SUCCEEDED"
        assert r.output == [{"i": 0, "v": "a", "tag": "T"}, {"i": 1, "v": {"b": 1}, "tag": "T"}]


# ----------------------------------------------------------------------------- workflow variables


class TestVariables:
    def test_pass_assign_then_task_parameters_and_intrinsic(self):
        reg = HandlerRegistry()
        got: list[Any] = []

        @reg.handler("echo")
        def echo(payload):
            got.append(payload)
            return {"ok": True}

        sm = machine(
            {
                "Set": {
                    "Type": "Pass",
                    "Assign": {"name": "Ada", "count": 3, "fromInput.$": "$.v"},
                    "Next": "Use",
                },
                "Use": {
                    "Type": "Task",
                    "Resource": "echo",
                    "Parameters": {
                        "n.$": "$name",
                        "c.$": "$count",
                        "f.$": "$fromInput.deep",
                        "msg.$": "States.Format('hi {} x{}', $name, $count)",
                    },
                    "End": True,
                },
            }
        )
        r = run(sm, {"v": {"deep": [1]}}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert got == [{"n": "Ada", "c": 3, "f": [1], "msg": "hi Ada x3"}]

    def test_assign_uses_values_from_before_the_state(self):
        sm = machine(
            {
                "Init": {"Type": "Pass", "Assign": {"a": 1, "b": 2}, "Next": "Swap"},
                "Swap": {
                    "Type": "Pass",
                    "Parameters": {"seenA.$": "$a"},
                    "Assign": {"a.$": "$b", "b.$": "$a"},
                    "Next": "Show",
                },
                "Show": {
                    "Type": "Pass",
                    "Parameters": {"prev.$": "$.seenA", "a.$": "$a", "b.$": "$b"},
                    "End": True,
                },
            }
        )
        r = run(sm, {})
        assert r.status == "SUCCEEDED"
        # Parameters of Swap still see a=1; the swap is simultaneous
        assert r.output == {"prev": 1, "a": 2, "b": 1}

    def test_task_assign_from_result(self):
        reg = HandlerRegistry()
        reg.register("mk", lambda payload: {"id": 99, "big": "x" * 10})
        sm = machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "mk",
                    "ResultPath": None,
                    "Assign": {"saved.$": "$.id"},  # `$` is the task result here
                    "Next": "Show",
                },
                "Show": {"Type": "Pass", "Parameters": {"saved.$": "$saved", "in.$": "$"}, "End": True},
            }
        )
        r = run(sm, {"orig": 1}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output == {"saved": 99, "in": {"orig": 1}}

    def test_choice_rule_assign(self):
        sm = machine(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": "$.n",
                            "NumericEquals": 1,
                            "Assign": {"branch": "one", "n.$": "$.n"},
                            "Next": "Show",
                        }
                    ],
                    "Default": "Show",
                },
                "Show": {"Type": "Pass", "Parameters": {"b.$": "$branch", "n.$": "$n"}, "End": True},
            }
        )
        r = run(sm, {"n": 1})
        assert r.status == "SUCCEEDED"
        assert r.output == {"b": "one", "n": 1}

    def test_catch_assign_from_error_output(self):
        reg = HandlerRegistry()

        @reg.handler("boom")
        def boom(payload):
            raise ValueError("kaput")

        sm = machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "boom",
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "ResultPath": None,
                            "Assign": {"err.$": "$.Error", "cause.$": "$.Cause"},
                            "Next": "Show",
                        }
                    ],
                    "End": True,
                },
                "Show": {
                    "Type": "Pass",
                    "Parameters": {"e.$": "$err", "c.$": "$cause", "in.$": "$"},
                    "End": True,
                },
            }
        )
        r = run(sm, {"x": 1}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output["e"] == "ValueError"
        assert "kaput" in r.output["c"]
        assert r.output["in"] == {"x": 1}

    def test_map_iterations_see_outer_variables(self):
        sm = machine(
            {
                "Set": {"Type": "Pass", "Assign": {"factor": 10}, "Next": "M"},
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "P",
                        "States": {
                            "P": {"Type": "Pass", "Parameters": {"v.$": "$", "f.$": "$factor"}, "End": True}
                        },
                    },
                    "End": True,
                },
            }
        )
        r = run(sm, [1, 2])
        assert r.status == "SUCCEEDED"
        assert r.output == [{"v": 1, "f": 10}, {"v": 2, "f": 10}]

    def test_inner_assignments_do_not_leak_out_of_map(self):
        definition = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "P",
                        "States": {"P": {"Type": "Pass", "Assign": {"inner.$": "$"}, "End": True}},
                    },
                    "Next": "After",
                },
                "After": {"Type": "Pass", "Parameters": {"inner.$": "$inner"}, "End": True},
            },
        }
        try:
            sm = StateMachine.from_definition(definition)
        except DefinitionError:
            return  # rejecting the out-of-scope reference up front is also AWS-compatible
        r = run(sm, [1, 2])
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_inner_assignments_do_not_leak_out_of_parallel_and_outer_value_is_kept(self):
        sm = machine(
            {
                "Set": {"Type": "Pass", "Assign": {"keep": "outer"}, "Next": "P"},
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "B1",
                            "States": {
                                "B1": {"Type": "Pass", "Assign": {"local": 1}, "Next": "B2"},
                                "B2": {
                                    "Type": "Pass",
                                    "Parameters": {"l.$": "$local", "k.$": "$keep"},
                                    "End": True,
                                },
                            },
                        }
                    ],
                    "Next": "After",
                },
                "After": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$local", "IsPresent": True, "Next": "Leaked"}],
                    "Default": "Show",
                },
                "Leaked": {"Type": "Fail", "Error": "Leaked"},
                "Show": {"Type": "Pass", "Parameters": {"branch.$": "$[0]", "k.$": "$keep"}, "End": True},
            }
        )
        r = run(sm, {})
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"branch": {"l": 1, "k": "outer"}, "k": "outer"}

    def test_variables_in_items_path_choice_variable_and_wait_seconds_path(self):
        clock = VirtualClock(T0)
        sm = machine(
            {
                "Set": {"Type": "Pass", "Assign": {"items": [1, 2], "mode": "fast", "delay": 7}, "Next": "W"},
                "W": {
                    "Type": "Wait",
                    "SecondsPath": "$delay",
                    "Assign": {"waited.$": "$.marker"},
                    "Next": "C",
                },
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$mode", "StringEquals": "fast", "Next": "M"}],
                    "Default": "Bad",
                },
                "Bad": {"Type": "Fail", "Error": "WrongBranch"},
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$items",
                    "ItemProcessor": {
                        "StartAt": "P",
                        "States": {
                            "P": {"Type": "Pass", "Parameters": {"v.$": "$", "w.$": "$waited"}, "End": True}
                        },
                    },
                    "End": True,
                },
            }
        )
        r = run(sm, {"marker": "m"}, clock=clock)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == [{"v": 1, "w": "m"}, {"v": 2, "w": "m"}]
        assert clock.now() == pytest.approx(T0 + 7)

    def test_unknown_variable_reference_is_runtime_error(self):
        definition = {
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Parameters": {"x.$": "$never"}, "End": True}},
        }
        try:
            sm = StateMachine.from_definition(definition)
        except DefinitionError:
            return  # AWS may reject it when the machine is created; that is fine too
        r = run(sm, {})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_map_state_assign_from_result_array(self):
        sm = machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                    "Assign": {"results.$": "$"},
                    "ResultPath": None,
                    "Next": "Show",
                },
                "Show": {"Type": "Pass", "Parameters": {"r.$": "$results"}, "End": True},
            }
        )
        r = run(sm, [3, 4])
        assert r.status == "SUCCEEDED"
        assert r.output == {"r": [3, 4]}


# ------------------------------------------------------------------------ execution TimeoutSeconds


class TestExecutionTimeout:
    def test_wait_longer_than_timeout_times_out(self):
        sm = machine(
            {
                "W": {"Type": "Wait", "Seconds": 600, "Next": "After"},
                "After": {"Type": "Pass", "End": True},
            },
            TimeoutSeconds=30,
        )
        clock = VirtualClock(T0)
        r = run(sm, {}, clock=clock)
        assert r.status == "TIMED_OUT"
        assert clock.now() - T0 <= 30 + 1e-6
        assert not entries(r, "After")

    def test_short_wait_within_timeout_succeeds(self):
        sm = machine({"W": {"Type": "Wait", "Seconds": 29, "End": True}}, TimeoutSeconds=30)
        r = run(sm, {"a": 1})
        assert r.status == "SUCCEEDED"
        assert r.output == {"a": 1}

    def test_slow_real_handler_times_out_execution_even_with_catch(self):
        reg = HandlerRegistry()

        @reg.handler("slow")
        def slow(payload):
            time.sleep(1.5)
            return "done"

        sm = machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "slow",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                    "End": True,
                },
                "Caught": {"Type": "Pass", "End": True},
            },
            TimeoutSeconds=1,
        )
        started = time.monotonic()
        r = sm.run({}, handlers=reg)
        elapsed = time.monotonic() - started
        assert r.status == "TIMED_OUT"
        assert elapsed < 1.45
        assert not entries(r, "Caught")
