"""JSONata for JSONata states: expressions compiled once with the definition, evaluated with AWS's rules.

A field value `"{% expr %}"` is a JSONata expression; inside `Output`, `Arguments`, `Assign` and
`ItemSelector` every such string (in objects and arrays too) is one, and everything else is literal.
An expression sees `$states` (`input`, `result` where the state has one, `errorOutput` in a catcher,
`context`) and the workflow variables as `$name`; the input document (`$`) is empty, as in AWS.

The engine is jlens (a JSONata implementation in Rust, thread-safe, with evaluation limits); this
module is the only place that calls it. Step Functions' own functions come from
`smq.engine.jsonata_functions`. Failures are States.QueryEvaluationError, with AWS's cause texts:
an error during evaluation, an expression that returns nothing (undefined), or (for the callers that
check types) a value of the wrong type.

Only what an expression reads is handed over: jlens says at compile time which variables and which
parts of `$states` it reads, so a large input or context is not converted for an expression that
does not look at it, and the context object is not even built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jlens

from smq.engine import errors
from smq.engine.errors import SmqError, StatesError
from smq.engine.jsonata_functions import FUNCTIONS, FunctionError
from smq.engine.jsontext import compact
from smq.engine.paths import MISSING, Scope
from smq.engine.templates import constant_template

OPEN, CLOSE = "{%", "%}"
# Evaluation limits: a runaway expression fails its state instead of hanging or exhausting a worker.
TIMEOUT_SECONDS = 10.0
MAX_DEPTH = 500
MAX_ARRAY_LENGTH = 1_000_000
MAX_SIZE = 64 * 1024 * 1024  # bytes of a string or of the result's JSON: far above any payload limit
LIMITS: dict[str, Any] = {
    "timeout": TIMEOUT_SECONDS,
    "max_depth": MAX_DEPTH,
    "max_array_length": MAX_ARRAY_LENGTH,
    "max_string_length": MAX_SIZE,
    "max_result_size": MAX_SIZE,
}
STATES_FIELDS = ("input", "result", "errorOutput", "context")

Template = Callable[[Scope], Any]


class JsonataSyntaxError(SmqError):
    """The text between `{%` and `%}` is not a JSONata expression."""


def is_expression(value: Any) -> bool:
    """A string wrapped in `{% %}`: a JSONata expression in a JSONata state."""
    return isinstance(value, str) and value.startswith(OPEN) and value.endswith(CLOSE) and len(value) >= 4


def _text_of(value: str) -> str:
    return value[len(OPEN) : -len(CLOSE)].strip()


def _new_engine(text: str) -> jlens.Expression:
    try:
        engine = jlens.Expression(text)
    except jlens.JlensError as exc:
        position = getattr(exc, "position", None)
        at = f" at position {position + 1}" if isinstance(position, int) else ""
        raise JsonataSyntaxError(f"JSONata syntax error{at}: {exc} ({exc.code}) in {text!r}") from None
    except (ValueError, TypeError) as exc:
        raise JsonataSyntaxError(f"JSONata syntax error: {exc} in {text!r}") from None
    for name, (function, signature) in FUNCTIONS.items():
        engine.register_function(name, function, signature)
    return engine


class Expression:
    """One compiled `{% ... %}` of one field of one state."""

    __slots__ = ("text", "state", "field", "_engine", "_variables", "_states", "_every")

    def __init__(self, source: str, state: str, field: str):
        """`source` with or without its `{% %}`; `state` and `field` (AWS style, `Output/result`)
        name it in error causes."""
        self.text = _text_of(source) if is_expression(source) else source.strip()
        self.state = state
        self.field = field
        self._engine = _new_engine(self.text)
        reads = self._engine.reads()
        self._every = bool(reads.get("everyBinding"))
        bindings: dict[str, Any] = reads.get("bindings", {})
        states = bindings.pop("states", None)
        self._variables: tuple[tuple[str, Any], ...] = tuple(bindings.items())
        if states is None:
            self._states: tuple[tuple[str, Any], ...] | None = None
        elif isinstance(states, dict):
            self._states = tuple((key, read) for key, read in states.items() if key in STATES_FIELDS)
        else:
            self._states = tuple((key, True) for key in STATES_FIELDS)

    def __repr__(self) -> str:
        return f"Expression({self.text!r} at {self.state}.{self.field})"

    def fail(self, message: str) -> StatesError:
        """States.QueryEvaluationError about this expression (AWS's cause wording)."""
        return StatesError(
            errors.QUERY_EVALUATION_ERROR,
            f"An error occurred while executing the state '{self.state}'. The JSONata expression "
            f"'{self.text}' specified for the field '{self.field}' {message}",
        )

    def bindings(self, scope: Scope) -> dict[str, Any]:
        """What the expression reads of the variables and of `$states`, cut down to that."""
        variables = scope.variables
        found: dict[str, Any] = {}
        if self._every:
            found.update(variables)
            found["states"] = {
                key: value for key in STATES_FIELDS if (value := _states_value(scope, key)) is not MISSING
            }
            return found
        for name, read in self._variables:
            if name in variables:
                found[name] = _cut(variables[name], read)
        if self._states is not None:
            states: dict[str, Any] = {}
            for key, read in self._states:
                value = _states_value(scope, key)
                if value is not MISSING:
                    states[key] = _cut(value, read)
            found["states"] = states
        return found

    def evaluate(self, scope: Scope) -> Any:
        """The value, or States.QueryEvaluationError (also when it returns nothing)."""
        bindings = self.bindings(scope)
        try:
            value = self._engine.evaluate(None, bindings, **LIMITS)
            if value is None and self._engine.evaluate_json(None, bindings, **LIMITS) is None:
                raise self.fail("returned nothing (undefined).")
        except jlens.JlensError as exc:
            raise self.fail(f"threw an error during evaluation. {exc.code}: {exc}") from None
        except FunctionError as exc:
            raise self.fail(f"threw an error during evaluation. {exc.code}: {exc.message}") from None
        except StatesError:
            raise
        except Exception as exc:  # a value jlens cannot take (e.g. an integer beyond 64 bits)
            raise self.fail(f"threw an error during evaluation. {type(exc).__name__}: {exc}") from None
        return value  # jlens refuses infinities (D1001) and gives NaN as null: always JSON


def _states_value(scope: Scope, key: str) -> Any:
    if key == "input":
        return scope.data
    if key == "result":
        return scope.result
    if key == "errorOutput":
        return scope.error_output
    return scope.context


def _cut(value: Any, read: Any) -> Any:
    """`value` without the fields of its top object that `read` (a jlens Read: True, or the fields
    read) leaves out. One level only: deeper cutting costs about what converting the rest would."""
    if read is True or not read or type(value) is not dict:
        return value
    return {key: value[key] for key in read if key in value}


def type_name(value: Any) -> str:
    """The JSON type of a value, as AWS's causes name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def unexpected_type(expression: Expression, expected: str, value: Any) -> StatesError:
    """AWS's cause for an expression whose value has the wrong JSON type."""
    return expression.fail(
        f"returned an unexpected result type. Expected '{expected}', but was '{type_name(value)}' "
        f"for value: {compact(value)}"
    )


# ------------------------------------------------------------------------------------------ templates


class TemplateError(SmqError):
    """Template strings that do not compile: every (field path, message) found."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {message}" for where, message in problems))


def compile_template(value: Any, state: str, field: str) -> Template:
    """A JSON value in which every `{% %}` string is an expression, compiled once.

    `field` is AWS's name for where it is (`Output`, `Arguments`, `Assign`); nested places add
    `/key` or `/index`. Raises TemplateError listing every expression that does not compile."""
    problems: list[tuple[str, str]] = []
    template = _compile(value, state, field, problems)
    if problems:
        raise TemplateError(problems)
    return template


def compile_value(value: Any, state: str, field: str) -> Expression | None:
    """An expression when `value` is one (`{% %}`), else None (a literal); raises JsonataSyntaxError."""
    return Expression(value, state, field) if is_expression(value) else None


def _compile(value: Any, state: str, field: str, problems: list[tuple[str, str]]) -> Template:
    if is_expression(value):
        try:
            return Expression(value, state, field).evaluate
        except JsonataSyntaxError as exc:
            problems.append((field, str(exc)))
            return constant_template(None)
    if isinstance(value, dict):
        fields = [(key, _compile(item, state, f"{field}/{key}", problems)) for key, item in value.items()]
        if all(getattr(template, "_constant", False) for _, template in fields):
            return constant_template(value)
        return lambda scope: {key: template(scope) for key, template in fields}
    if isinstance(value, list):
        items = [_compile(item, state, f"{field}/{index}", problems) for index, item in enumerate(value)]
        if all(getattr(template, "_constant", False) for template in items):
            return constant_template(value)
        return lambda scope: [template(scope) for template in items]
    return constant_template(value)


def condition_predicate(expression: Expression) -> Callable[[Scope], bool]:
    """A JSONata Choice rule's Condition: the expression must give true or false."""

    def condition(scope: Scope) -> bool:
        value = expression.evaluate(scope)
        if not isinstance(value, bool):
            raise unexpected_type(expression, "boolean", value)
        return value

    return condition
