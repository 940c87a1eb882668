"""The 18 intrinsic functions, as the AWS Step Functions documentation describes them."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tracemalloc
import uuid

import pytest

from smq import StatesError
from smq.engine.intrinsics import IntrinsicSyntaxError, parse_intrinsic
from smq.engine.paths import Scope

INPUT = {
    "name": "Arnav",
    "template": "Hello, my name is {}.",
    "escapedJsonString": '{"foo": "bar"}',
    "unescapedJson": {"foo": "bar"},
    "inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9],
    "dupes": [1, 2, 3, 3, 3, 3, 3, 3, 4],
    "index": 5,
    "lookingFor": 5,
    "json1": {"a": {"a1": 1, "a2": 2}, "b": 2},
    "json2": {"a": {"a3": 1, "a4": 2}, "c": 3},
    "inputString": "This.is+a,test=string",
    "splitter": ".+,=",
    "start": 1,
    "end": 999,
    "value1": 111,
    "step": -1,
    "text": "input data",
    "algorithm": "SHA-256",
    "obj": {"k": [1, {"z": None}]},
    "num": 42,
    "flt": 1.5,
    "flag": True,
    "nothing": None,
    "str": "a string",
}
VARIABLES = {"who": "variable-world", "items": ["x", "y"]}
CONTEXT = {"Execution": {"Id": "arn:exec:1", "Name": "run-1"}, "State": {"Name": "S1"}}


def scope():
    return Scope(json.loads(json.dumps(INPUT)), dict(VARIABLES), lambda: CONTEXT)


def ev(text):
    return parse_intrinsic(text).evaluate(scope())


def fails_with(text, error="States.IntrinsicFailure"):
    with pytest.raises(StatesError) as info:
        ev(text)
    assert info.value.error == error, info.value
    return info.value


# ---------------------------------------------------------------- States.Format


def test_format_documented_example_literal_template():
    assert ev("States.Format('Hello, my name is {}.', $.name)") == "Hello, my name is Arnav."


def test_format_documented_example_path_template():
    assert ev("States.Format($.template, $.name)") == "Hello, my name is Arnav."


def test_format_without_placeholders():
    assert ev("States.Format('plain')") == "plain"


def test_format_several_placeholders_in_order():
    assert ev("States.Format('{}-{}-{}', 'a', 'b', 'c')") == "a-b-c"


def test_format_value_types():
    assert ev("States.Format('{}|{}|{}|{}', 42, true, false, null)") == "42|true|false|null"


def test_format_renders_objects_and_arrays_the_java_way_as_aws_does():
    out = ev("States.Format('{} {}', $.unescapedJson, $.dupes)")
    expected_array = "[" + ", ".join(str(item) for item in INPUT["dupes"]) + "]"
    assert out == "{foo=bar} " + expected_array
    nested_input = {"nested": {"a": [1, "x", None, True], "b": {"c": 2.5}}}
    nested = parse_intrinsic("States.Format('{}', $.nested)").evaluate(Scope(nested_input, {}, dict))
    assert nested == "{a=[1, x, null, true], b={c=2.5}}"


def test_format_argument_text_is_not_reinterpreted():
    # a '{}' inside an argument value is data, not a placeholder
    assert ev("States.Format('{} and {}', '{}', 'x')") == "{} and x"


def test_format_escaped_braces_are_literal_not_placeholders():
    assert ev("States.Format('\\{\\} is literal, {} is not', 'this')") == "{} is literal, this is not"
    assert ev("States.Format('\\{\\}')") == "{}"


def test_format_escaped_quote_and_backslash():
    assert ev("States.Format('it\\'s {}', $.name)") == "it's Arnav"
    assert ev("States.Format('back\\\\slash {}', 1)") == "back\\slash 1"


def test_format_with_context_and_variable_arguments():
    assert ev("States.Format('{} in {}', $who, $$.Execution.Id)") == "variable-world in arn:exec:1"


def test_format_with_nested_call():
    assert ev("States.Format('n={}', States.ArrayLength($.inputArray))") == "n=9"


@pytest.mark.parametrize(
    "text",
    [
        "States.Format('{} {}', 'only one')",
        "States.Format('{}')",
        "States.Format('no placeholder', 'extra')",
        "States.Format('{}', 1, 2)",
        "States.Format($.template)",  # template from a path has one {} but no argument
    ],
)
def test_format_placeholder_argument_mismatch_is_intrinsic_failure(text):
    fails_with(text)


def test_format_escaped_braces_do_not_count_as_placeholders():
    fails_with("States.Format('\\{\\}', 'extra')")


def test_format_template_from_path_must_be_a_string():
    fails_with("States.Format($.num)")


# ---------------------------------------------------------------- JSON conversions


def test_string_to_json_documented_example():
    assert ev("States.StringToJson($.escapedJsonString)") == {"foo": "bar"}


def test_string_to_json_literal_and_scalars():
    assert ev("States.StringToJson('[1, 2]')") == [1, 2]
    assert ev("States.StringToJson('12')") == 12
    assert ev("States.StringToJson('\"s\"')") == "s"


def test_string_to_json_invalid_json_fails():
    fails_with("States.StringToJson('{not json')")


def test_string_to_json_requires_a_string():
    fails_with("States.StringToJson($.obj)")


def test_json_to_string_documented_example():
    out = ev("States.JsonToString($.unescapedJson)")
    assert isinstance(out, str)
    assert json.loads(out) == {"foo": "bar"}
    assert out == '{"foo":"bar"}'


def test_json_to_string_round_trips_through_string_to_json():
    out = ev("States.StringToJson(States.JsonToString($.obj))")
    assert out == INPUT["obj"]


# ---------------------------------------------------------------- arrays


def test_array_documented_example():
    assert ev("States.Array($.num)") == [42]


def test_array_mixed_arguments_in_order():
    assert ev("States.Array('a', 1, 2.5, true, null, $.unescapedJson, $items)") == [
        "a",
        1,
        2.5,
        True,
        None,
        {"foo": "bar"},
        ["x", "y"],
    ]


def test_array_of_nothing():
    assert ev("States.Array()") == []


def test_array_partition_documented_example():
    assert ev("States.ArrayPartition($.inputArray, 4)") == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]


def test_array_partition_exact_multiple_and_oversize():
    assert ev("States.ArrayPartition($.inputArray, 3)") == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert ev("States.ArrayPartition($.inputArray, 100)") == [INPUT["inputArray"]]
    assert ev("States.ArrayPartition(States.Array(), 2)") == []


@pytest.mark.parametrize("size", ["0", "-1"])
def test_array_partition_size_must_be_positive(size):
    fails_with(f"States.ArrayPartition($.inputArray, {size})")


def test_array_partition_first_argument_must_be_array():
    fails_with("States.ArrayPartition($.str, 2)")


def test_array_contains_documented_example():
    assert ev("States.ArrayContains($.inputArray, $.lookingFor)") is True


def test_array_contains_absent_and_structured_values():
    assert ev("States.ArrayContains($.inputArray, 10)") is False
    assert ev("States.ArrayContains(States.Array($.unescapedJson), $.unescapedJson)") is True
    assert ev("States.ArrayContains(States.Array('1'), 1)") is False


def test_array_contains_does_not_confuse_booleans_and_numbers():
    assert ev("States.ArrayContains(States.Array(1, 0), true)") is False
    assert ev("States.ArrayContains(States.Array(true), 1)") is False


def test_array_range_documented_example():
    assert ev("States.ArrayRange(1, 9, 2)") == [1, 3, 5, 7, 9]


def test_array_range_end_inclusive_and_descending():
    assert ev("States.ArrayRange(0, 3, 1)") == [0, 1, 2, 3]
    assert ev("States.ArrayRange(10, 4, -3)") == [10, 7, 4]
    assert ev("States.ArrayRange(5, 5, 1)") == [5]
    assert ev("States.ArrayRange($.start, 3, 1)") == [1, 2, 3]


def test_array_range_at_the_1000_item_limit():
    values = ev("States.ArrayRange(1, 1000, 1)")
    assert len(values) == 1000
    assert values[0] == 1 and values[-1] == 1000


@pytest.mark.parametrize("text", ["States.ArrayRange(1, 1001, 1)", "States.ArrayRange(0, 1000, 1)"])
def test_array_range_more_than_1000_items_fails(text):
    fails_with(text)


def test_array_range_step_zero_fails():
    fails_with("States.ArrayRange(1, 5, 0)")


def test_array_get_item_documented_example():
    assert ev("States.ArrayGetItem($.inputArray, $.index)") == 6


def test_array_get_item_bounds():
    assert ev("States.ArrayGetItem($.inputArray, 0)") == 1
    assert ev("States.ArrayGetItem($.inputArray, 8)") == 9
    fails_with("States.ArrayGetItem($.inputArray, 9)")
    fails_with("States.ArrayGetItem(States.Array(), 0)")


def test_array_get_item_requires_an_array():
    fails_with("States.ArrayGetItem($.unescapedJson, 0)")


def test_array_length_documented_example():
    assert ev("States.ArrayLength($.inputArray)") == 9
    assert ev("States.ArrayLength(States.Array())") == 0


def test_array_length_requires_an_array():
    fails_with("States.ArrayLength($.str)")


def test_array_unique_documented_example():
    assert ev("States.ArrayUnique($.dupes)") == [1, 2, 3, 4]


def test_array_unique_keeps_first_occurrence_order_and_compares_by_value():
    out = ev("States.ArrayUnique(States.Array('b', 'a', 'b', $.unescapedJson, $.unescapedJson, 'a'))")
    assert out == ["b", "a", {"foo": "bar"}]


def test_array_unique_distinguishes_string_and_number():
    assert ev("States.ArrayUnique(States.Array(1, '1', 1))") == [1, "1"]


# ---------------------------------------------------------------- encoding and hashing


def test_base64_encode_documented_example():
    assert ev("States.Base64Encode('Data to encode')") == "RGF0YSB0byBlbmNvZGU="


def test_base64_decode_documented_example():
    assert ev("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')") == "Data to encode"


def test_base64_round_trip_non_ascii():
    text = "héllo wörld ✓"
    encoded = parse_intrinsic("States.Base64Encode($.s)").evaluate(Scope({"s": text}, {}, dict))
    assert encoded == base64.b64encode(text.encode("utf-8")).decode("ascii")
    decoded = parse_intrinsic("States.Base64Decode($.s)").evaluate(Scope({"s": encoded}, {}, dict))
    assert decoded == text


def test_base64_input_limit_is_10000_characters():
    ok = Scope({"s": "a" * 10_000}, {}, dict)
    assert (
        parse_intrinsic("States.Base64Encode($.s)").evaluate(ok) == base64.b64encode(b"a" * 10_000).decode()
    )
    too_long = Scope({"s": "a" * 10_001}, {}, dict)
    with pytest.raises(StatesError) as info:
        parse_intrinsic("States.Base64Encode($.s)").evaluate(too_long)
    assert info.value.error == "States.IntrinsicFailure"


def test_base64_decode_invalid_input_fails():
    fails_with("States.Base64Decode('@@not base64@@')")


def test_base64_requires_a_string():
    fails_with("States.Base64Encode($.num)")


@pytest.mark.parametrize(
    "algorithm, hashlib_name",
    [("MD5", "md5"), ("SHA-1", "sha1"), ("SHA-256", "sha256"), ("SHA-384", "sha384"), ("SHA-512", "sha512")],
)
def test_hash_matches_hashlib(algorithm, hashlib_name):
    expected = hashlib.new(hashlib_name, b"input data").hexdigest()
    assert ev(f"States.Hash($.text, '{algorithm}')") == expected
    assert ev(f"States.Hash('input data', '{algorithm}')") == expected


def test_hash_documented_example():
    assert ev("States.Hash($.text, 'SHA-1')") == "aaff4a450a104cd177d28d18d74485e8cae074b7"


def test_hash_algorithm_from_path():
    assert ev("States.Hash($.text, $.algorithm)") == hashlib.sha256(b"input data").hexdigest()


def test_hash_unknown_algorithm_from_path_fails_at_runtime():
    fails_with("States.Hash($.text, $.str)")


def test_hash_unknown_literal_algorithm_is_rejected():
    with pytest.raises((IntrinsicSyntaxError, StatesError)):
        ev("States.Hash($.text, 'SHA-3')")


# ---------------------------------------------------------------- JsonMerge


def test_json_merge_documented_shallow_example():
    assert ev("States.JsonMerge($.json1, $.json2, false)") == {
        "a": {"a3": 1, "a4": 2},
        "b": 2,
        "c": 3,
    }


def test_json_merge_does_not_modify_its_inputs():
    s = scope()
    before = json.loads(json.dumps(s.data))
    parse_intrinsic("States.JsonMerge($.json1, $.json2, false)").evaluate(s)
    assert s.data == before


def test_json_merge_requires_objects():
    fails_with("States.JsonMerge($.inputArray, $.json2, false)")


# ---------------------------------------------------------------- math


def test_math_random_stays_in_range_start_inclusive_end_exclusive():
    seen = {ev("States.MathRandom(1, 4)") for _ in range(300)}
    assert seen <= {1, 2, 3}
    assert 1 in seen  # the start is reachable
    assert len(seen) > 1


def test_math_random_documented_range_from_paths():
    for _ in range(50):
        value = ev("States.MathRandom($.start, $.end)")
        assert isinstance(value, int)
        assert 1 <= value < 999


def test_math_random_seeded_is_deterministic():
    first = ev("States.MathRandom(1, 1000000, 1234)")
    assert all(ev("States.MathRandom(1, 1000000, 1234)") == first for _ in range(5))
    assert 1 <= first < 1_000_000
    others = {ev(f"States.MathRandom(1, 1000000, {seed})") for seed in range(20)}
    assert len(others) > 1  # the seed matters


def test_math_add_documented_example():
    assert ev("States.MathAdd($.value1, $.step)") == 110


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("1.5", "1.51", 4),  # Math.round(1.5)=2, Math.round(1.51)=2
        ("-1.5", "-1.51", -3),  # Math.round(-1.5)=-1, Math.round(-1.51)=-2
        ("0.49", "0.5", 1),
        ("-0.5", "0", 0),
        ("2", "3", 5),
        ("-2.5", "2.5", 1),  # -2 + 3
    ],
)
def test_math_add_rounds_each_argument_like_java_math_round(a, b, expected):
    assert ev(f"States.MathAdd({a}, {b})") == expected


def test_math_add_from_path_and_nested_call():
    assert ev("States.MathAdd($.flt, States.ArrayLength($.inputArray))") == 11


def test_math_add_requires_numbers():
    fails_with("States.MathAdd($.str, 1)")
    fails_with("States.MathAdd(1, $.flag)")


# ---------------------------------------------------------------- strings


def test_string_split_documented_example():
    assert ev("States.StringSplit($.inputString, $.splitter)") == ["This", "is", "a", "test", "string"]


def test_string_split_single_delimiter():
    assert ev("States.StringSplit('1,2,3,4,5', ',')") == ["1", "2", "3", "4", "5"]


def test_string_split_drops_empty_pieces():
    assert ev("States.StringSplit(',a,,b,', ',')") == ["a", "b"]
    assert ev("States.StringSplit('a.+b', '+.')") == ["a", "b"]


def test_string_split_delimiters_are_characters_not_a_regex():
    assert ev("States.StringSplit('a|b.c', '|')") == ["a", "b.c"]
    assert ev("States.StringSplit('a]b[c', '[]')") == ["a", "b", "c"]


def test_string_split_without_delimiter_present():
    assert ev("States.StringSplit('abc', ',')") == ["abc"]


def test_string_split_requires_strings():
    fails_with("States.StringSplit($.num, ',')")


# ---------------------------------------------------------------- UUID

_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid_is_version_4():
    value = ev("States.UUID()")
    assert _UUID4.match(value), value
    assert uuid.UUID(value).version == 4


def test_uuid_is_fresh_each_time():
    assert len({ev("States.UUID()") for _ in range(20)}) == 20


# ---------------------------------------------------------------- literals and parsing


def test_string_literal_escapes():
    assert ev("States.Array('it\\'s', '\\{x\\}', 'a\\\\b')") == ["it's", "{x}", "a\\b"]


def test_number_and_keyword_literals():
    assert ev("States.Array(0, -3, 2.25, -0.5, 1e2, true, false, null)") == [
        0,
        -3,
        2.25,
        -0.5,
        100,
        True,
        False,
        None,
    ]


def test_whitespace_between_arguments():
    assert ev("States.Array( 1 ,  'a' ,$.num )") == [1, "a", 42]


def test_comma_and_paren_inside_string_literal():
    assert ev("States.Array('a, b', '(c)')") == ["a, b", "(c)"]


def test_path_arguments_of_every_kind():
    assert ev("States.Array($.num, $who, $items[1], $$.State.Name, $.inputArray[2])") == [
        42,
        "variable-world",
        "y",
        "S1",
        3,
    ]


def test_path_argument_with_bracket_name():
    s = Scope({"a b": {"c": 1}}, {}, dict)
    assert parse_intrinsic("States.Array($['a b'].c)").evaluate(s) == [1]


def test_deeply_nested_calls():
    text = (
        "States.Format('{}.{}', "
        "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.arn, '/'), 2), '.'), 0), "
        "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.arn, '/'), 2), '.'), 1))"
    )
    s = Scope({"arn": "arn:aws:imagebuilder/recipe/name.version.x"}, {}, dict)
    assert parse_intrinsic(text).evaluate(s) == "name.version"


def test_parsed_call_can_be_evaluated_repeatedly_on_different_data():
    call = parse_intrinsic("States.ArrayLength($.l)")
    assert call.evaluate(Scope({"l": [1]}, {}, dict)) == 1
    assert call.evaluate(Scope({"l": [1, 2, 3]}, {}, dict)) == 3


def test_missing_path_argument_is_states_runtime():
    fails_with("States.ArrayLength($.nope)", error="States.Runtime")
    fails_with("States.Format('{}', $nosuchvariable)", error="States.Runtime")


def test_missing_path_inside_nested_call_is_states_runtime():
    fails_with("States.Format('{}', States.ArrayLength($.nope))", error="States.Runtime")


def test_indefinite_path_argument_yields_a_list():
    s = Scope({"a": [{"b": 1}, {"b": 2}]}, {}, dict)
    assert parse_intrinsic("States.ArrayLength($.a[*].b)").evaluate(s) == 2


# ---------------------------------------------------------------- parse-time errors

ARITY_ERRORS = [
    "States.Format()",
    "States.StringToJson()",
    "States.StringToJson('a', 'b')",
    "States.JsonToString()",
    "States.JsonToString($.a, $.b)",
    "States.ArrayPartition($.a)",
    "States.ArrayPartition($.a, 1, 2)",
    "States.ArrayContains($.a)",
    "States.ArrayRange(1, 2)",
    "States.ArrayRange(1, 2, 3, 4)",
    "States.ArrayGetItem($.a)",
    "States.ArrayLength()",
    "States.ArrayLength($.a, $.b)",
    "States.ArrayUnique()",
    "States.Base64Encode()",
    "States.Base64Decode('a', 'b')",
    "States.Hash('a')",
    "States.JsonMerge($.a, $.b)",
    "States.MathRandom(1)",
    "States.MathRandom(1, 2, 3, 4)",
    "States.MathAdd(1)",
    "States.MathAdd(1, 2, 3)",
    "States.StringSplit('a')",
    "States.UUID(1)",
]


@pytest.mark.parametrize("text", ARITY_ERRORS)
def test_wrong_argument_count_is_rejected_when_parsing(text):
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic(text)


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope(1)",
        "States.format('x')",
        "States.StringToJSON('x')",
        "States.Format('{}', States.Unknown())",
    ],
)
def test_unknown_function_is_rejected_when_parsing(text):
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic(text)


@pytest.mark.parametrize(
    "text",
    [
        "States.Format('unterminated)",
        "States.Format('a' 'b')",
        "States.Array(1,)",
        "States.Array(,1)",
        "States.Array(1",
        "States.Array(1))",
        "States.Array(1) trailing",
        "States.Array(bareword)",
        "States.Array($.a[)",
        "Format('x')",
        "States.Array",
        "",
    ],
)
def test_malformed_calls_are_rejected_when_parsing(text):
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic(text)


def test_json_merge_deep_mode_is_not_supported():
    with pytest.raises((IntrinsicSyntaxError, StatesError)):
        ev("States.JsonMerge($.json1, $.json2, true)")


def test_runtime_failure_names_the_function():
    error = fails_with("States.ArrayGetItem($.inputArray, 100)")
    assert "ArrayGetItem" in str(error)


def test_filter_path_argument_with_comma_and_paren_inside():
    s = Scope({"a": [{"b": 1, "n": "x,y"}, {"b": 2, "n": "z)"}]}, {}, dict)
    assert parse_intrinsic("States.ArrayLength($.a[?(@.b > 1)])").evaluate(s) == 1
    assert parse_intrinsic("States.Array($.a[?(@.n == 'x,y')].b, 3)").evaluate(s) == [[1], 3]
    assert parse_intrinsic("States.Array($.a[?(@.n == 'z)')].b, 3)").evaluate(s) == [[2], 3]


@pytest.mark.parametrize(
    "text",
    [
        "States.ArrayRange(1.5, 3, 1)",
        "States.ArrayRange(1, 3, 0.5)",
        "States.ArrayRange('1', 3, 1)",
        "States.ArrayGetItem($.inputArray, 1.5)",
        "States.ArrayGetItem($.inputArray, '1')",
    ],
)
def test_integer_arguments_must_be_integers(text):
    fails_with(text)


def test_array_range_limit_is_checked_before_building_the_range():
    tracemalloc.start()
    try:
        fails_with("States.ArrayRange(0, 500000, 1)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"peak {peak} bytes to reject a range of 500001 items"
