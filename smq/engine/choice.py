"""Choice rules compiled to predicates over a Scope.

AWS semantics: a type mismatch makes a comparison false; a missing `Variable` fails the execution
with States.Runtime (except under `IsPresent`); `*Path` operators compare against another path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from smq.engine import errors
from smq.engine.errors import SmqError, StatesError
from smq.engine.paths import Path, PathNotFound, Scope, compile_path
from smq.engine.timestamps import parse_timestamp

Predicate = Callable[[Scope], bool]

_COMPARISON_KINDS = {"String": "string", "Numeric": "number", "Boolean": "boolean", "Timestamp": "timestamp"}
_RELATIONS = ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")

COMPARISON_OPERATORS: dict[str, tuple[str, str]] = {}
for _prefix, _kind in _COMPARISON_KINDS.items():
    for _relation in _RELATIONS if _prefix != "Boolean" else ("Equals",):
        COMPARISON_OPERATORS[_prefix + _relation] = (_kind, _relation)
COMPARISON_OPERATORS["StringMatches"] = ("string", "Matches")
PATH_OPERATORS = {
    name + "Path": spec for name, spec in COMPARISON_OPERATORS.items() if name != "StringMatches"
}
TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")
ALL_OPERATORS = frozenset(COMPARISON_OPERATORS) | frozenset(PATH_OPERATORS) | frozenset(TYPE_TESTS)
COMBINATORS = ("And", "Or", "Not")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _normalize(kind: str, value: Any) -> Any:
    """The comparable form of `value` for `kind`, or _MISMATCH."""
    if kind == "string":
        return value if isinstance(value, str) else _MISMATCH
    if kind == "number":
        return value if _is_number(value) else _MISMATCH
    if kind == "boolean":
        return value if isinstance(value, bool) else _MISMATCH
    stamp = parse_timestamp(value)
    return stamp if stamp is not None else _MISMATCH


_MISMATCH = object()


def _relate(relation: str, left: Any, right: Any) -> bool:
    if relation == "Equals":
        return bool(left == right)
    if relation == "LessThan":
        return bool(left < right)
    if relation == "GreaterThan":
        return bool(left > right)
    if relation == "LessThanEquals":
        return bool(left <= right)
    return bool(left >= right)


class PatternError(SmqError, ValueError):
    """A StringMatches pattern the spec does not allow (an open escape)."""


def string_matches(pattern: str) -> Callable[[str], bool]:
    """`*` matches any run of characters; `\\*` is a literal star and `\\\\` a literal backslash."""
    if _open_escape(pattern):
        raise PatternError(f"StringMatches pattern {pattern!r} ends in an open escape (a lone backslash)")
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        i += 1
    regex = re.compile("".join(parts), re.DOTALL)
    return lambda text: regex.fullmatch(text) is not None


def _open_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


def _read_variable(path: Path, scope: Scope) -> Any:
    try:
        return scope.read(path)
    except PathNotFound:
        raise StatesError(
            errors.RUNTIME, f"Invalid path '{path.text}': the choice state's Variable could not be found"
        ) from None


def compile_rule(rule: dict[str, Any]) -> Predicate:
    """Compile one (validated) rule: a comparison, a type test, or And/Or/Not of rules."""
    if "And" in rule:
        parts = [compile_rule(r) for r in rule["And"]]
        return lambda scope: all(p(scope) for p in parts)
    if "Or" in rule:
        parts = [compile_rule(r) for r in rule["Or"]]
        return lambda scope: any(p(scope) for p in parts)
    if "Not" in rule:
        inner = compile_rule(rule["Not"])
        return lambda scope: not inner(scope)
    variable = compile_path(rule["Variable"])
    operator = next(key for key in rule if key in ALL_OPERATORS)
    operand = rule[operator]

    if operator in TYPE_TESTS:
        return _type_test(operator, bool(operand), variable)

    if operator in PATH_OPERATORS:
        kind, relation = PATH_OPERATORS[operator]
        other = compile_path(operand)

        def compare_path(scope: Scope) -> bool:
            left = _normalize(kind, _read_variable(variable, scope))
            try:
                right_raw = scope.read(other)
            except PathNotFound:
                raise StatesError(errors.RUNTIME, f"Invalid path '{other.text}' in {operator}") from None
            right = _normalize(kind, right_raw)
            if left is _MISMATCH or right is _MISMATCH:
                return False
            return _relate(relation, left, right)

        return compare_path

    kind, relation = COMPARISON_OPERATORS[operator]
    if relation == "Matches":
        matches = string_matches(operand)

        def compare_match(scope: Scope) -> bool:
            value = _read_variable(variable, scope)
            return isinstance(value, str) and matches(value)

        return compare_match

    right = _normalize(kind, operand)

    def compare(scope: Scope) -> bool:
        left = _normalize(kind, _read_variable(variable, scope))
        if left is _MISMATCH:
            return False
        return _relate(relation, left, right)

    return compare


def _type_test(operator: str, expected: bool, variable: Path) -> Predicate:
    if operator == "IsPresent":

        def is_present(scope: Scope) -> bool:
            try:
                scope.read(variable)
            except PathNotFound:
                return not expected
            return expected

        return is_present

    checks: dict[str, Callable[[Any], bool]] = {
        "IsNull": lambda v: v is None,
        "IsNumeric": _is_number,
        "IsString": lambda v: isinstance(v, str),
        "IsBoolean": lambda v: isinstance(v, bool),
        "IsTimestamp": lambda v: parse_timestamp(v) is not None,
    }
    check = checks[operator]

    def type_test(scope: Scope) -> bool:
        return check(_read_variable(variable, scope)) == expected

    return type_test


def constant(value: bool) -> Predicate:
    """A JSONata rule whose Condition is the literal true or false."""
    return lambda scope: value
