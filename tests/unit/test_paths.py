"""JSONPath as ASL uses it: definite vs indefinite paths, roots, names, errors, and ResultPath writes."""

from __future__ import annotations

import copy

import pytest

from smq.engine.paths import (
    PathNotFound,
    PathSyntaxError,
    Scope,
    compile_path,
    compile_reference_path,
    set_at,
)

DATA = {
    "a": [{"b": 1}, {"b": 2, "x": 3}, {"b": 5}],
    "a b": "space",
    "it's": "apostrophe",
    "x-y": "dash",
    "n": {"m": {"k": 1}, "j": 2},
    "s": "text",
    "z": 0,
    "nul": None,
    "deep": {"inner": {"b": 9}},
}
CONTEXT = {"Execution": {"Id": "exec-1", "Input": {"q": 7}}, "State": {"Name": "S"}}
VARIABLES = {"counter": 3, "cfg": {"retries": [10, 20]}, "_under": "u"}


def scope(data=None):
    return Scope(copy.deepcopy(DATA) if data is None else data, dict(VARIABLES), lambda: CONTEXT)


def read(path, data=None):
    return scope(data).read(compile_path(path))


# ---------------------------------------------------------------- definite paths yield the value


@pytest.mark.parametrize(
    "path, expected",
    [
        ("$", DATA),
        ("$.a[1].b", 2),
        ("$.a[0]", {"b": 1}),
        ("$.n.m.k", 1),
        ("$.s", "text"),
        ("$.z", 0),
        ("$.nul", None),
        ("$['a b']", "space"),
        ('$["a b"]', "space"),
        ("$['it\\'s']", "apostrophe"),
        ("$.x-y", "dash"),
        ("$['x-y']", "dash"),
        ("$['n']['m']['k']", 1),
        ("$.n['m'].k", 1),
        ("$.a[1]['x']", 3),
        ("$['a'][2]['b']", 5),
    ],
)
def test_definite_path_yields_the_value_itself(path, expected):
    compiled = compile_path(path)
    assert compiled.definite
    assert read(path) == expected


def test_definite_path_returns_a_list_only_when_the_value_is_a_list():
    assert read("$.a") == DATA["a"]
    assert read("$.a[1]") == {"b": 2, "x": 3}  # not wrapped in a list


# ---------------------------------------------------------------- indefinite paths yield lists


@pytest.mark.parametrize(
    "path, expected",
    [
        ("$.a[*].b", [1, 2, 5]),
        ("$.a[*]", DATA["a"]),
        ("$..k", [1]),
        ("$.a[?(@.b > 1)]", [{"b": 2, "x": 3}, {"b": 5}]),
        ("$.a[?(@.b > 1)].b", [2, 5]),
        ("$.a[?(@.b == 2)].x", [3]),
        ("$.a[0:2]", [{"b": 1}, {"b": 2, "x": 3}]),
        ("$.a[1:]", [{"b": 2, "x": 3}, {"b": 5}]),
        ("$.a[0,2].b", [1, 5]),
        ("$.a[*]['b']", [1, 2, 5]),
    ],
)
def test_indefinite_path_yields_a_list(path, expected):
    compiled = compile_path(path)
    assert not compiled.definite
    assert read(path) == expected


def test_indefinite_single_match_is_still_a_list():
    assert read("$.a[?(@.x == 3)]") == [{"b": 2, "x": 3}]
    assert read("$.a[0:1]") == [{"b": 1}]


def test_deep_scan_finds_every_level():
    assert sorted(read("$..b")) == [1, 2, 5, 9]


def test_wildcard_on_object_yields_its_values():
    assert sorted(read("$.n.*"), key=repr) == sorted([{"k": 1}, 2], key=repr)


@pytest.mark.parametrize(
    "path",
    ["$.a[?(@.b > 100)]", "$..nothing", "$.a[*].nothing", "$.missing[*]", "$.a[10:20]"],
)
def test_indefinite_path_with_no_match_yields_empty_list(path):
    assert read(path) == []


def test_indefinite_path_never_raises_path_not_found():
    # the same data that makes a definite path fail gives an empty result here
    with pytest.raises(PathNotFound):
        read("$.missing")
    assert read("$..missing") == []


# ---------------------------------------------------------------- roots


def test_context_root():
    compiled = compile_path("$$.Execution.Id")
    assert compiled.root == "$$"
    assert not compiled.is_variable
    assert scope().read(compiled) == "exec-1"
    assert read("$$.Execution.Input.q") == 7
    assert read("$$") == CONTEXT


def test_context_is_only_built_when_read():
    calls = []

    def factory():
        calls.append(1)
        return CONTEXT

    s = Scope(DATA, {}, factory)
    s.read(compile_path("$.s"))
    assert calls == []
    assert s.read(compile_path("$$.State.Name")) == "S"
    assert s.read(compile_path("$$.Execution.Id")) == "exec-1"
    assert calls == [1]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("$counter", 3),
        ("$cfg", {"retries": [10, 20]}),
        ("$cfg.retries", [10, 20]),
        ("$cfg.retries[1]", 20),
        ("$cfg['retries'][0]", 10),
        ("$_under", "u"),
    ],
)
def test_variable_roots(path, expected):
    compiled = compile_path(path)
    assert compiled.is_variable
    assert read(path) == expected


def test_variable_root_does_not_read_the_data():
    data = {"counter": "from data"}
    assert read("$counter", data) == 3
    assert read("$.counter", data) == "from data"


def test_unknown_variable_is_path_not_found():
    with pytest.raises(PathNotFound):
        read("$nosuchvar")
    with pytest.raises(PathNotFound):
        read("$nosuchvar.field")


def test_indefinite_path_on_a_variable():
    assert read("$cfg.retries[*]") == [10, 20]


def test_variables_and_context_can_be_disallowed():
    with pytest.raises(PathSyntaxError):
        compile_path("$counter", allow_variables=False)
    with pytest.raises(PathSyntaxError):
        compile_path("$$.Execution.Id", allow_context=False)
    # the plain input root is still fine under both restrictions
    assert compile_path("$.a", allow_variables=False, allow_context=False).definite


# ---------------------------------------------------------------- PathNotFound


@pytest.mark.parametrize(
    "path",
    [
        "$.missing",
        "$.n.missing",
        "$.n.m.k.deeper",  # below a number
        "$.a[3]",  # out of range
        "$.a[99].b",
        "$.s[0]",  # indexing a string
        "$.n[0]",  # indexing an object
        "$.a.b",  # a field of a list
        "$.nul.x",  # through null
        "$['no such']",
    ],
)
def test_definite_path_that_selects_nothing_raises(path):
    with pytest.raises(PathNotFound) as info:
        read(path)
    assert info.value.path == path


def test_path_not_found_on_scalar_root():
    with pytest.raises(PathNotFound):
        read("$.a", 5)
    with pytest.raises(PathNotFound):
        read("$[0]", "abc")


# ---------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a.b",
        "$.",
        "$.a.",
        "$.a[",
        "$.a[1",
        "$[",
        "$['a",
        "$['a b'",
        "$.a[]",
        "$.a[abc]",
        "$..",
        "$.a..",
        "$.a[?(@.b >)]",
        "$$$",
        "$#",
        "$ .a",
        "$1abc",
        "$.a[1]x",
    ],
)
def test_malformed_paths_raise_syntax_error(text):
    with pytest.raises(PathSyntaxError):
        compile_path(text)


def test_non_string_path_raises_syntax_error():
    with pytest.raises(PathSyntaxError):
        compile_path(5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- reference paths


@pytest.mark.parametrize("text", ["$", "$.a", "$.a.b", "$.a[0]", "$['a b'].c", "$.x-y"])
def test_reference_path_accepts_definite_input_paths(text):
    compiled = compile_reference_path(text)
    assert compiled.definite
    assert compiled.root == "$"


@pytest.mark.parametrize(
    "text",
    [
        "$.a[*]",
        "$..a",
        "$.a[?(@.b > 1)]",
        "$.a[0:2]",
        "$.a[0,1]",
        "$.*",
        "$$.Execution.Id",
        "$$",
        "$counter",
        "$counter.x",
        "nope",
    ],
)
def test_reference_path_rejects_indefinite_context_and_variable_paths(text):
    with pytest.raises(PathSyntaxError):
        compile_reference_path(text)


# ---------------------------------------------------------------- set_at


def keys(text):
    return compile_reference_path(text).keys


def test_set_at_root_replaces_everything():
    assert set_at({"a": 1}, keys("$"), [1, 2]) == [1, 2]


def test_set_at_adds_a_field_and_keeps_the_others():
    original = {"a": 1, "b": {"c": 2}}
    snapshot = copy.deepcopy(original)
    result = set_at(original, keys("$.b.d"), "new")
    assert result == {"a": 1, "b": {"c": 2, "d": "new"}}
    assert original == snapshot


def test_set_at_replaces_an_existing_value():
    original = {"a": {"b": 1}}
    assert set_at(original, keys("$.a.b"), {"z": 0}) == {"a": {"b": {"z": 0}}}
    assert original == {"a": {"b": 1}}


def test_set_at_creates_intermediate_objects():
    original = {"keep": True}
    snapshot = copy.deepcopy(original)
    result = set_at(original, keys("$.x.y.z"), 42)
    assert result == {"keep": True, "x": {"y": {"z": 42}}}
    assert original == snapshot


def test_set_at_on_empty_object():
    assert set_at({}, keys("$.result"), 1) == {"result": 1}


def test_set_at_into_a_list_element():
    original = {"l": [1, {"x": 2}]}
    snapshot = copy.deepcopy(original)
    result = set_at(original, keys("$.l[1].y"), 5)
    assert result == {"l": [1, {"x": 2, "y": 5}]}
    assert original == snapshot


def test_set_at_never_mutates_nested_originals():
    inner = {"c": [1, 2]}
    original = {"a": {"b": inner}, "other": {"o": 1}}
    snapshot = copy.deepcopy(original)
    result = set_at(original, keys("$.a.b.d"), "v")
    assert original == snapshot
    assert inner == {"c": [1, 2]}
    assert result["a"]["b"] is not inner
    assert result["other"] == {"o": 1}


@pytest.mark.parametrize(
    "data, path",
    [
        ({"s": "text"}, "$.s.x"),  # through a string
        ({"n": 5}, "$.n.x"),  # through a number
        ({"l": [1, 2]}, "$.l.x"),  # named field of a list
        ({"n": None}, "$.n.x"),  # through null
        ({"l": [1]}, "$.l[3]"),  # index out of range
        ({"o": {}}, "$.o[0]"),  # index into an object
        ("scalar", "$.x"),  # root is not an object
        ([1, 2], "$.x"),
    ],
)
def test_set_at_through_a_non_object_raises(data, path):
    snapshot = copy.deepcopy(data)
    with pytest.raises(PathNotFound):
        set_at(data, keys(path), 1)
    assert data == snapshot


# ---------------------------------------------------------------- from the ASL specification


def test_negative_slice_from_the_specification_example():
    # "last3.$": "$.vals[-3:]" in the specification's Payload Template example
    assert read("$.vals[-3:]", {"vals": [0, 10, 20, 30, 40, 50]}) == [30, 40, 50]


@pytest.mark.parametrize(
    "text", ["$.store.book", "$.ledgers.branch[0].pending.count", "$.ledgers[0][22][315].foo"]
)
def test_specification_reference_path_examples(text):
    assert compile_reference_path(text).definite


def test_specification_reference_path_with_escaped_operators():
    compile_reference_path("$.foo\\@bar.baz\\[\\[.\\?pretty")


def test_existence_filter():
    assert read("$.a[?(@.p)]", {"a": [{"p": 0}, {"q": 1}]}) == [{"p": 0}]


def test_negated_existence_filter_keeps_items_without_the_member():
    assert read("$.a[?(!@.p)]", {"a": [{"p": 0}, {"q": 1}]}) == [{"q": 1}]


def test_string_equality_filter():
    assert read("$.a[?(@.p == 'x')]", {"a": [{"p": "x"}, {"p": "y"}]}) == [{"p": "x"}]


def test_filter_numeric_comparison_keeps_fractional_values():
    data = {"a": [{"p": 10.5}, {"p": 11}, {"p": 9.9}]}
    assert read("$.a[?(@.p > 10)]", data) == [{"p": 10.5}, {"p": 11}]


def test_filter_numeric_equality_is_exact():
    assert read("$.a[?(@.p == 1)]", {"a": [{"p": 1.9}, {"p": 1}]}) == [{"p": 1}]


def test_filter_numeric_comparison_skips_null_values():
    assert read("$.a[?(@.b > 1)]", {"a": [{"b": None}, {"b": 2}]}) == [{"b": 2}]
