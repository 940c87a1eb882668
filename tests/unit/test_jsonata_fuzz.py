"""Fuzzing JSONata templates and expressions: the validator and the interpreter never crash.

Whatever the text inside `{% %}`, wherever it stands, validation returns problems (naming a state and
field) or none, and a run that compiles ends SUCCEEDED or FAILED with a States.* error (or the name a
Fail state gives): never an exception out of smq, never a value JSON cannot hold.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smq import DefinitionError, StateMachine, VirtualClock
from smq.engine.compiler import validate_definition

T0 = 1_735_732_800.0

ATOMS = [
    "1",
    "-2.5",
    "0",
    "'text'",
    '"q"',
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "$states.input",
    "$states.input.a",
    "$states.input.list",
    "$states.input.list[0]",
    "$states.context.State.Name",
    "$states.context.Execution.Input",
    "$states.result",
    "$states.errorOutput",
    "$v",
    "$missing",
    "$",
    "$$",
    "[1..3]",
    "/a.c/i",
]
UNARY = [
    "$sum({})",
    "$count({})",
    "$string({})",
    "$number({})",
    "$keys({})",
    "$parse({})",
    "$uuid()",
    "$random({})",
    "$random()",
    "$eval({})",
    "$exists({})",
    "$not({})",
    "$type({})",
    "$length({})",
    "$map({}, function($x){{ $x }})",
    "({})",
    "[{}]",
    "{{'k': {}}}",
    "-{}",
    "{}[0]",
    "{}.a",
]
BINARY = [
    "{} + {}",
    "{} - {}",
    "{} * {}",
    "{} / {}",
    "{} % {}",
    "{} & {}",
    "{} = {}",
    "{} != {}",
    "{} < {}",
    "{} and {}",
    "{} or {}",
    "{} ? {} : 0",
    "{} in {}",
    "$partition({}, {})",
    "$range(0, {}, {})",
    "$hash({}, {})",
    "$lookup({}, {})",
    "$append({}, {})",
    "($x := {}; {})",
]

expressions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(UNARY), inner).map(lambda pair: pair[0].format(pair[1])),
        st.tuples(st.sampled_from(BINARY), inner, inner).map(lambda t: t[0].format(t[1], t[2])),
    ),
    max_leaves=6,
)
# Well-formed expressions, and arbitrary text (mostly syntax errors).
expression_texts = st.one_of(expressions, expressions, st.text(max_size=20))
templates = st.recursive(
    st.one_of(
        expression_texts.map(lambda text: "{% " + text + " %}"),
        st.integers(-3, 3),
        st.text(max_size=5),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=5,
)
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.text(max_size=4),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "list", "n"]), inner, max_size=3)
    ),
    max_leaves=6,
)
wrapped = expression_texts.map(lambda text: "{% " + text + " %}")

PROCESSOR = {"StartAt": "In", "States": {"In": {"Type": "Pass", "End": True}}}


@st.composite
def jsonata_states(draw: Any) -> dict[str, Any]:
    """One JSONata state whose expression fields are fuzzed; it goes on to Done."""
    kind = draw(st.sampled_from(["Pass", "Choice", "Wait", "Fail", "Map", "Parallel", "Succeed"]))
    state: dict[str, Any] = {"Type": kind}
    if kind not in ("Choice", "Fail", "Succeed"):
        state["Next"] = "Done"
    if kind != "Fail" and draw(st.booleans()):
        state["Output"] = draw(templates)
    if kind not in ("Fail", "Succeed") and draw(st.booleans()):
        state["Assign"] = {"v": draw(templates), "w": draw(templates)}
    if kind == "Choice":
        state["Choices"] = [
            {"Condition": draw(st.one_of(wrapped, st.booleans())), "Next": "Done", "Output": draw(templates)}
        ]
        state["Default"] = "Done"
    elif kind == "Wait":
        key = draw(st.sampled_from(["Seconds", "Timestamp"]))
        state[key] = draw(
            st.one_of(wrapped, st.just(0) if key == "Seconds" else st.just("2025-01-01T12:00:00Z"))
        )
    elif kind == "Fail":
        state["Error"] = draw(st.one_of(wrapped, st.just("Custom.Error")))
        state["Cause"] = draw(st.one_of(wrapped, st.just("why")))
    elif kind == "Map":
        state["ItemProcessor"] = PROCESSOR
        for key in (
            "Items",
            "ItemSelector",
            "MaxConcurrency",
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
        ):
            if draw(st.booleans()):
                state[key] = draw(wrapped) if key != "ItemSelector" else draw(templates)
    elif kind == "Parallel":
        state["Branches"] = [PROCESSOR]
        if draw(st.booleans()):
            state["Arguments"] = draw(templates)
    return state


def _definition(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Assign": {"v": {"a": [1, 2]}}, "Next": "S"},
            "S": state,
            "Done": {"Type": "Succeed"},
        },
    }


def _json_safe(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _json_safe(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_json_safe(item) for item in value)
    return value is None or isinstance(value, (str, int, bool))


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(jsonata_states(), values)
def test_fuzzed_jsonata_states_validate_and_run_without_crashing(state: dict[str, Any], inp: Any) -> None:
    definition = _definition(state)
    problems = validate_definition(definition)
    for problem in problems:
        assert problem.where.startswith("States.") and problem.message
    if problems:
        try:
            StateMachine.from_definition(definition)
        except DefinitionError as exc:
            assert exc.problems == problems
        else:
            raise AssertionError("a definition with problems compiled")
        return
    clock = VirtualClock(T0)
    result = StateMachine.from_definition(definition).run(inp, clock=clock.now, sleep=clock.sleep)
    assert result.status in ("SUCCEEDED", "FAILED"), (result.status, result.cause)
    if result.status == "FAILED":
        assert (
            result.error is None or result.error.startswith(("States.", "Custom.")) or state["Type"] == "Fail"
        )
    else:
        assert _json_safe(result.output)
        json.dumps(result.output)


@FUZZ
@given(templates, values)
def test_fuzzed_output_templates_give_json_or_a_query_evaluation_error(output: Any, inp: Any) -> None:
    definition = _definition({"Type": "Pass", "Output": output, "Next": "Done"})
    if validate_definition(definition):
        return
    clock = VirtualClock(T0)
    result = StateMachine.from_definition(definition).run(inp, clock=clock.now, sleep=clock.sleep)
    if result.status == "FAILED":
        assert result.error in ("States.QueryEvaluationError", "States.DataLimitExceeded"), result.cause
        assert result.cause and "'S'" in result.cause
    else:
        assert result.status == "SUCCEEDED" and _json_safe(result.output)


@FUZZ
@given(st.text(max_size=40))
def test_any_text_between_the_markers_is_either_compiled_or_a_named_syntax_error(text: str) -> None:
    definition = _definition({"Type": "Pass", "Output": {"x": "{%" + text + "%}"}, "Next": "Done"})
    for problem in validate_definition(definition):
        assert problem.where == "States.S.Output.x"
        assert "JSONata syntax error" in problem.message
