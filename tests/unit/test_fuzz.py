"""Property tests: whatever a definition, an input or a path looks like, smq answers with its own errors.

1. near-valid ASL definitions compile or raise DefinitionError, nothing else;
2. definitions that compile (no Task) run to SUCCEEDED, FAILED or TIMED_OUT without raising;
3. random text given to the intrinsic and JSONPath parsers raises only their syntax errors;
4. random text given to load_definition yields a dict or DefinitionError.

Known crashes found this way are pinned as strict xfail tests (here and in test_validation.py /
test_paths.py); the strategies avoid re-finding exactly those so that the properties keep guarding
everything else.
"""

from __future__ import annotations

import copy
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smq import DefinitionError, ExecutionResult, StateMachine, StatesError, VirtualClock
from smq.engine.definition_source import load_definition
from smq.engine.intrinsics import IntrinsicSyntaxError, parse_intrinsic
from smq.engine.paths import PathNotFound, PathSyntaxError, Scope, compile_path

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
END_STATUSES = {"SUCCEEDED", "FAILED", "TIMED_OUT"}

# ---------------------------------------------------------------- building blocks

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["a", "b", "c", "items", "x", "n", "s", "t"]), children, max_size=4),
    ),
    max_leaves=12,
)

FIELD_NAMES = ["a", "b", "c", "items", "x", "n", "s", "t", "missing"]

# paths: valid and invalid, definite and not, input / context / variable rooted
valid_paths = st.one_of(
    st.just("$"),
    st.builds(lambda k: f"$.{k}", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k, j: f"$.{k}.{j}", st.sampled_from(FIELD_NAMES), st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k, i: f"$.{k}[{i}]", st.sampled_from(FIELD_NAMES), st.integers(0, 3)),
    st.builds(lambda k: f"$['{k}']", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k: f"$.{k}[*]", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k: f"$..{k}", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k: f"$.{k}[0:2]", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k: f"$.{k}[?(@.x)]", st.sampled_from(FIELD_NAMES)),
    st.sampled_from(["$$.Execution.Id", "$$.Execution.Input", "$$.State.Name", "$$.Map.Item.Value"]),
    st.sampled_from(["$v1", "$v2.a", "$v1[0]", "$nosuch"]),
)
# numeric filter comparisons crash on null data (see test_paths.py xfails); only the fuzz of
# definitions, which never runs them, may use them
filter_paths = st.builds(lambda k: f"$.{k}[?(@.n > 1)]", st.sampled_from(FIELD_NAMES))
invalid_paths = st.sampled_from(
    ["", "a.b", "$.", "$[", "$.a[", "$..", "$['a", "$.a[x]", "$ a", "$$$", "$1", 5, None]
)
any_path = st.one_of(valid_paths, filter_paths, invalid_paths)

INTRINSIC_NAMES = [
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathRandom",
    "States.MathAdd",
    "States.StringSplit",
    "States.UUID",
]
intrinsic_literals = st.one_of(
    st.sampled_from(["1", "0", "-3", "2.5", "true", "false", "null", "1000", "1001"]),
    st.sampled_from(
        ["'x'", "'{}'", "'a,b'", "'{} {}'", "'SHA-256'", "'MD5'", "'[1,2]'", "'e30='", "'it\\'s'", "','"]
    ),
)


def _call(name, args):
    return f"{name}({', '.join(args)})"


intrinsic_arg = st.deferred(
    lambda: st.one_of(
        intrinsic_literals,
        valid_paths,
        st.builds(
            _call, st.sampled_from(INTRINSIC_NAMES), st.lists(intrinsic_literals | valid_paths, max_size=3)
        ),
    )
)
intrinsic_calls = st.one_of(
    st.builds(_call, st.sampled_from(INTRINSIC_NAMES + ["States.Nope"]), st.lists(intrinsic_arg, max_size=4)),
    st.sampled_from(["States.Format('{}'", "States.Array(,)", "States.UUID() x", "States.Array('a)"]),
)

expression = st.one_of(valid_paths, intrinsic_calls)


def template(expr):
    return st.recursive(
        st.dictionaries(
            st.sampled_from(["a", "b", "c.$", "d.$", "e"]),
            st.one_of(json_scalars, expr),
            max_size=3,
        ),
        lambda children: st.dictionaries(
            st.sampled_from(["k", "l.$", "m"]), children | json_scalars, max_size=2
        ),
        max_leaves=6,
    )


# ---------------------------------------------------------------- (1) near-valid definitions

STATE_NAMES = ["A", "B", "C", "D"]
# no unhashable Type values: a list Type crashes the compiler (pinned by an xfail in test_validation.py)
STATE_TYPES = ["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map", "Bogus", 5, None]

comparison_operators = st.sampled_from(
    [
        "StringEquals",
        "StringLessThan",
        "StringMatches",
        "NumericEquals",
        "NumericGreaterThanEquals",
        "BooleanEquals",
        "TimestampEquals",
        "TimestampLessThan",
        "IsNull",
        "IsPresent",
        "IsNumeric",
        "IsTimestamp",
        "StringEqualsPath",
        "NumericLessThanPath",
        "TimestampGreaterThanPath",
        "Bogus",
    ]
)
operands = st.one_of(
    json_scalars,
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+01:00", "not a date", "a*b", "a\\*"]),
    any_path,
)


def choice_rules(depth):
    data_test = st.fixed_dictionaries(
        {"Variable": any_path},
        optional={"Next": st.sampled_from(STATE_NAMES + ["Z"])},
    ).flatmap(
        lambda d: st.tuples(st.just(d), comparison_operators, operands).map(lambda t: {**t[0], t[1]: t[2]})
    )
    if depth <= 0:
        return data_test
    inner = choice_rules(depth - 1)
    return st.one_of(
        data_test,
        st.builds(lambda rules: {"And": rules}, st.lists(inner, max_size=3)),
        st.builds(lambda rules: {"Or": rules}, st.lists(inner, max_size=3)),
        st.builds(lambda rule: {"Not": rule}, inner),
        st.builds(lambda rule: {"Not": rule}, json_scalars),
    )


retriers = st.fixed_dictionaries(
    {},
    optional={
        "ErrorEquals": st.lists(
            st.sampled_from(["States.ALL", "States.Timeout", "Custom", "", 5]), max_size=3
        ),
        "IntervalSeconds": st.one_of(st.integers(-1, 5), st.floats(0, 3), st.just("1")),
        "MaxAttempts": st.integers(-1, 5),
        "BackoffRate": st.one_of(st.floats(0, 3), st.integers(0, 3)),
        "MaxDelaySeconds": st.integers(-1, 10),
        "JitterStrategy": st.sampled_from(["FULL", "NONE", "X"]),
        "Bogus": json_scalars,
    },
)
catchers = st.fixed_dictionaries(
    {},
    optional={
        "ErrorEquals": st.lists(st.sampled_from(["States.ALL", "States.Runtime", "Custom"]), max_size=3),
        "Next": st.sampled_from(STATE_NAMES + ["Z", 5]),
        "ResultPath": st.one_of(any_path, st.none()),
        "Assign": st.dictionaries(st.sampled_from(["ok", "1bad", "v1"]), json_scalars, max_size=2),
    },
)


def sub_machines(depth):
    return st.deferred(lambda: machines(depth - 1, top_level=False))


def state_fields(depth):
    fields = {
        "Next": st.sampled_from(STATE_NAMES + ["Z", 5]),
        "End": st.one_of(st.booleans(), st.just("yes")),
        "Comment": st.text(max_size=5),
        "InputPath": st.one_of(any_path, st.none()),
        "OutputPath": st.one_of(any_path, st.none()),
        "ResultPath": st.one_of(any_path, st.none()),
        "Parameters": st.one_of(template(expression), json_scalars),
        "ResultSelector": st.one_of(template(expression), json_scalars),
        "Result": json_values,
        "Assign": st.dictionaries(
            st.sampled_from(["v1", "v2", "bad-name", "x.$", "states"]),
            st.one_of(json_scalars, expression),
            max_size=3,
        ),
        "Resource": st.sampled_from(
            ["arn:aws:states:::lambda:invoke", "my-handler", "", "x.waitForTaskToken"]
        ),
        "TimeoutSeconds": st.one_of(st.integers(-1, 100), st.floats(0, 5)),
        "HeartbeatSeconds": st.integers(-1, 100),
        "TimeoutSecondsPath": any_path,
        "Retry": st.one_of(st.lists(retriers, max_size=3), json_scalars),
        "Catch": st.one_of(st.lists(catchers, max_size=3), json_scalars),
        "Choices": st.one_of(st.lists(choice_rules(2), max_size=3), json_scalars),
        "Default": st.sampled_from(STATE_NAMES + ["Z", 5]),
        "Seconds": st.one_of(st.integers(-1, 5), st.floats(0, 2), st.text(max_size=2)),
        "SecondsPath": any_path,
        "Timestamp": st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01", "soon", "2024-01-01T00:00:00z"]),
        "TimestampPath": any_path,
        "Error": st.one_of(st.text(max_size=5), st.integers()),
        "Cause": st.text(max_size=5),
        "ErrorPath": st.one_of(any_path, intrinsic_calls),
        "CausePath": st.one_of(any_path, intrinsic_calls),
        "ItemsPath": any_path,
        "ItemSelector": template(expression),
        "MaxConcurrency": st.one_of(st.integers(-1, 5), st.just("2")),
        "ToleratedFailurePercentage": st.one_of(st.integers(-1, 101), st.floats(0, 100)),
        "ToleratedFailureCount": st.integers(-1, 3),
        "ItemBatcher": st.one_of(
            st.fixed_dictionaries({"MaxItemsPerBatch": st.integers(0, 3)}), json_scalars
        ),
        "Label": st.text(max_size=45),
        "ItemReader": st.just({"Resource": "arn:aws:states:::s3:getObject"}),
        "QueryLanguage": st.sampled_from(["JSONPath", "JSONata", 5]),
        "Unknown": json_scalars,
    }
    if depth > 0:
        fields["Branches"] = st.one_of(st.lists(sub_machines(depth), max_size=2), json_scalars)
        fields["ItemProcessor"] = st.one_of(sub_machines(depth), json_scalars)
        fields["Iterator"] = sub_machines(depth)
    return fields


def states(depth):
    fields = state_fields(depth)
    keys = sorted(fields)

    @st.composite
    def build(draw):
        state = {"Type": draw(st.sampled_from(STATE_TYPES))}
        for key in draw(st.lists(st.sampled_from(keys), max_size=6, unique=True)):
            state[key] = draw(fields[key])
        return state

    return build()


def machines(depth=2, top_level=True):
    @st.composite
    def build(draw):
        names = draw(st.lists(st.sampled_from(STATE_NAMES), min_size=0, max_size=4, unique=True))
        definition = {
            "States": {name: draw(st.one_of(states(depth), st.none(), st.just("Pass"))) for name in names}
        }
        if draw(st.booleans()) or not names:
            definition["StartAt"] = draw(st.sampled_from(STATE_NAMES + ["Z", 5]))
        else:
            definition["StartAt"] = names[0]
        extras = {"Comment": st.text(max_size=3), "QueryLanguage": st.sampled_from(["JSONPath", "JSONata"])}
        if top_level:
            extras.update({"TimeoutSeconds": st.integers(-1, 10), "Version": st.sampled_from(["1.0", "2"])})
        for key in draw(st.lists(st.sampled_from(sorted(extras)), max_size=2, unique=True)):
            definition[key] = draw(extras[key])
        if draw(st.integers(0, 9)) == 0:
            definition.pop("States")
        return definition

    return build()


def _state_objects(definition):
    """Every state object in a definition, sub-machines included (tolerating earlier mutations)."""
    found = []
    states = definition.get("States") if isinstance(definition, dict) else None
    for state in states.values() if isinstance(states, dict) else ():
        if not isinstance(state, dict):
            continue
        found.append(state)
        branches = state.get("Branches")
        for branch in branches if isinstance(branches, list) else ():
            found.extend(_state_objects(branch))
        found.extend(_state_objects(state.get("ItemProcessor")))
    return found


@st.composite
def mutated_machines(draw):
    """A valid machine (see runnable_machines below) with one to three fields changed: near-valid ASL."""
    definition = copy.deepcopy(draw(runnable_machines()))
    fields = state_fields(1)
    for _ in range(draw(st.integers(1, 3))):
        candidates = _state_objects(definition)
        if not candidates:
            break
        state = draw(st.sampled_from(candidates))
        action = draw(st.integers(0, 2))
        if action == 0 and len(state) > 1:
            state.pop(draw(st.sampled_from(sorted(k for k in state if k != "Type"))), None)
        elif action == 1:
            state["Type"] = draw(st.sampled_from(STATE_TYPES))
        else:
            key = draw(st.sampled_from(sorted(fields)))
            state[key] = draw(fields[key])
    return definition


near_valid_machines = st.one_of(machines(), mutated_machines(), st.deferred(lambda: runnable_machines()))


@SETTINGS
@given(near_valid_machines)
def test_random_definitions_compile_or_raise_definition_error(definition):
    before = json.dumps(definition, sort_keys=True, default=str)
    try:
        sm = StateMachine.from_definition(definition)
    except DefinitionError as error:
        assert error.problems, "a DefinitionError must list at least one problem"
        for problem in error.problems:
            assert isinstance(problem.where, str) and problem.where
            assert isinstance(problem.message, str) and problem.message
    else:
        assert sm.machine.start_at in sm.machine.states
    # compiling never changes the caller's definition
    assert json.dumps(definition, sort_keys=True, default=str) == before


@SETTINGS
@given(near_valid_machines)
def test_random_definitions_round_trip_through_json_text(definition):
    text = json.dumps(definition)
    outcomes = []
    for source in (definition, text):
        try:
            StateMachine.from_definition(source)
            outcomes.append(None)
        except DefinitionError as error:
            outcomes.append(sorted(p.where for p in error.problems))
    # JSON text and the dict it encodes are judged the same way
    assert outcomes[0] == outcomes[1]


# ---------------------------------------------------------------- (2) runnable definitions

RUN_NAMES = ["S0", "S1", "S2", "S3", "S4"]

# definite paths that may or may not be present in the input, variables and the context
definite_run_paths = st.one_of(
    st.just("$"),
    st.builds(lambda k: f"$.{k}", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k, i: f"$.{k}[{i}]", st.sampled_from(FIELD_NAMES), st.integers(0, 2)),
    st.sampled_from(["$$.Execution.Input", "$$.State.Name", "$v1", "$v2"]),
)
run_paths = st.one_of(
    definite_run_paths,
    st.builds(lambda k: f"$.{k}[*]", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k: f"$..{k}", st.sampled_from(FIELD_NAMES)),
)
result_paths = st.one_of(
    st.just("$"),
    st.builds(lambda k: f"$.{k}", st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k, j: f"$.{k}.{j}", st.sampled_from(FIELD_NAMES), st.sampled_from(FIELD_NAMES)),
    st.builds(lambda k, i: f"$.{k}[{i}]", st.sampled_from(FIELD_NAMES), st.integers(0, 2)),
    st.none(),
)
# argument counts each function accepts, so that generated calls parse
ARITY = {
    "States.Format": (1, 3),
    "States.StringToJson": (1, 1),
    "States.JsonToString": (1, 1),
    "States.Array": (0, 3),
    "States.ArrayPartition": (2, 2),
    "States.ArrayContains": (2, 2),
    "States.ArrayRange": (3, 3),
    "States.ArrayGetItem": (2, 2),
    "States.ArrayLength": (1, 1),
    "States.ArrayUnique": (1, 1),
    "States.Base64Encode": (1, 1),
    "States.Base64Decode": (1, 1),
    "States.Hash": (2, 2),
    "States.JsonMerge": (3, 3),
    "States.MathRandom": (2, 3),
    "States.MathAdd": (2, 2),
    "States.StringSplit": (2, 2),
    "States.UUID": (0, 0),
}
FIXED_ARGS = {
    ("States.Format", 0): st.sampled_from(["'{}'", "'x'", "'{} and {}'", "'\\{\\}'"]),
    ("States.Hash", 1): st.sampled_from(["'MD5'", "'SHA-256'"]),
    ("States.JsonMerge", 2): st.just("false"),
}


@st.composite
def run_intrinsics(draw, depth=1):
    name = draw(st.sampled_from(sorted(ARITY)))
    low, high = ARITY[name]
    args = []
    for index in range(draw(st.integers(low, high))):
        fixed = FIXED_ARGS.get((name, index))
        if fixed is not None:
            args.append(draw(fixed))
        elif depth > 0 and draw(st.integers(0, 4)) == 0:
            args.append(draw(run_intrinsics(depth - 1)))
        else:
            args.append(draw(st.one_of(intrinsic_literals, run_paths)))
    return _call(name, args)


run_expression = st.one_of(run_paths, run_intrinsics())


def _template_of(plain_keys, dollar_keys):
    return st.builds(
        lambda plain, dollar: {**plain, **dollar},
        st.dictionaries(st.sampled_from(plain_keys), json_scalars, max_size=2),
        st.dictionaries(st.sampled_from(dollar_keys), run_expression, max_size=2),
    )


run_template = _template_of(["a", "n"], ["b.$", "c.$", "items.$"])
# Plain and '.$' names differ: a name given both ways is a definition error (ASL spec), not a run.
run_assign = _template_of(["v1", "v2"], ["v3.$", "v4.$"])


def _run_rule(draw, depth):
    kind = draw(st.integers(0, 3 if depth > 0 else 0))
    if kind == 1:
        return {"And": [_run_rule(draw, depth - 1) for _ in range(draw(st.integers(1, 2)))]}
    if kind == 2:
        return {"Or": [_run_rule(draw, depth - 1) for _ in range(draw(st.integers(1, 2)))]}
    if kind == 3:
        return {"Not": _run_rule(draw, depth - 1)}
    operator = draw(
        st.sampled_from(
            [
                "StringEquals",
                "StringMatches",
                "NumericEquals",
                "NumericLessThan",
                "BooleanEquals",
                "TimestampLessThan",
                "IsNull",
                "IsPresent",
                "IsString",
                "IsNumeric",
                "NumericEqualsPath",
                "StringLessThanPath",
            ]
        )
    )
    operand = {
        "StringEquals": st.text(max_size=3),
        "StringMatches": st.sampled_from(["*", "a*", "*\\**", "x"]),
        "NumericEquals": st.integers(-2, 2),
        "NumericLessThan": st.floats(-3, 3),
        "BooleanEquals": st.booleans(),
        "TimestampLessThan": st.just("2030-01-01T00:00:00Z"),
        "NumericEqualsPath": run_paths,
        "StringLessThanPath": run_paths,
    }.get(operator, st.booleans())
    # IsPresent may look at anything; other tests must read a path that can be missing too
    return {"Variable": draw(run_paths), operator: draw(operand)}


def _reachable_only(start, built):
    """Drop the states nothing leads to (smq rightly rejects unreachable states)."""
    seen, todo = {start}, [start]
    while todo:
        state = built[todo.pop()]
        targets = [state.get("Next"), state.get("Default")]
        targets += [rule["Next"] for rule in state.get("Choices", [])]
        targets += [catcher["Next"] for catcher in state.get("Catch", [])]
        for target in targets:
            if target is not None and target not in seen:
                seen.add(target)
                todo.append(target)
    return {name: state for name, state in built.items() if name in seen}


@st.composite
def runnable_machines(draw, depth=2, names=tuple(RUN_NAMES)):
    count = draw(st.integers(1, len(names)))
    chosen = list(names[:count])
    built = {}
    for index, name in enumerate(chosen):
        later = chosen[index + 1 :]  # transitions only go forward: no loops
        kinds = ["Pass", "Succeed", "Fail", "Wait", "Choice"] + (["Map", "Parallel"] if depth > 0 else [])
        kind = draw(st.sampled_from(kinds))
        state = {"Type": kind}
        if kind in ("Pass", "Wait", "Map", "Parallel"):
            if later and draw(st.booleans()):
                state["Next"] = draw(st.sampled_from(later))
            else:
                state["End"] = True
            if draw(st.booleans()):
                state["InputPath"] = draw(st.one_of(run_paths, st.none()))
            if draw(st.booleans()):
                state["OutputPath"] = draw(st.one_of(run_paths, st.none()))
            if draw(st.booleans()):
                state["Assign"] = draw(run_assign)
        if kind == "Pass":
            choice = draw(st.integers(0, 2))
            if choice == 1:
                state["Result"] = draw(json_values)
            elif choice == 2:
                state["Parameters"] = draw(run_template)
            if draw(st.booleans()):
                state["ResultPath"] = draw(result_paths)
        elif kind == "Wait":
            state["Seconds"] = 0
        elif kind == "Fail":
            if draw(st.booleans()):
                state["Error"] = draw(st.text(max_size=5))
            else:
                state["ErrorPath"] = draw(st.one_of(definite_run_paths, run_intrinsics()))
            if draw(st.booleans()):
                state["Cause"] = draw(st.text(max_size=5))
        elif kind == "Choice":
            targets = later or None
            if targets is None:
                # nowhere to go forward: a Choice that always falls to a terminal Default is impossible,
                # so make it a Succeed instead
                built[name] = {"Type": "Succeed"}
                continue
            state["Choices"] = [
                {**_run_rule(draw, 2), "Next": draw(st.sampled_from(targets))}
                for _ in range(draw(st.integers(1, 3)))
            ]
            if draw(st.booleans()):
                state["Default"] = draw(st.sampled_from(targets))
            if draw(st.booleans()):
                state["InputPath"] = draw(run_paths)
        elif kind in ("Map", "Parallel"):
            if draw(st.booleans()):
                state["ResultPath"] = draw(result_paths)
            if draw(st.booleans()):
                state["ResultSelector"] = draw(run_template)
            if draw(st.booleans()):
                state["Catch"] = [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "Next": later[0] if later else name,
                        "ResultPath": "$.err",
                    }
                ]
                if not later:
                    state.pop("Catch")
            if draw(st.booleans()):
                state["Retry"] = [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "MaxAttempts": draw(st.integers(0, 2)),
                        "IntervalSeconds": 1,
                    }
                ]
            sub = runnable_machines(depth - 1, tuple(f"{n}_{name}" for n in RUN_NAMES[:3]))
            if kind == "Map":
                state["ItemProcessor"] = draw(sub)
                if draw(st.booleans()):
                    state["ItemsPath"] = draw(st.one_of(definite_run_paths, st.just("$.items")))
                if draw(st.booleans()):
                    state["ItemSelector"] = draw(
                        st.one_of(
                            run_template, st.just({"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"})
                        )
                    )
                if draw(st.booleans()):
                    state["ToleratedFailurePercentage"] = draw(st.integers(0, 100))
                if draw(st.booleans()):
                    state["MaxConcurrency"] = draw(st.integers(0, 3))
            else:
                state["Branches"] = draw(st.lists(sub, min_size=1, max_size=2))
        built[name] = state
    definition = {"StartAt": chosen[0], "States": _reachable_only(chosen[0], built)}
    if depth == 2 and draw(st.integers(0, 4)) == 0:
        definition["TimeoutSeconds"] = draw(st.integers(1, 5))
    return definition


run_inputs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "items": st.lists(json_values, max_size=3),
            "a": json_values,
            "n": st.one_of(st.integers(-3, 3), st.floats(-3, 3)),
            "s": st.text(max_size=4),
            "t": st.sampled_from(["2024-01-01T00:00:00Z", "not a time"]),
            "x": st.booleans(),
        },
    ),
)


@SETTINGS
@given(runnable_machines(), run_inputs)
def test_compiled_definitions_run_to_an_end_status(definition, execution_input):
    # every generated machine is valid ASL, so it must compile
    sm = StateMachine.from_definition(definition)
    clock = VirtualClock(1_700_000_000.0)
    before = json.dumps(execution_input, sort_keys=True)
    result = sm.run(execution_input, clock=clock.now, sleep=clock.sleep)
    assert isinstance(result, ExecutionResult)
    assert result.status in END_STATUSES, (result.status, result.error, result.cause)
    if result.status == "SUCCEEDED":
        json.dumps(result.output)  # the output is JSON
        assert result.error is None
    else:
        assert result.error is None or isinstance(result.error, str)
    # the caller's input is never modified
    assert json.dumps(execution_input, sort_keys=True) == before


# ---------------------------------------------------------------- (3) the parsers

PATH_ALPHABET = "$.[]*?@()'\"\\:,-_ab01 <>=!&|"
INTRINSIC_ALPHABET = "States.FormatArry()',{}\\ $.[]0123456789-+eE truefalsnul"


@SETTINGS
@given(st.one_of(st.text(max_size=30), st.text(alphabet=PATH_ALPHABET, max_size=30).map(lambda s: "$" + s)))
def test_compile_path_raises_only_path_syntax_error(text):
    try:
        path = compile_path(text)
    except PathSyntaxError:
        return
    assert path.text == text
    assert path.definite == (path.keys is not None)


@SETTINGS
@given(
    st.text(alphabet=PATH_ALPHABET.replace("?", "").replace("@", ""), max_size=20).map(lambda s: "$" + s),
    json_values,
)
def test_reading_a_compiled_path_raises_only_path_not_found(text, data):
    try:
        path = compile_path(text)
    except PathSyntaxError:
        return
    try:
        value = Scope(data, {"v": data}, lambda: {"Execution": {}}).read(path)
    except PathNotFound:
        assert path.definite  # indefinite paths yield a list instead
        return
    if not path.definite:
        assert isinstance(value, list)


@SETTINGS
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet=INTRINSIC_ALPHABET, max_size=40).map(lambda s: "States." + s),
        st.builds(
            _call,
            st.sampled_from(INTRINSIC_NAMES),
            st.lists(st.text(alphabet=INTRINSIC_ALPHABET, max_size=8), max_size=4),
        ),
        intrinsic_calls,
    )
)
def test_parse_intrinsic_raises_only_intrinsic_syntax_error(text):
    try:
        call = parse_intrinsic(text)
    except IntrinsicSyntaxError:
        return
    assert call.name in INTRINSIC_NAMES
    assert call.text.strip() == text.strip()


@SETTINGS
@given(intrinsic_calls, json_values)
def test_evaluating_a_parsed_intrinsic_raises_only_states_error(text, data):
    try:
        call = parse_intrinsic(text)
    except IntrinsicSyntaxError:
        return
    try:
        call.evaluate(Scope(data, {"v1": data, "v2": [1, 2]}, lambda: {"Execution": {"Id": "x"}}))
    except StatesError as error:
        assert error.error in ("States.IntrinsicFailure", "States.Runtime")


# ---------------------------------------------------------------- (4) definition text

yaml_like = st.lists(
    st.one_of(
        st.sampled_from(
            ["StartAt: A", "States:", "  A:", "    Type: Pass", "    End: true", "- x", "  - 1", "{", "}"]
        ),
        st.text(alphabet=string.ascii_letters + string.digits + ":-[]{}'\" \t#&*!|>%@`,", max_size=15),
    ),
    max_size=6,
).map("\n".join)


@SETTINGS
@given(st.one_of(st.text(max_size=60), yaml_like, machines().map(json.dumps)))
def test_load_definition_returns_a_dict_or_raises_definition_error(text):
    try:
        loaded = load_definition(text)
    except DefinitionError as error:
        assert [p.where for p in error.problems] == ["definition"]
        return
    assert isinstance(loaded, dict)


# ---------------------------------------------------------------- crashes found by fuzzing


def test_filter_path_over_null_data_does_not_crash_the_run():
    sm = StateMachine.from_definition(
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.a[?(@.b > 1)]", "End": True}}}
    )
    clock = VirtualClock(1_700_000_000.0)
    result = sm.run({"a": [{"b": None}, {"b": 2}]}, clock=clock.now, sleep=clock.sleep)
    assert result.status in END_STATUSES
