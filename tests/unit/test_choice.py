"""Choice rules (JSONPath): every comparison operator, the *Path variants, type tests and combinators.

Expectations follow the Amazon States Language specification: a comparison between values of the
wrong type is false, a missing Variable is a States.Runtime error (IsPresent excepted), timestamps are
RFC 3339 with an uppercase T and Z, and StringMatches treats only `*` as special.
"""

from __future__ import annotations

import pytest

from smq import SmqError, StatesError
from smq.engine.choice import compile_rule
from smq.engine.paths import Scope

DATA = {
    "str": "abc",
    "empty": "",
    "upper": "ABC",
    "int": 5,
    "float": 5.0,
    "neg": -2.5,
    "big": 10,
    "zero": 0,
    "true": True,
    "false": False,
    "null": None,
    "list": [1, 2],
    "obj": {"k": "v"},
    "ts": "2024-01-01T00:00:00Z",
    "ts_offset": "2024-01-01T01:00:00+01:00",  # the same instant as ts
    "ts_frac": "2024-01-01T00:00:00.5Z",
    "ts_frac_long": "2024-01-01T00:00:00.500000Z",
    "ts_later": "2024-06-30T12:30:00-07:00",
    "ts_num": 1704067200,
    "file": "foo23.log",
    "star": "a*b",
    "backslash": "a\\b",
    "nested": {"deep": {"value": 7}},
    "other_str": "abd",
    "other_int": 7,
}
VARIABLES = {"limit": 10, "name": "abc", "flag": True}
CONTEXT = {"Execution": {"Input": {"level": 3}}, "State": {"Name": "Decide"}}


def check(rule, data=None):
    return compile_rule(rule)(Scope(DATA if data is None else data, VARIABLES, lambda: CONTEXT))


def rule(variable, operator, operand):
    return {"Variable": variable, operator: operand}


# ---------------------------------------------------------------- strings


@pytest.mark.parametrize(
    "operator, operand, expected",
    [
        ("StringEquals", "abc", True),
        ("StringEquals", "abd", False),
        ("StringEquals", "ABC", False),  # no case folding
        ("StringEquals", "abc ", False),  # no whitespace collapsing
        ("StringLessThan", "abd", True),
        ("StringLessThan", "abc", False),
        ("StringLessThan", "ab", False),
        ("StringGreaterThan", "ab", True),
        ("StringGreaterThan", "abc", False),
        ("StringGreaterThan", "b", False),
        ("StringLessThanEquals", "abc", True),
        ("StringLessThanEquals", "abb", False),
        ("StringGreaterThanEquals", "abc", True),
        ("StringGreaterThanEquals", "abd", False),
    ],
)
def test_string_comparisons(operator, operand, expected):
    assert check(rule("$.str", operator, operand)) is expected


def test_string_comparison_is_case_sensitive_by_code_point():
    # "A" (0x41) sorts before "a" (0x61)
    assert check(rule("$.upper", "StringLessThan", "abc")) is True
    assert check(rule("$.str", "StringGreaterThan", "ABC")) is True


def test_empty_string():
    assert check(rule("$.empty", "StringEquals", "")) is True
    assert check(rule("$.empty", "StringLessThan", "a")) is True


@pytest.mark.parametrize("variable", ["$.int", "$.true", "$.null", "$.list", "$.obj"])
def test_string_operators_are_false_for_non_strings(variable):
    for operator in ("StringEquals", "StringLessThan", "StringGreaterThan"):
        assert check(rule(variable, operator, "5")) is False
    assert check(rule(variable, "StringMatches", "*")) is False


def test_string_equals_does_not_coerce_numbers():
    assert check(rule("$.int", "StringEquals", "5")) is False


def test_string_comparator_can_compare_a_timestamp_as_a_string():
    assert check(rule("$.ts", "StringEquals", "2024-01-01T00:00:00Z")) is True
    # as strings, these two denote the same instant but differ
    assert check(rule("$.ts_offset", "StringEquals", "2024-01-01T00:00:00Z")) is False


# ---------------------------------------------------------------- StringMatches


@pytest.mark.parametrize(
    "value, pattern, expected",
    [
        ("foo23.log", "foo*.log", True),  # the specification's examples
        ("zebra.log", "*.log", True),
        ("foobar.zebra", "foo*.*", True),
        ("foo23.txt", "foo*.log", False),
        ("abc", "*", True),
        ("", "*", True),
        ("", "", True),
        ("abc", "", False),
        ("abc", "abc", True),
        ("abc", "ab", False),  # whole-string match
        ("abc", "bc", False),
        ("abc", "a*", True),
        ("abc", "*c", True),
        ("abc", "*b*", True),
        ("abc", "a**c", True),
        ("ac", "a*c", True),  # star matches zero characters
        ("abc", "*d*", False),
        ("line1\nline2", "line1*line2", True),  # star matches newlines too
    ],
)
def test_string_matches_wildcards(value, pattern, expected):
    assert check(rule("$.v", "StringMatches", pattern), {"v": value}) is expected


@pytest.mark.parametrize(
    "value, pattern",
    [
        ("abc", "a.c"),  # '.' is not special
        ("abc", "a?c"),  # '?' is not special
        ("a", "[a]"),  # character classes are not special
        ("aaa", "a+"),
        ("abc", "^abc$"),
        ("ab", "(a|b)b"),
    ],
)
def test_string_matches_no_other_special_characters(value, pattern):
    assert check(rule("$.v", "StringMatches", pattern), {"v": value}) is False


@pytest.mark.parametrize("literal", ["a.c", "a?c", "[a]", "a+", "^abc$", "(a|b)b", "a{2}"])
def test_string_matches_regex_characters_match_themselves(literal):
    assert check(rule("$.v", "StringMatches", literal), {"v": literal}) is True


def test_string_matches_escaped_star_is_literal():
    pattern = "a\\*b"  # JSON "a\\*b": a literal star
    assert check(rule("$.star", "StringMatches", pattern)) is True
    assert check(rule("$.str", "StringMatches", pattern)) is False
    assert check(rule("$.v", "StringMatches", pattern), {"v": "axxb"}) is False


def test_string_matches_escaped_star_next_to_wildcard():
    pattern = "*\\**"  # contains a literal star anywhere
    assert check(rule("$.v", "StringMatches", pattern), {"v": "x*y"}) is True
    assert check(rule("$.v", "StringMatches", pattern), {"v": "xy"}) is False


def test_string_matches_escaped_backslash_is_literal():
    pattern = "a\\\\b"  # JSON "a\\\\b": one literal backslash
    assert check(rule("$.backslash", "StringMatches", pattern)) is True
    assert check(rule("$.v", "StringMatches", pattern), {"v": "a\\\\b"}) is False


def test_string_matches_escaped_backslash_then_wildcard():
    pattern = "a\\\\*"  # a literal backslash followed by a wildcard
    assert check(rule("$.v", "StringMatches", pattern), {"v": "a\\xyz"}) is True
    assert check(rule("$.v", "StringMatches", pattern), {"v": "a*"}) is False


def test_string_matches_open_escape_is_an_error():
    pattern = "abc\\"  # a lone trailing backslash
    try:
        predicate = compile_rule(rule("$.v", "StringMatches", pattern))
    except SmqError:
        return  # rejected before running: acceptable
    with pytest.raises(StatesError):
        predicate(Scope({"v": "abc\\"}, {}, dict))


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "operator, operand, expected",
    [
        ("NumericEquals", 5, True),
        ("NumericEquals", 5.0, True),
        ("NumericEquals", 6, False),
        ("NumericLessThan", 6, True),
        ("NumericLessThan", 5, False),
        ("NumericLessThan", 4.99, False),
        ("NumericGreaterThan", 4.5, True),
        ("NumericGreaterThan", 5, False),
        ("NumericLessThanEquals", 5, True),
        ("NumericLessThanEquals", 4, False),
        ("NumericGreaterThanEquals", 5, True),
        ("NumericGreaterThanEquals", 5.01, False),
    ],
)
def test_numeric_comparisons(operator, operand, expected):
    assert check(rule("$.int", operator, operand)) is expected


def test_numeric_int_and_float_compare_by_value():
    assert check(rule("$.float", "NumericEquals", 5)) is True
    assert check(rule("$.neg", "NumericLessThan", -2)) is True
    assert check(rule("$.neg", "NumericGreaterThan", -3)) is True
    assert check(rule("$.zero", "NumericEquals", 0)) is True


@pytest.mark.parametrize("variable", ["$.str", "$.true", "$.false", "$.null", "$.list", "$.obj"])
def test_numeric_operators_are_false_for_non_numbers(variable):
    for operator in ("NumericEquals", "NumericLessThan", "NumericGreaterThanEquals"):
        assert check(rule(variable, operator, 1)) is False
        assert check(rule(variable, operator, 0)) is False


def test_numeric_string_is_not_a_number():
    assert check(rule("$.v", "NumericEquals", 5), {"v": "5"}) is False


def test_boolean_true_is_not_numeric_one():
    assert check(rule("$.true", "NumericEquals", 1)) is False
    assert check(rule("$.false", "NumericEquals", 0)) is False
    assert check(rule("$.false", "NumericLessThan", 1)) is False


# ---------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    "variable, operand, expected",
    [("$.true", True, True), ("$.true", False, False), ("$.false", False, True), ("$.false", True, False)],
)
def test_boolean_equals(variable, operand, expected):
    assert check(rule(variable, "BooleanEquals", operand)) is expected


@pytest.mark.parametrize("variable", ["$.str", "$.null", "$.list"])
def test_boolean_equals_false_for_non_booleans(variable):
    assert check(rule(variable, "BooleanEquals", True)) is False
    assert check(rule(variable, "BooleanEquals", False)) is False


def test_number_one_is_not_boolean_true():
    assert check(rule("$.v", "BooleanEquals", True), {"v": 1}) is False
    assert check(rule("$.v", "BooleanEquals", False), {"v": 0}) is False
    assert check(rule("$.v", "BooleanEquals", True), {"v": "true"}) is False


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "operator, operand, expected",
    [
        ("TimestampEquals", "2024-01-01T00:00:00Z", True),
        ("TimestampEquals", "2024-01-01T00:00:01Z", False),
        ("TimestampLessThan", "2024-01-01T00:00:01Z", True),
        ("TimestampLessThan", "2024-01-01T00:00:00Z", False),
        ("TimestampGreaterThan", "2023-12-31T23:59:59Z", True),
        ("TimestampGreaterThan", "2024-01-01T00:00:00Z", False),
        ("TimestampLessThanEquals", "2024-01-01T00:00:00Z", True),
        ("TimestampLessThanEquals", "2023-12-31T23:59:59Z", False),
        ("TimestampGreaterThanEquals", "2024-01-01T00:00:00Z", True),
        ("TimestampGreaterThanEquals", "2024-01-01T00:00:00.001Z", False),
    ],
)
def test_timestamp_comparisons(operator, operand, expected):
    assert check(rule("$.ts", operator, operand)) is expected


def test_timestamps_compare_as_instants_across_offsets():
    assert check(rule("$.ts", "TimestampEquals", "2024-01-01T01:00:00+01:00")) is True
    assert check(rule("$.ts", "TimestampEquals", "2023-12-31T19:00:00-05:00")) is True
    assert check(rule("$.ts_offset", "TimestampEquals", "2024-01-01T00:00:00Z")) is True
    # 01:00+01:00 is earlier than 00:30Z even though its clock reading is later
    assert check(rule("$.ts_offset", "TimestampLessThan", "2024-01-01T00:30:00Z")) is True
    assert check(rule("$.ts_later", "TimestampEquals", "2024-06-30T19:30:00Z")) is True


def test_timestamps_with_fractional_seconds():
    assert check(rule("$.ts_frac", "TimestampGreaterThan", "2024-01-01T00:00:00Z")) is True
    assert check(rule("$.ts_frac", "TimestampEquals", "2024-01-01T00:00:00.500Z")) is True
    assert check(rule("$.ts_frac_long", "TimestampEquals", "2024-01-01T00:00:00.5Z")) is True
    assert check(rule("$.ts_frac", "TimestampLessThan", "2024-01-01T00:00:00.501Z")) is True
    assert check(rule("$.ts_frac", "TimestampLessThan", "2024-01-01T00:00:00.499Z")) is False
    assert check(rule("$.v", "TimestampLessThan", "2024-01-01T00:00:00.1Z"), {"v": "2024-01-01T00:00:00.09Z"})


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01",  # date only
        "2024-01-01T00:00:00",  # no offset
        "2024-01-01 00:00:00Z",  # space separator
        "2024-01-01T00:00Z",  # no seconds
        "2024-02-30T00:00:00Z",  # no such day
        "2024-01-01T25:00:00Z",  # no such hour
        "2024-01-01T00:00:00+0100",  # offset without colon
        "yesterday",
        "",
    ],
)
def test_timestamp_operators_false_for_non_timestamps(value):
    assert check(rule("$.v", "TimestampEquals", "2024-01-01T00:00:00Z"), {"v": value}) is False
    assert check(rule("$.v", "TimestampLessThan", "2099-01-01T00:00:00Z"), {"v": value}) is False
    assert check(rule("$.v", "IsTimestamp", True), {"v": value}) is False


def test_timestamp_operators_false_for_numbers():
    assert check(rule("$.ts_num", "TimestampGreaterThan", "1970-01-01T00:00:00Z")) is False


# ---------------------------------------------------------------- *Path variants


@pytest.mark.parametrize(
    "operator, other, expected",
    [
        ("StringEqualsPath", "$.name_same", True),
        ("StringEqualsPath", "$.other_str", False),
        ("StringLessThanPath", "$.other_str", True),
        ("StringGreaterThanPath", "$.other_str", False),
        ("StringLessThanEqualsPath", "$.name_same", True),
        ("StringGreaterThanEqualsPath", "$.name_same", True),
        ("StringGreaterThanEqualsPath", "$.other_str", False),
    ],
)
def test_string_path_operators(operator, other, expected):
    data = dict(DATA, name_same="abc")
    assert check(rule("$.str", operator, other), data) is expected


@pytest.mark.parametrize(
    "operator, expected",
    [
        ("NumericEqualsPath", False),
        ("NumericLessThanPath", True),
        ("NumericGreaterThanPath", False),
        ("NumericLessThanEqualsPath", True),
        ("NumericGreaterThanEqualsPath", False),
    ],
)
def test_numeric_path_operators(operator, expected):
    assert check(rule("$.int", operator, "$.other_int")) is expected


def test_numeric_path_operators_equal_values():
    assert check(rule("$.int", "NumericEqualsPath", "$.float")) is True
    assert check(rule("$.int", "NumericLessThanEqualsPath", "$.float")) is True
    assert check(rule("$.int", "NumericGreaterThanEqualsPath", "$.float")) is True
    assert check(rule("$.int", "NumericLessThanPath", "$.float")) is False


def test_boolean_equals_path():
    assert check(rule("$.true", "BooleanEqualsPath", "$.flag_copy"), dict(DATA, flag_copy=True)) is True
    assert check(rule("$.true", "BooleanEqualsPath", "$.false")) is False


@pytest.mark.parametrize(
    "operator, other, expected",
    [
        ("TimestampEqualsPath", "$.ts_offset", True),
        ("TimestampEqualsPath", "$.ts_frac", False),
        ("TimestampLessThanPath", "$.ts_frac", True),
        ("TimestampGreaterThanPath", "$.ts_frac", False),
        ("TimestampLessThanEqualsPath", "$.ts_offset", True),
        ("TimestampGreaterThanEqualsPath", "$.ts_offset", True),
        ("TimestampGreaterThanEqualsPath", "$.ts_later", False),
    ],
)
def test_timestamp_path_operators(operator, other, expected):
    assert check(rule("$.ts", operator, other)) is expected


@pytest.mark.parametrize(
    "operator, other",
    [
        ("StringEqualsPath", "$.int"),
        ("NumericEqualsPath", "$.str"),
        ("NumericEqualsPath", "$.true"),
        ("BooleanEqualsPath", "$.int"),
        ("TimestampEqualsPath", "$.str"),
    ],
)
def test_path_operators_false_on_type_mismatch(operator, other):
    variable = {"String": "$.str", "Numeric": "$.int", "Boolean": "$.true", "Timestamp": "$.ts"}
    prefix = next(p for p in variable if operator.startswith(p))
    assert check(rule(variable[prefix], operator, other)) is False


def test_path_operators_with_variable_and_context_roots():
    assert check(rule("$.int", "NumericLessThanPath", "$limit")) is True
    assert check(rule("$.str", "StringEqualsPath", "$name")) is True
    assert check(rule("$.int", "NumericGreaterThanPath", "$$.Execution.Input.level")) is True


def test_path_operator_with_missing_operand_path_is_runtime_error():
    with pytest.raises(StatesError) as info:
        check(rule("$.int", "NumericEqualsPath", "$.nope"))
    assert info.value.error == "States.Runtime"


# ---------------------------------------------------------------- Variable roots


def test_variable_may_use_nested_paths_variables_and_context():
    assert check(rule("$.nested.deep.value", "NumericEquals", 7)) is True
    assert check(rule("$.list[1]", "NumericEquals", 2)) is True
    assert check(rule("$limit", "NumericEquals", 10)) is True
    assert check(rule("$flag", "BooleanEquals", True)) is True
    assert check(rule("$$.State.Name", "StringEquals", "Decide")) is True
    assert check(rule("$$.Execution.Input.level", "NumericGreaterThan", 2)) is True


# ---------------------------------------------------------------- type tests


@pytest.mark.parametrize(
    "variable, operator",
    [
        ("$.null", "IsNull"),
        ("$.int", "IsNumeric"),
        ("$.float", "IsNumeric"),
        ("$.neg", "IsNumeric"),
        ("$.str", "IsString"),
        ("$.empty", "IsString"),
        ("$.ts", "IsString"),
        ("$.true", "IsBoolean"),
        ("$.false", "IsBoolean"),
        ("$.ts", "IsTimestamp"),
        ("$.ts_offset", "IsTimestamp"),
        ("$.ts_frac", "IsTimestamp"),
        ("$.int", "IsPresent"),
        ("$.null", "IsPresent"),
        ("$.false", "IsPresent"),
    ],
)
def test_type_tests_true(variable, operator):
    assert check(rule(variable, operator, True)) is True
    assert check(rule(variable, operator, False)) is False


@pytest.mark.parametrize(
    "variable, operator",
    [
        ("$.int", "IsNull"),
        ("$.empty", "IsNull"),
        ("$.false", "IsNull"),
        ("$.str", "IsNumeric"),
        ("$.true", "IsNumeric"),  # a boolean is not a number
        ("$.null", "IsNumeric"),
        ("$.int", "IsString"),
        ("$.null", "IsString"),
        ("$.int", "IsBoolean"),
        ("$.zero", "IsBoolean"),
        ("$.str", "IsBoolean"),
        ("$.str", "IsTimestamp"),
        ("$.ts_num", "IsTimestamp"),
        ("$.list", "IsString"),
        ("$.obj", "IsNull"),
    ],
)
def test_type_tests_false(variable, operator):
    assert check(rule(variable, operator, True)) is False
    assert check(rule(variable, operator, False)) is True


def test_is_present_on_missing_paths_does_not_raise():
    for path in (
        "$.missing",
        "$.nested.missing",
        "$.nested.deep.value.more",
        "$.list[5]",
        "$.str.x",
        "$nosuchvar",
    ):
        assert check(rule(path, "IsPresent", False)) is True
        assert check(rule(path, "IsPresent", True)) is False


def test_lowercase_z_is_not_a_timestamp():
    assert check(rule("$.v", "IsTimestamp", True), {"v": "2016-03-14T01:59:00z"}) is False


def test_lowercase_t_is_not_a_timestamp():
    assert check(rule("$.v", "IsTimestamp", True), {"v": "2016-03-14t01:59:00Z"}) is False


# ---------------------------------------------------------------- missing Variable


@pytest.mark.parametrize(
    "operator, operand",
    [
        ("StringEquals", "x"),
        ("StringMatches", "*"),
        ("NumericEquals", 1),
        ("NumericLessThan", 1),
        ("BooleanEquals", True),
        ("TimestampEquals", "2024-01-01T00:00:00Z"),
        ("StringEqualsPath", "$.str"),
        ("NumericEqualsPath", "$.int"),
        ("IsNull", True),
        ("IsNumeric", False),
        ("IsString", True),
        ("IsBoolean", True),
        ("IsTimestamp", False),
    ],
)
def test_missing_variable_is_states_runtime(operator, operand):
    with pytest.raises(StatesError) as info:
        check(rule("$.missing", operator, operand))
    assert info.value.error == "States.Runtime"


def test_missing_variable_through_a_non_object_is_states_runtime():
    with pytest.raises(StatesError) as info:
        check(rule("$.str.length", "NumericEquals", 3))
    assert info.value.error == "States.Runtime"
    with pytest.raises(StatesError):
        check(rule("$unknownvar", "NumericEquals", 3))


# ---------------------------------------------------------------- And / Or / Not

T = {"Variable": "$.int", "NumericEquals": 5}
F = {"Variable": "$.int", "NumericEquals": 6}
MISSING = {"Variable": "$.missing", "NumericEquals": 1}


@pytest.mark.parametrize(
    "combined, expected",
    [
        ({"And": [T]}, True),
        ({"And": [T, T]}, True),
        ({"And": [T, F]}, False),
        ({"And": [F, T]}, False),
        ({"Or": [F]}, False),
        ({"Or": [F, T]}, True),
        ({"Or": [T, F]}, True),
        ({"Or": [F, F]}, False),
        ({"Not": T}, False),
        ({"Not": F}, True),
        ({"Not": {"Not": T}}, True),
        ({"And": [T, {"Not": F}]}, True),
        ({"Or": [{"And": [T, F]}, {"And": [T, {"Not": F}]}]}, True),
        ({"And": [{"Or": [F, F]}, T]}, False),
        ({"Not": {"Or": [F, {"And": [T, T]}]}}, False),
    ],
)
def test_boolean_combinators(combined, expected):
    assert check(combined) is expected


def test_documented_and_example():
    twenties = {
        "And": [
            {"Variable": "$.value", "IsPresent": True},
            {"Variable": "$.value", "IsNumeric": True},
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30},
        ]
    }
    assert check(twenties, {"type": "Private", "value": 22}) is True
    assert check(twenties, {"value": 30}) is False
    assert check(twenties, {"value": "22"}) is False
    assert check(twenties, {"other": 1}) is False  # IsPresent false stops before the missing Variable
    public = {"Not": {"Variable": "$.type", "StringEquals": "Private"}}
    assert check(public, {"type": "Private"}) is False
    assert check(public, {"type": "Public"}) is True


def test_and_or_stop_once_the_result_is_determined():
    # the spec: array processing ceases when the boolean value has been unambiguously determined
    assert check({"And": [F, MISSING]}) is False
    assert check({"Or": [T, MISSING]}) is True


def test_missing_variable_inside_combinators_still_fails():
    for combined in ({"And": [T, MISSING]}, {"Or": [F, MISSING]}, {"Not": MISSING}):
        with pytest.raises(StatesError) as info:
            check(combined)
        assert info.value.error == "States.Runtime"


def test_not_is_present_on_missing_path():
    assert check({"Not": {"Variable": "$.missing", "IsPresent": True}}) is True


def test_rule_is_reusable_across_inputs():
    predicate = compile_rule({"Variable": "$.n", "NumericGreaterThan": 3})
    assert predicate(Scope({"n": 4}, {}, dict)) is True
    assert predicate(Scope({"n": 2}, {}, dict)) is False
