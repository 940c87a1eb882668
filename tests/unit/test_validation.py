"""Definition validation: every problem is reported, each naming the state and field it is about."""

from __future__ import annotations

import copy
import json

import pytest

from smq import DefinitionError, Problem, StateMachine
from smq.engine.compiler import validate_definition
from smq.engine.definition_source import load_definition

SUB = {"StartAt": "Only", "States": {"Only": {"Type": "Succeed"}}}


def machine(states, start="A", **top):
    return {"StartAt": start, "States": states, **top}


def one(state, **top):
    """A machine whose only state is `A`."""
    return machine({"A": state}, **top)


def problems(definition):
    found = validate_definition(definition)
    assert all(isinstance(p, Problem) for p in found)
    return found


def wheres(definition):
    return [p.where for p in problems(definition)]


def problem_at(definition, where):
    """The single problem reported at `where` (fails if there is none)."""
    found = [p for p in problems(definition) if p.where == where]
    assert found, f"no problem at {where!r}; got {[str(p) for p in problems(definition)]}"
    return found[0]


def rejected(source):
    with pytest.raises(DefinitionError) as info:
        StateMachine.from_definition(source)
    return info.value


def task(**fields):
    return {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", **fields}


# ---------------------------------------------------------------- valid definitions


VALID = machine(
    {
        "A": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.r.x", "NumericEquals": 1, "Next": "Fan"},
                {
                    "And": [
                        {"Variable": "$.r.x", "IsNumeric": True},
                        {"Not": {"Variable": "$.r.x", "NumericGreaterThan": 5}},
                    ],
                    "Next": "Wait",
                },
            ],
            "Default": "Fail",
        },
        "Fan": {
            "Type": "Parallel",
            "Branches": [SUB, SUB],
            "Retry": [
                {"ErrorEquals": ["X"], "IntervalSeconds": 1, "MaxAttempts": 0, "BackoffRate": 1.0},
                {"ErrorEquals": ["States.ALL"], "JitterStrategy": "FULL", "MaxDelaySeconds": 5},
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Fail", "ResultPath": "$.error"}],
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"v.$": "$$.Map.Item.Value", "label.$": "States.Format('item {}', $.r.x)"},
            "ItemProcessor": SUB,
            "Next": "Wait",
        },
        "Wait": {"Type": "Wait", "Seconds": 0, "Assign": {"waited": True, "copy.$": "$.r"}, "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Fail": {"Type": "Fail", "Error": "Boom", "Cause": "bad"},
    }
)


def test_valid_definition_has_no_problems():
    assert problems(copy.deepcopy(VALID)) == []
    sm = StateMachine.from_definition(copy.deepcopy(VALID))
    assert sm.machine.start_at == "A"
    assert set(sm.machine.states) == set(VALID["States"])


def test_json_and_yaml_text_are_both_accepted():
    json_text = json.dumps(VALID)
    yaml_text = """
StartAt: Hello
States:
  Hello:
    Type: Pass
    Result: {greeting: hi}
    Next: Done
  Done:
    Type: Succeed
"""
    assert set(StateMachine.from_definition(json_text).machine.states) == set(VALID["States"])
    from_yaml = StateMachine.from_definition(yaml_text)
    assert set(from_yaml.machine.states) == {"Hello", "Done"}
    assert load_definition(yaml_text)["States"]["Hello"]["Result"] == {"greeting": "hi"}
    assert load_definition(json_text.encode("utf-8")) == VALID


def test_yaml_and_json_of_the_same_machine_agree():
    yaml_text = "StartAt: A\nStates:\n  A:\n    Type: Pass\n    End: true\n"
    assert load_definition(yaml_text) == load_definition(
        '{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}'
    )


@pytest.mark.parametrize("text", ["[1, 2]", "42", '"a string"', "null", "", "- a\n- b\n", "true"])
def test_non_object_text_is_rejected(text):
    error = rejected(text)
    assert [p.where for p in error.problems] == ["definition"]


@pytest.mark.parametrize("text", ["{", '{"StartAt": [}', "a: b: c", "\t{"])
def test_unparseable_text_is_rejected(text):
    error = rejected(text)
    assert [p.where for p in error.problems] == ["definition"]


def test_non_text_non_dict_source_is_rejected():
    with pytest.raises(DefinitionError):
        load_definition(42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError):
        load_definition(["StartAt"])  # type: ignore[arg-type]


def test_definition_error_lists_every_problem_in_its_message():
    error = rejected(machine({"A": {"Type": "Pass", "Next": "Nowhere"}, "B": {"Type": "Bogus"}}))
    text = str(error)
    for p in error.problems:
        assert p.where in text
    assert "Nowhere" in text


# ---------------------------------------------------------------- top level


def test_start_at_missing():
    problem = problem_at({"States": {"A": {"Type": "Succeed"}}}, "StartAt")
    assert "StartAt" in problem.where


def test_start_at_unknown():
    problem = problem_at(machine({"A": {"Type": "Succeed"}}, start="Z"), "StartAt")
    assert "Z" in problem.message


def test_states_missing_or_empty():
    assert "States" in wheres({"StartAt": "A"})
    assert "States" in wheres({"StartAt": "A", "States": {}})


def test_unknown_top_level_field_and_bad_version_and_timeout():
    found = wheres(one({"Type": "Succeed"}, Foo=1, Version="2.0", TimeoutSeconds=0))
    assert sorted(found) == ["Foo", "TimeoutSeconds", "Version"]


def test_jsonata_query_language_is_accepted_and_unknown_ones_are_not():
    assert problems(one({"Type": "Pass", "End": True}, QueryLanguage="JSONata")) == []
    assert problems(one({"Type": "Pass", "End": True, "QueryLanguage": "JSONata"})) == []
    problem = problem_at(one({"Type": "Pass", "End": True}, QueryLanguage="XPath"), "QueryLanguage")
    assert "JSONPath or JSONata" in problem.message


def test_a_jsonata_machine_cannot_have_jsonpath_states():
    definition = one({"Type": "Pass", "End": True, "QueryLanguage": "JSONPath"}, QueryLanguage="JSONata")
    assert "cannot have JSONPath" in problem_at(definition, "States.A.QueryLanguage").message


def test_explicit_jsonpath_query_language_is_fine():
    assert (
        problems(one({"Type": "Pass", "End": True, "QueryLanguage": "JSONPath"}, QueryLanguage="JSONPath"))
        == []
    )


# ---------------------------------------------------------------- states and flow


def test_unknown_state_type():
    problem = problem_at(one({"Type": "Bogus", "End": True}), "States.A.Type")
    assert "Bogus" in problem.message


def test_missing_state_type():
    assert wheres(one({"End": True})) == ["States.A.Type"]


def test_state_must_be_an_object():
    assert wheres(one("Pass")) == ["States.A"]


@pytest.mark.parametrize(
    "state, field",
    [
        ({"Type": "Pass", "End": True, "Foo": 1}, "Foo"),
        ({"Type": "Pass", "End": True, "Resource": "x"}, "Resource"),
        ({"Type": "Pass", "End": True, "Retry": []}, "Retry"),
        ({"Type": "Pass", "End": True, "ResultSelector": {}}, "ResultSelector"),
        ({"Type": "Succeed", "Next": "A"}, "Next"),
        ({"Type": "Succeed", "ResultPath": "$.x"}, "ResultPath"),
        ({"Type": "Fail", "InputPath": "$"}, "InputPath"),
        ({"Type": "Wait", "Seconds": 1, "End": True, "Parameters": {}}, "Parameters"),
    ],
)
def test_unknown_field_for_state_type(state, field):
    assert f"States.A.{field}" in wheres(one(state))


def test_next_and_end_both():
    problem = problem_at(
        machine({"A": {"Type": "Pass", "Next": "B", "End": True}, "B": {"Type": "Succeed"}}), "States.A"
    )
    assert "Next" in problem.message and "End" in problem.message


def test_next_and_end_neither():
    problem = problem_at(one({"Type": "Pass"}), "States.A")
    assert "Next" in problem.message


def test_end_false_without_next():
    assert "States.A" in wheres(one({"Type": "Pass", "End": False}))


def test_missing_next_target():
    problem = problem_at(one({"Type": "Pass", "Next": "Nowhere"}), "States.A.Next")
    assert "Nowhere" in problem.message


def test_next_must_be_a_string():
    assert "States.A.Next" in wheres(one({"Type": "Pass", "Next": 5}))


def test_choice_default_and_rule_targets():
    definition = machine(
        {
            "A": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.x", "IsNull": True, "Next": "B"},
                    {"Variable": "$.x", "IsNull": False, "Next": "Ghost"},
                ],
                "Default": "Phantom",
            },
            "B": {"Type": "Succeed"},
        }
    )
    assert sorted(wheres(definition)) == ["States.A.Choices[1].Next", "States.A.Default"]
    assert "Ghost" in problem_at(definition, "States.A.Choices[1].Next").message
    assert "Phantom" in problem_at(definition, "States.A.Default").message


def test_choice_rule_without_next():
    assert wheres(machine({"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": True}]}})) == [
        "States.A.Choices[0].Next"
    ]


def test_choice_with_end_is_rejected():
    found = wheres(
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "B"}],
                    "End": True,
                },
                "B": {"Type": "Succeed"},
            }
        )
    )
    assert found and all(w.startswith("States.A") for w in found)


def test_choice_needs_rules():
    assert wheres(one({"Type": "Choice", "Choices": []})) == ["States.A.Choices"]
    assert wheres(one({"Type": "Choice"})) == ["States.A.Choices"]


def test_nested_rule_with_next_is_rejected():
    definition = machine(
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Not": {"Variable": "$.x", "IsNull": True, "Next": "B"}, "Next": "B"}],
            },
            "B": {"Type": "Succeed"},
        }
    )
    assert "States.A.Choices[0].Not.Next" in wheres(definition)


def test_rule_with_two_operators_is_rejected():
    definition = machine(
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsNull": True, "IsString": True, "Next": "B"}],
            },
            "B": {"Type": "Succeed"},
        }
    )
    assert wheres(definition) == ["States.A.Choices[0]"]


def test_catch_next_target():
    definition = machine(
        {
            "CheckStock": task(
                Next="Ship",
                Catch=[
                    {"ErrorEquals": ["OutOfStock"], "Next": "Ship"},
                    {"ErrorEquals": ["States.ALL"], "Next": "Backorder"},
                ],
            ),
            "Ship": {"Type": "Succeed"},
        },
        start="CheckStock",
    )
    assert wheres(definition) == ["States.CheckStock.Catch[1].Next"]
    problem = problem_at(definition, "States.CheckStock.Catch[1].Next")
    assert "Backorder" in problem.message


def test_catch_needs_next_and_error_equals():
    found = wheres(one(task(End=True, Catch=[{"ErrorEquals": ["X"]}, {"Next": "A"}])))
    assert sorted(found) == ["States.A.Catch[0].Next", "States.A.Catch[1].ErrorEquals"]


def test_unreachable_state():
    definition = machine({"A": {"Type": "Pass", "End": True}, "Island": {"Type": "Succeed"}})
    problem = problem_at(definition, "States.Island")
    assert "unreachable" in problem.message.lower()
    assert wheres(definition) == ["States.Island"]


def test_states_reached_only_through_choice_default_or_catch_are_reachable():
    definition = machine(
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "T"}],
                "Default": "D",
            },
            "T": task(End=True, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "C"}]),
            "D": {"Type": "Succeed"},
            "C": {"Type": "Fail"},
        }
    )
    assert problems(definition) == []


def test_state_name_longer_than_80_characters():
    name = "N" * 81
    definition = machine({"A": {"Type": "Pass", "Next": name}, name: {"Type": "Succeed"}})
    assert wheres(definition) == [f"States.{name}"]


# ---------------------------------------------------------------- choice operand types


@pytest.mark.parametrize(
    "operator, operand",
    [
        ("NumericEquals", "x"),
        ("NumericLessThan", True),
        ("NumericGreaterThan", None),
        ("StringEquals", 5),
        ("StringMatches", 5),
        ("BooleanEquals", 1),
        ("BooleanEquals", "true"),
        ("TimestampEquals", "not a date"),
        ("TimestampLessThan", "2024-01-01"),
        ("TimestampGreaterThan", 1704067200),
        ("IsNull", "yes"),
        ("IsPresent", 1),
        ("StringEqualsPath", "not a path"),
        ("NumericEqualsPath", 5),
        ("TimestampEqualsPath", "$.a["),
    ],
)
def test_choice_operand_of_wrong_type(operator, operand):
    definition = machine(
        {
            "A": {"Type": "Choice", "Choices": [{"Variable": "$.x", operator: operand, "Next": "B"}]},
            "B": {"Type": "Succeed"},
        }
    )
    assert wheres(definition) == [f"States.A.Choices[0].{operator}"]


def test_choice_operand_errors_in_nested_rules_name_their_location():
    definition = machine(
        {
            "A": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.x", "IsNull": False},
                            {"Not": {"Variable": "$.x", "NumericEquals": "x"}},
                        ],
                        "Next": "B",
                    },
                    {"Or": [{"Variable": "$.y", "BooleanEquals": 1}], "Next": "B"},
                ],
            },
            "B": {"Type": "Succeed"},
        }
    )
    assert sorted(wheres(definition)) == [
        "States.A.Choices[0].And[1].Not.NumericEquals",
        "States.A.Choices[1].Or[0].BooleanEquals",
    ]


def test_choice_variable_must_be_a_path():
    definition = machine(
        {
            "A": {"Type": "Choice", "Choices": [{"Variable": "x", "IsNull": True, "Next": "B"}]},
            "B": {"Type": "Succeed"},
        }
    )
    assert wheres(definition) == ["States.A.Choices[0].Variable"]


def test_choice_variable_is_required():
    definition = machine(
        {"A": {"Type": "Choice", "Choices": [{"StringEquals": "x", "Next": "B"}]}, "B": {"Type": "Succeed"}}
    )
    assert wheres(definition) == ["States.A.Choices[0].Variable"]


def test_jsonata_condition_in_jsonpath_choice_is_rejected():
    definition = machine(
        {
            "A": {"Type": "Choice", "Choices": [{"Condition": "{% true %}", "Next": "B"}]},
            "B": {"Type": "Succeed"},
        }
    )
    assert "States.A.Choices[0].Condition" in wheres(definition)


# ---------------------------------------------------------------- paths and templates


def test_bad_input_and_output_paths():
    found = wheres(one({"Type": "Pass", "End": True, "InputPath": "nope", "OutputPath": "$.a["}))
    assert sorted(found) == ["States.A.InputPath", "States.A.OutputPath"]


def test_null_input_and_output_paths_are_allowed():
    assert (
        problems(
            one({"Type": "Pass", "End": True, "InputPath": None, "OutputPath": None, "ResultPath": None})
        )
        == []
    )


@pytest.mark.parametrize(
    "result_path", ["$.a[*]", "$..a", "$.a[?(@.b)]", "$.a[0:1]", "$$.Execution", "$var", "a"]
)
def test_result_path_must_be_a_definite_reference_path(result_path):
    assert wheres(one({"Type": "Pass", "End": True, "ResultPath": result_path})) == ["States.A.ResultPath"]


def test_catch_result_path_must_be_a_reference_path():
    found = wheres(one(task(End=True, Catch=[{"ErrorEquals": ["X"], "Next": "A", "ResultPath": "$.e[*]"}])))
    assert found == ["States.A.Catch[0].ResultPath"]


def test_bad_items_path():
    definition = one({"Type": "Map", "End": True, "ItemsPath": "items", "ItemProcessor": SUB})
    assert wheres(definition) == ["States.A.ItemsPath"]
    definition = one({"Type": "Map", "End": True, "ItemsPath": "$..[", "ItemProcessor": SUB})
    assert wheres(definition) == ["States.A.ItemsPath"]


@pytest.mark.parametrize(
    "state, where",
    [
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Nope(1)"}}, "States.A.Parameters.x.$"),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.UUID(1)"}}, "States.A.Parameters.x.$"),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Format()"}}, "States.A.Parameters.x.$"),
        (
            {"Type": "Pass", "End": True, "Parameters": {"x.$": "States.ArrayRange(1, 2)"}},
            "States.A.Parameters.x.$",
        ),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "$.a["}}, "States.A.Parameters.x.$"),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": 5}}, "States.A.Parameters.x.$"),
        (
            {"Type": "Pass", "End": True, "Parameters": {"outer": {"inner": {"x.$": "States.Nope()"}}}},
            "States.A.Parameters.outer.inner.x.$",
        ),
        (
            {"Type": "Pass", "End": True, "Parameters": {"l": [1, {"y.$": "$..["}]}},
            "States.A.Parameters.l[1].y.$",
        ),
        (task(End=True, ResultSelector={"r.$": "States.Hash($, 'SHA-3')"}), "States.A.ResultSelector.r.$"),
        (
            {"Type": "Map", "End": True, "ItemSelector": {"i.$": "States.Nope()"}, "ItemProcessor": SUB},
            "States.A.ItemSelector.i.$",
        ),
        ({"Type": "Pass", "End": True, "Assign": {"v.$": "States.Nope()"}}, "States.A.Assign.v.$"),
    ],
)
def test_bad_expression_inside_a_template(state, where):
    assert wheres(one(state)) == [where]


def test_result_selector_must_be_an_object():
    assert wheres(one(task(End=True, ResultSelector=[1]))) == ["States.A.ResultSelector"]


def test_pass_result_is_not_a_template():
    assert problems(one({"Type": "Pass", "End": True, "Result": {"x.$": "not a path"}})) == []


# ---------------------------------------------------------------- Retry and Catch


@pytest.mark.parametrize(
    "field, value",
    [
        ("IntervalSeconds", 0),
        ("IntervalSeconds", -1),
        ("IntervalSeconds", 1.5),
        ("MaxAttempts", -1),
        ("MaxAttempts", "3"),
        ("BackoffRate", 0.5),
        ("BackoffRate", "2"),
        ("JitterStrategy", "X"),
        ("MaxDelaySeconds", 0),
        ("MaxDelaySeconds", -5),
    ],
)
def test_retry_field_ranges(field, value):
    definition = one(task(End=True, Retry=[{"ErrorEquals": ["X"], field: value}]))
    assert wheres(definition) == [f"States.A.Retry[0].{field}"]


def test_retry_boundary_values_are_valid():
    retrier = {
        "ErrorEquals": ["X"],
        "IntervalSeconds": 1,
        "MaxAttempts": 0,
        "BackoffRate": 1.0,
        "MaxDelaySeconds": 1,
        "JitterStrategy": "NONE",
    }
    assert problems(one(task(End=True, Retry=[retrier]))) == []


def test_retry_unknown_field_and_empty_error_equals():
    definition = one(task(End=True, Retry=[{"ErrorEquals": []}, {"ErrorEquals": ["X"], "Bogus": 1}]))
    assert sorted(wheres(definition)) == ["States.A.Retry[0].ErrorEquals", "States.A.Retry[1].Bogus"]


def test_states_all_not_alone():
    definition = one(task(End=True, Retry=[{"ErrorEquals": ["States.ALL", "Custom"]}]))
    assert wheres(definition) == ["States.A.Retry[0].ErrorEquals"]


def test_states_all_not_last():
    definition = machine(
        {
            "A": task(
                End=True,
                Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "B"}, {"ErrorEquals": ["Y"], "Next": "B"}],
            ),
            "B": {"Type": "Succeed"},
        }
    )
    assert sorted(wheres(definition)) == ["States.A.Catch[0].ErrorEquals", "States.A.Retry[0].ErrorEquals"]


def test_retry_and_catch_must_be_arrays():
    assert sorted(wheres(one(task(End=True, Retry={}, Catch="x")))) == ["States.A.Catch", "States.A.Retry"]


# ---------------------------------------------------------------- Map and Parallel sub-machines


def test_map_sub_machine_errors_are_reported_with_their_location():
    definition = machine(
        {
            "M": {
                "Type": "Map",
                "End": True,
                "ItemProcessor": {
                    "StartAt": "Inner",
                    "States": {"Inner": {"Type": "Pass", "Next": "Nowhere"}},
                },
            }
        },
        start="M",
    )
    problem = problem_at(definition, "States.M.ItemProcessor.States.Inner.Next")
    assert "Nowhere" in problem.message
    assert wheres(definition) == ["States.M.ItemProcessor.States.Inner.Next"]


def test_legacy_iterator_errors_are_reported_with_their_location():
    definition = machine(
        {
            "M": {
                "Type": "Map",
                "End": True,
                "Iterator": {
                    "StartAt": "In",
                    "States": {"In": {"Type": "Bogus"}, "Orphan": {"Type": "Succeed"}},
                },
            }
        },
        start="M",
    )
    assert sorted(wheres(definition)) == [
        "States.M.Iterator.States.In.Type",
        "States.M.Iterator.States.Orphan",
    ]


def test_parallel_branch_errors_are_reported_with_their_location():
    definition = machine(
        {
            "P": {
                "Type": "Parallel",
                "Next": "After",
                "Branches": [
                    SUB,
                    {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Next": "After"}}},
                    {"StartAt": "Missing", "States": {"B2": {"Type": "Succeed"}}},
                ],
            },
            "After": {"Type": "Succeed"},
        },
        start="P",
    )
    # a branch cannot transition to a state outside its own States, even one that exists at top level
    assert sorted(wheres(definition)) == [
        "States.P.Branches[1].States.B1.Next",
        "States.P.Branches[2].StartAt",
    ]


def test_deeply_nested_sub_machine_location():
    definition = machine(
        {
            "Outer": {
                "Type": "Map",
                "End": True,
                "ItemProcessor": {
                    "StartAt": "Mid",
                    "States": {
                        "Mid": {
                            "Type": "Parallel",
                            "End": True,
                            "Branches": [
                                {
                                    "StartAt": "Deep",
                                    "States": {
                                        "Deep": task(
                                            End=True, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]
                                        )
                                    },
                                }
                            ],
                        }
                    },
                },
            }
        },
        start="Outer",
    )
    assert wheres(definition) == [
        "States.Outer.ItemProcessor.States.Mid.Branches[0].States.Deep.Catch[0].Next"
    ]


def test_map_needs_exactly_one_processor():
    assert wheres(one({"Type": "Map", "End": True})) == ["States.A"]
    assert wheres(one({"Type": "Map", "End": True, "ItemProcessor": SUB, "Iterator": SUB})) == ["States.A"]


def test_parallel_needs_branches():
    assert wheres(one({"Type": "Parallel", "End": True, "Branches": []})) == ["States.A.Branches"]


def test_empty_parallel_branch():
    definition = one({"Type": "Parallel", "End": True, "Branches": [SUB, {"StartAt": "Q", "States": {}}]})
    assert wheres(definition) == ["States.A.Branches[1].States"]


def test_sub_machine_may_not_have_top_level_only_fields():
    definition = one({"Type": "Parallel", "End": True, "Branches": [dict(SUB, TimeoutSeconds=5)]})
    assert wheres(definition) == ["States.A.Branches[0].TimeoutSeconds"]


# ---------------------------------------------------------------- Wait and Fail


@pytest.mark.parametrize(
    "fields",
    [
        {"Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z"},
        {"Seconds": 1, "SecondsPath": "$.s"},
        {"TimestampPath": "$.t", "SecondsPath": "$.s"},
        {},
    ],
)
def test_wait_needs_exactly_one_duration(fields):
    assert wheres(one({"Type": "Wait", "End": True, **fields})) == ["States.A"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("Seconds", -1),
        ("Seconds", 1.5),
        ("Seconds", "10"),
        ("Timestamp", "tomorrow"),
        ("Timestamp", "2024-01-01"),
    ],
)
def test_wait_field_values(field, value):
    assert wheres(one({"Type": "Wait", "End": True, field: value})) == [f"States.A.{field}"]


def test_fail_with_error_and_error_path():
    problem = problem_at(one({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}), "States.A")
    assert "ErrorPath" in problem.message


def test_fail_with_cause_and_cause_path():
    problem = problem_at(one({"Type": "Fail", "Cause": "c", "CausePath": "$.c"}), "States.A")
    assert "CausePath" in problem.message


def test_fail_error_must_be_string_and_paths_must_be_valid():
    found = wheres(one({"Type": "Fail", "Error": 5, "CausePath": "States.Nope()"}))
    assert sorted(found) == ["States.A.CausePath", "States.A.Error"]


def test_fail_with_intrinsic_paths_is_valid():
    assert (
        problems(one({"Type": "Fail", "ErrorPath": "States.Format('E{}', $.n)", "CausePath": "$.cause"}))
        == []
    )


# ---------------------------------------------------------------- Assign


@pytest.mark.parametrize("name", ["1bad", "has space", "dash-ed", "", "a.b", "x" * 81])
def test_invalid_assign_variable_names(name):
    assert wheres(one({"Type": "Pass", "End": True, "Assign": {name: 1}})) == [f"States.A.Assign.{name}"]


def test_invalid_assign_variable_name_with_path_suffix():
    assert wheres(one({"Type": "Pass", "End": True, "Assign": {"bad-name.$": "$.x"}})) == [
        "States.A.Assign.bad-name.$"
    ]


@pytest.mark.parametrize("name", ["ok", "_private", "camelCase", "with_digits_123", "x" * 80])
def test_valid_assign_variable_names(name):
    assert problems(one({"Type": "Pass", "End": True, "Assign": {name: 1}})) == []


def test_assign_must_be_an_object():
    assert wheres(one({"Type": "Pass", "End": True, "Assign": [1]})) == ["States.A.Assign"]


def test_assign_in_choice_rule_and_catcher():
    definition = machine(
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "T", "Assign": {"9lives": 1}}],
                "Default": "T",
            },
            "T": task(End=True, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "A", "Assign": {"a b": 1}}]),
        }
    )
    assert sorted(wheres(definition)) == ["States.A.Choices[0].Assign.9lives", "States.T.Catch[0].Assign.a b"]


# ---------------------------------------------------------------- all problems at once


def test_three_distinct_problems_are_all_reported():
    definition = machine(
        {
            "A": {"Type": "Pass", "Next": "CheckStock", "Colour": "blue"},
            "CheckStock": task(End=True, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Backorder"}]),
            "Island": {"Type": "Succeed"},
        }
    )
    assert sorted(wheres(definition)) == [
        "States.A.Colour",
        "States.CheckStock.Catch[0].Next",
        "States.Island",
    ]
    error = rejected(definition)
    assert sorted(p.where for p in error.problems) == [
        "States.A.Colour",
        "States.CheckStock.Catch[0].Next",
        "States.Island",
    ]


def test_problems_across_states_sub_machines_and_top_level_are_all_reported():
    definition = machine(
        {
            "A": {"Type": "Pass", "Next": "M", "InputPath": "bad"},
            "M": {
                "Type": "Map",
                "Next": "W",
                "ItemProcessor": {"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "Out"}}},
            },
            "W": {"Type": "Wait", "End": True, "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z"},
        },
        Version="9",
    )
    assert sorted(wheres(definition)) == [
        "States.A.InputPath",
        "States.M.ItemProcessor.States.In.Next",
        "States.W",
        "Version",
    ]


def test_validation_does_not_modify_the_definition():
    definition = machine(
        {"A": {"Type": "Pass", "Next": "Z", "Parameters": {"x.$": "States.Nope()"}}, "B": {"Type": "Succeed"}}
    )
    snapshot = copy.deepcopy(definition)
    problems(definition)
    rejected(definition)
    assert definition == snapshot


# ---------------------------------------------------------------- known gaps (smq bugs)


def test_every_bad_field_in_one_template_is_reported():
    definition = one(
        {"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Nope(1)", "y.$": "States.UUID(1)"}}
    )
    assert sorted(wheres(definition)) == ["States.A.Parameters.x.$", "States.A.Parameters.y.$"]


def test_bad_operand_and_bad_next_in_one_rule_are_both_reported():
    definition = one({"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "x", "Next": "Q"}]})
    assert sorted(wheres(definition)) == ["States.A.Choices[0].Next", "States.A.Choices[0].NumericEquals"]


def test_non_string_state_type_is_a_problem_not_a_crash():
    error = rejected('{"StartAt": "A", "States": {"A": {"Type": ["Pass"], "End": true}}}')
    assert [p.where for p in error.problems] == ["States.A.Type"]


def test_yaml_non_string_state_name_is_a_problem_not_a_crash():
    rejected("StartAt: 1\nStates:\n  1:\n    Type: Succeed\n")


def test_yaml_keys_are_their_text_as_json_keys_are():
    text = (
        "StartAt: A\nStates:\n  A:\n    Type: Pass\n    End: true\n    Parameters:\n      1: x\n      no: y\n"
    )
    assert StateMachine.from_definition(text).run({}).output == {"1": "x", "no": "y"}


def test_yaml_non_string_assign_key_is_a_problem_not_a_crash():
    rejected("StartAt: A\nStates:\n  A:\n    Type: Pass\n    End: true\n    Assign:\n      1: x\n")


def test_non_utf8_bytes_are_rejected_cleanly():
    with pytest.raises(DefinitionError):
        load_definition(b"\xff\xfe{not utf-8")


def test_yaml_non_json_values_are_rejected_or_run():
    text = "StartAt: A\nStates:\n  A:\n    Type: Pass\n    Result: 2024-01-01\n    End: true\n"
    try:
        sm = StateMachine.from_definition(text)
    except DefinitionError:
        return
    result = sm.run({})
    assert result.status == "SUCCEEDED"
    json.dumps(result.output)


def test_duplicate_field_after_stripping_dollar_suffix():
    definition = one({"Type": "Pass", "End": True, "Parameters": {"a": 1, "a.$": "$.x"}})
    assert any(w.startswith("States.A.Parameters") for w in wheres(definition))


def test_assigning_reserved_states_variable():
    definition = one({"Type": "Pass", "End": True, "Assign": {"states": 1}})
    assert wheres(definition) == ["States.A.Assign.states"]


@pytest.mark.parametrize("value", [["x"], "x", 3, None])
def test_parameters_may_be_any_json_value_as_aws_accepts(value):
    assert wheres(one({"Type": "Pass", "End": True, "Parameters": value})) == []


@pytest.mark.parametrize(
    "state, where",
    [
        ({"Type": "Map", "End": True, "ItemsPath": "$.items[*]", "ItemProcessor": SUB}, "States.A.ItemsPath"),
        ({"Type": "Wait", "End": True, "SecondsPath": "$.a[*]"}, "States.A.SecondsPath"),
        ({"Type": "Wait", "End": True, "TimestampPath": "$..t"}, "States.A.TimestampPath"),
        (task(End=True, TimeoutSecondsPath="$.t[*]"), "States.A.TimeoutSecondsPath"),
        ({"Type": "Fail", "ErrorPath": "$.e[*]"}, "States.A.ErrorPath"),
    ],
)
def test_reference_path_fields_reject_indefinite_paths(state, where):
    assert wheres(one(state)) == [where]
