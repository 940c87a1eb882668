"""JSONata states: AWS's field rules, `$states`, variables shared with JSONPath, Step Functions' own
functions and States.QueryEvaluationError."""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any

import pytest

from smq import DefinitionError, HandlerRegistry, StateMachine, TaskError, VirtualClock
from smq.engine.compiler import validate_definition
from smq.engine.cursor import Cursor
from smq.engine.jsonata import Expression, compile_template
from smq.engine.paths import Scope

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z


def machine(states: dict[str, Any], start: str | None = None, **top: Any) -> dict[str, Any]:
    return {"QueryLanguage": "JSONata", "StartAt": start or next(iter(states)), "States": states, **top}


def run(definition: dict[str, Any], inp: Any = None, handlers: HandlerRegistry | None = None):
    clock = VirtualClock(T0)
    sm = StateMachine.from_definition(definition)
    return sm.run({} if inp is None else inp, handlers=handlers, clock=clock.now, sleep=clock.sleep)


def output_of(definition: dict[str, Any], inp: Any = None, handlers: HandlerRegistry | None = None) -> Any:
    result = run(definition, inp, handlers)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return result.output


def failure_of(definition: dict[str, Any], inp: Any = None, handlers: HandlerRegistry | None = None):
    result = run(definition, inp, handlers)
    assert result.status == "FAILED", result.output
    return result.error, result.cause


def pass_output(output: Any, inp: Any = None, **state: Any) -> Any:
    return output_of(machine({"P": {"Type": "Pass", "Output": output, "End": True, **state}}), inp)


def wheres(definition: dict[str, Any]) -> dict[str, str]:
    return {p.where: p.message for p in validate_definition(definition)}


# ---------------------------------------------------------------------------------------- templates


def test_output_templates_evaluate_every_expression_and_keep_literals():
    out = pass_output(
        {"sum": "{% $sum($states.input.n) %}", "list": ["{% $states.input.n[0] %}", "$.n", 3], "lit": "x"},
        {"n": [1, 2, 3]},
    )
    assert out == {"sum": 6, "list": [1, "$.n", 3], "lit": "x"}


def test_whole_output_can_be_one_expression_of_any_type():
    assert pass_output("{% $states.input.a & '!' %}", {"a": "hi"}) == "hi!"
    assert pass_output("{% [1, 2] %}") == [1, 2]
    assert pass_output("{% null %}") is None


def test_a_string_that_is_not_wrapped_whole_is_literal():
    assert pass_output({"a": "{% 1 %} tail", "b": "head {% 1 %}"}) == {
        "a": "{% 1 %} tail",
        "b": "head {% 1 %}",
    }


def test_without_output_a_pass_state_passes_its_input():
    assert output_of(machine({"P": {"Type": "Pass", "End": True}}), {"k": 1}) == {"k": 1}


def test_expression_that_returns_nothing_is_a_query_evaluation_error_naming_state_and_field():
    error, cause = failure_of(
        machine({"P": {"Type": "Pass", "Output": {"r": "{% $nothing %}"}, "End": True}})
    )
    assert error == "States.QueryEvaluationError"
    assert "'P'" in cause and "'$nothing'" in cause and "'Output/r'" in cause
    assert "returned nothing (undefined)" in cause


def test_null_is_a_value_not_nothing():
    assert pass_output({"v": "{% $states.input.v %}"}, {"v": None}) == {"v": None}


def test_runtime_error_in_an_expression_reports_its_code():
    error, cause = failure_of(machine({"P": {"Type": "Pass", "Output": "{% 'a' + 1 %}", "End": True}}))
    assert error == "States.QueryEvaluationError"
    assert "threw an error during evaluation. T2001" in cause


def test_division_by_zero_is_an_error_not_infinity():
    error, cause = failure_of(machine({"P": {"Type": "Pass", "Output": "{% 1 / 0 %}", "End": True}}))
    assert error == "States.QueryEvaluationError" and "D1001" in cause


def test_templates_are_compiled_once_and_literal_parts_are_constants():
    template = compile_template({"a": 1, "b": ["x", {"c": None}]}, "S", "Output")
    assert template._constant  # type: ignore[attr-defined]
    assert template(Scope({}, {}, dict)) == {"a": 1, "b": ["x", {"c": None}]}


# -------------------------------------------------------------------------------------- validation


def test_syntax_errors_are_reported_naming_state_and_field():
    found = wheres(
        machine(
            {
                "A": {"Type": "Pass", "Output": {"x": "{% 1 + %}"}, "Assign": {"v": "{% ( %}"}, "Next": "B"},
                "B": {"Type": "Wait", "Seconds": "{% ] %}", "End": True},
            }
        )
    )
    assert set(found) == {"States.A.Output.x", "States.A.Assign.v", "States.B.Seconds"}
    assert all("JSONata syntax error" in message for message in found.values())


def test_jsonpath_fields_are_refused_in_jsonata_states():
    found = wheres(
        machine(
            {"A": {"Type": "Pass", "InputPath": "$.a", "Parameters": {}, "ResultPath": "$.r", "End": True}}
        )
    )
    assert set(found) == {"States.A.InputPath", "States.A.Parameters", "States.A.ResultPath"}
    assert all("JSONPath field" in message for message in found.values())


def test_jsonata_fields_are_refused_in_jsonpath_states():
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Task", "Resource": "r", "Arguments": {}, "End": True}},
    }
    assert "JSONata field" in wheres(definition)["States.A.Arguments"]


def test_jsonata_state_in_a_jsonpath_machine_and_back():
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": {"x": "{% 1 %}"}, "Next": "B"},
            "B": {"Type": "Pass", "Parameters": {"y.$": "$.x"}, "End": True},
        },
    }
    assert output_of(definition) == {"y": 1}


def test_choice_rules_in_jsonata_take_condition_not_variable():
    definition = machine(
        {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "BooleanEquals": True, "Next": "D"}]},
            "D": {"Type": "Succeed"},
        }
    )
    assert "States.C.Choices[0].Condition" in wheres(definition)


def test_smq_validate_reports_jsonata_problems():
    with pytest.raises(DefinitionError) as raised:
        StateMachine.from_definition(machine({"A": {"Type": "Pass", "Output": "{% $x. %}", "End": True}}))
    assert "States.A.Output: JSONata syntax error" in str(raised.value)


# ------------------------------------------------------------------------------- $states, variables


def test_states_context_is_the_context_object():
    out = pass_output(
        {"name": "{% $states.context.State.Name %}", "start": "{% $states.context.Execution.StartTime %}"}
    )
    assert out == {"name": "P", "start": "2025-01-01T12:00:00.000Z"}


def test_variables_are_shared_between_jsonpath_and_jsonata_states():
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Assign": {"fromPath.$": "$.v"}, "Next": "B"},
            "B": {
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Assign": {"fromAta": "{% $fromPath * 2 %}"},
                "Next": "C",
            },
            "C": {"Type": "Pass", "Parameters": {"both.$": "States.Array($fromPath, $fromAta)"}, "End": True},
        },
    }
    assert output_of(definition, {"v": 21}) == {"both": [21, 42]}


def test_assign_and_output_see_the_variables_as_they_were_when_the_state_began():
    definition = machine(
        {
            "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
            "B": {"Type": "Pass", "Assign": {"x": 2, "old": "{% $x %}"}, "Output": "{% $x %}", "Next": "C"},
            "C": {
                "Type": "Pass",
                "Output": {"x": "{% $x %}", "old": "{% $old %}", "input": "{% $states.input %}"},
                "End": True,
            },
        }
    )
    assert output_of(definition) == {"x": 2, "old": 1, "input": 1}


def test_task_arguments_result_and_output():
    registry = HandlerRegistry()
    seen: list[Any] = []

    def double(payload: Any) -> Any:
        seen.append(payload)
        return {"doubled": payload["n"] * 2}

    registry.register("double", double)
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "double",
                "Arguments": {"n": "{% $states.input.value %}"},
                "Output": {"result": "{% $states.result.doubled %}", "input": "{% $states.input %}"},
                "Assign": {"last": "{% $states.result.doubled %}"},
                "Next": "After",
            },
            "After": {"Type": "Pass", "Output": "{% $last %}", "End": True},
        }
    )
    assert output_of(definition, {"value": 4}, registry) == 8
    assert seen == [{"n": 4}]


def test_task_without_output_outputs_its_result():
    registry = HandlerRegistry()
    registry.register("echo", lambda payload: {"got": payload})
    definition = machine({"T": {"Type": "Task", "Resource": "echo", "End": True}})
    assert output_of(definition, {"a": 1}, registry) == {"got": {"a": 1}}


def test_catcher_output_and_assign_see_the_error_output():
    registry = HandlerRegistry()

    def boom(payload: Any) -> Any:
        raise TaskError("Custom.Boom", "it broke")

    registry.register("boom", boom)
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "boom",
                "Catch": [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "Output": {"error": "{% $states.errorOutput.Error %}", "in": "{% $states.input.k %}"},
                        "Assign": {"cause": "{% $states.errorOutput.Cause %}"},
                        "Next": "H",
                    }
                ],
                "End": True,
            },
            "H": {
                "Type": "Pass",
                "Output": {"caught": "{% $states.input %}", "cause": "{% $cause %}"},
                "End": True,
            },
        }
    )
    assert output_of(definition, {"k": "v"}, registry) == {
        "caught": {"error": "Custom.Boom", "in": "v"},
        "cause": "it broke",
    }


def test_catcher_without_output_passes_the_error_output():
    registry = HandlerRegistry()

    def boom(payload: Any) -> Any:
        raise TaskError("Custom.Boom", "why")

    registry.register("boom", boom)
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "boom",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
                "End": True,
            },
            "H": {"Type": "Succeed"},
        }
    )
    assert output_of(definition, {}, registry) == {"Error": "Custom.Boom", "Cause": "why"}


def test_task_timeout_seconds_as_an_expression_must_be_a_positive_integer():
    registry = HandlerRegistry()
    registry.register("ok", lambda payload: "done")
    state = {"Type": "Task", "Resource": "ok", "TimeoutSeconds": "{% $states.input.t %}", "End": True}
    assert output_of(machine({"T": state}), {"t": 5}, registry) == "done"
    error, cause = failure_of(machine({"T": state}), {"t": "soon"}, registry)
    assert error == "States.QueryEvaluationError" and "Expected 'integer'" in cause


# ------------------------------------------------------------------------------------ state types


def test_choice_condition_rule_output_and_default_output():
    definition = machine(
        {
            "C": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Condition": "{% $states.input.n > 1 %}",
                        "Output": {"big": "{% $states.input.n %}"},
                        "Next": "Done",
                    }
                ],
                "Default": "Done",
                "Output": "small",
            },
            "Done": {"Type": "Succeed"},
        }
    )
    assert output_of(definition, {"n": 5}) == {"big": 5}
    assert output_of(definition, {"n": 0}) == "small"


def test_choice_condition_must_be_boolean():
    definition = machine(
        {
            "C": {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $states.input.n %}", "Next": "D"}],
                "Default": "D",
            },
            "D": {"Type": "Succeed"},
        }
    )
    error, cause = failure_of(definition, {"n": 3})
    assert error == "States.QueryEvaluationError" and "Expected 'boolean'" in cause


def test_wait_seconds_and_timestamp_expressions():
    seconds = machine({"W": {"Type": "Wait", "Seconds": "{% $states.input.s %}", "End": True}})
    result = run(seconds, {"s": 30})
    assert result.status == "SUCCEEDED"
    assert result.history[-1].exited_at - T0 == pytest.approx(30)
    for bad in (-1, 1.5, "10"):
        assert failure_of(seconds, {"s": bad})[0] == "States.QueryEvaluationError"
    stamp = machine({"W": {"Type": "Wait", "Timestamp": "{% $states.input.t %}", "End": True}})
    assert output_of(stamp, {"t": "2025-01-01T12:00:05Z"}) == {"t": "2025-01-01T12:00:05Z"}
    error, cause = failure_of(stamp, {"t": "05-12-2016T21:29:29Z"})
    assert error == "States.QueryEvaluationError" and "cannot be parsed as an ISO-8601" in cause


def test_wait_beyond_the_maximum_delay_fails_with_states_runtime():
    seconds = machine({"W": {"Type": "Wait", "Seconds": "{% 2147483648 %}", "End": True}})
    assert failure_of(seconds) == (
        "States.Runtime",
        "An error occurred while executing the state 'W'. Wait state delay is too long.",
    )
    path = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": True}}}
    error, cause = failure_of(path, {"s": 2**40})
    assert error == "States.Runtime" and "delay is too long" in cause


def test_fail_error_and_cause_expressions_must_be_strings():
    definition = machine(
        {
            "F": {
                "Type": "Fail",
                "Error": "{% $states.input.e %}",
                "Cause": "{% 'because ' & $states.input.c %}",
            }
        }
    )
    assert failure_of(definition, {"e": "My.Error", "c": "reasons"}) == ("My.Error", "because reasons")
    error, cause = failure_of(definition, {"e": 5, "c": "x"})
    assert error == "States.QueryEvaluationError" and "Expected 'string'" in cause


def test_succeed_output():
    assert output_of(
        machine({"S": {"Type": "Succeed", "Output": {"done": "{% $states.input.a %}"}}}), {"a": 1}
    ) == {"done": 1}


def test_map_items_item_selector_and_tolerated_failure_expressions():
    definition = machine(
        {
            "M": {
                "Type": "Map",
                "Items": "{% $states.input.xs %}",
                "ItemSelector": {
                    "v": "{% $states.context.Map.Item.Value %}",
                    "i": "{% $states.context.Map.Item.Index %}",
                    "k": "{% $states.input.k %}",
                },
                "MaxConcurrency": "{% $states.input.mc %}",
                "ToleratedFailureCount": "{% 0 %}",
                "ItemProcessor": {
                    "StartAt": "P",
                    "States": {
                        "P": {
                            "Type": "Pass",
                            "Output": "{% $states.input.v * 10 + $states.input.i %}",
                            "End": True,
                        }
                    },
                },
                "Output": {"r": "{% $states.result %}"},
                "End": True,
            }
        }
    )
    assert output_of(definition, {"xs": [1, 2, 3], "k": "x", "mc": 2}) == {"r": [10, 21, 32]}


def test_map_items_as_a_literal_array_with_expressions_inside():
    definition = machine(
        {
            "M": {
                "Type": "Map",
                "Items": [1, "{% $states.input.two %}"],
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                "End": True,
            }
        }
    )
    assert output_of(definition, {"two": 2}) == [1, 2]


def test_map_items_that_are_not_an_array_fail_with_aws_causes():
    processor = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    by_expression = machine(
        {"M": {"Type": "Map", "Items": "{% $states.input.xs %}", "ItemProcessor": processor, "End": True}}
    )
    error, cause = failure_of(by_expression, {"xs": {"a": 1}})
    assert error == "States.QueryEvaluationError"
    assert "Expected 'array', but was 'object' for value: {\"a\":1}" in cause
    by_input = machine({"M": {"Type": "Map", "ItemProcessor": processor, "End": True}})
    error, cause = failure_of(by_input, 7)
    assert error == "States.QueryEvaluationError" and cause.endswith(
        "Map state input must be an array but was: 7"
    )


def test_parallel_arguments_feed_the_branches():
    branch = {
        "StartAt": "B",
        "States": {"B": {"Type": "Pass", "Output": "{% $states.input.x + 1 %}", "End": True}},
    }
    definition = machine(
        {
            "Par": {
                "Type": "Parallel",
                "Arguments": {"x": "{% $states.input.n %}"},
                "Branches": [branch, branch],
                "End": True,
            }
        }
    )
    assert output_of(definition, {"n": 1}) == [2, 2]


def test_map_iterations_evaluate_expressions_from_worker_threads():
    registry = HandlerRegistry()
    threads: set[str] = set()

    def work(payload: Any) -> Any:
        threads.add(threading.current_thread().name)
        return payload["v"] * 2

    registry.register("work", work)
    processor = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "work",
                "Arguments": {"v": "{% $states.input %}"},
                "Output": "{% $states.result + 1 %}",
                "End": True,
            }
        },
    }
    definition = machine(
        {
            "M": {
                "Type": "Map",
                "Items": "{% [1..20] %}",
                "MaxConcurrency": 4,
                "ItemProcessor": processor,
                "End": True,
            }
        }
    )
    assert output_of(definition, {}, registry) == [v * 2 + 1 for v in range(1, 21)]
    assert any(name.startswith("smq-fanout") for name in threads)


def test_a_cursor_with_jsonata_state_round_trips_through_json():
    definition = machine(
        {
            "A": {"Type": "Pass", "Assign": {"n": "{% $states.input.n %}"}, "Next": "W"},
            "W": {"Type": "Wait", "Seconds": "{% $n %}", "Next": "B"},
            "B": {"Type": "Pass", "Output": "{% $n * 2 %}", "End": True},
        }
    )
    sm = StateMachine.from_definition(definition)
    clock = VirtualClock(T0)
    cursor = sm.begin({"n": 3}, clock=clock.now)
    runtime = sm.runtime(clock=clock.now, sleep=clock.sleep, start_time=T0)
    while True:
        step = sm.step(Cursor.from_json(cursor.to_json()), runtime)
        if step.finished:
            break
        assert step.cursor is not None
        cursor = step.cursor
    assert step.output == 6


# ------------------------------------------------------------------------- Step Functions' functions


def test_partition_range_hash_parse_uuid():
    out = pass_output(
        {
            "partition": "{% $partition([1, 2, 3, 4, 5], 2) %}",
            "range": "{% $range(0, 10, 5) %}",
            "hash": "{% $hash('abc', 'SHA-256') %}",
            "parse": "{% $parse('{\"a\": [1]}') %}",
            "uuid": "{% $uuid() %}",
        }
    )
    assert out["partition"] == [[1, 2], [3, 4], [5]]
    assert out["range"] == [0, 5, 10]
    assert out["hash"] == hashlib.sha256(b"abc").hexdigest()
    assert out["parse"] == {"a": [1]}
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", out["uuid"])


def test_random_with_a_seed_is_repeatable_and_without_one_is_in_range():
    out = pass_output({"a": "{% $random(7) %}", "b": "{% $random(7) %}", "c": "{% $random() %}"})
    assert out["a"] == out["b"] and 0 <= out["a"] < 1 and 0 <= out["c"] < 1


def test_misused_functions_fail_with_query_evaluation_error():
    for expression in ("$partition([1], 0)", "$range(1, 2)", "$hash('a', 'CRC32')", "$parse('{')"):
        error, cause = failure_of(
            machine({"P": {"Type": "Pass", "Output": "{% " + expression + " %}", "End": True}})
        )
        assert error == "States.QueryEvaluationError", expression
        assert "threw an error during evaluation" in cause


def test_eval_is_not_available_as_in_step_functions():
    error, cause = failure_of(machine({"P": {"Type": "Pass", "Output": "{% $eval('1 + 1') %}", "End": True}}))
    assert error == "States.QueryEvaluationError" and "T1006" in cause


def test_runaway_recursion_is_stopped():
    expression = "{% ( $f := function($n) { $n + $f($n + 1) }; $f(0) ) %}"
    error, cause = failure_of(machine({"P": {"Type": "Pass", "Output": expression, "End": True}}))
    assert error == "States.QueryEvaluationError" and "D1011" in cause


# ------------------------------------------------------------------------------- what is handed over


def test_only_what_an_expression_reads_is_handed_over_and_the_context_is_not_built_for_nothing():
    built: list[int] = []

    def context() -> dict[str, Any]:
        built.append(1)
        return {"State": {"Name": "S"}}

    scope = Scope({"a": {"b": 1, "big": list(range(1000))}, "c": 2}, {"v": 1, "w": [1, 2]}, context)
    expression = Expression("{% $states.input.a.b + $v %}", "S", "Output")
    # the input is cut to its fields read (one level: `c` is left out), the context not built
    assert expression.bindings(scope) == {"v": 1, "states": {"input": {"a": scope.data["a"]}}}
    assert expression.evaluate(scope) == 2
    assert built == []
    assert Expression("{% $states.context.State.Name %}", "S", "Output").evaluate(scope) == "S"
    assert built == [1]


# ---------------------------------------------------------------------------- JSONPath edge cases


def test_tolerated_failure_paths_accept_numeric_strings():
    processor = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}}
    for field, value in (("ToleratedFailureCountPath", "2"), ("ToleratedFailurePercentagePath", "100.0")):
        definition = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.xs",
                    field: "$.t",
                    "ItemProcessor": processor,
                    "End": True,
                }
            },
        }
        out = output_of(definition, {"xs": [1, 2], "t": value})
        assert [item["Error"] for item in out] == ["E", "E"], field


def test_a_map_result_above_the_payload_limit_fails_even_if_the_output_is_small():
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.xs",
                "ItemProcessor": {
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "Result": "x" * 1000, "End": True}},
                },
                "ResultSelector": {"n.$": "States.ArrayLength($)"},
                "End": True,
            }
        },
    }
    clock = VirtualClock(T0)
    result = StateMachine.from_definition(definition).run(
        {"xs": list(range(300))}, clock=clock.now, sleep=clock.sleep, payload_limit=256 * 1024
    )
    assert result.status == "FAILED" and result.error == "States.DataLimitExceeded"
