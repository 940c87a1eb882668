"""Payload templates: Parameters, ItemSelector, ResultSelector, Assign and the Pass `Result`.

A template is JSON in which a key ending in `.$` takes its value from a path or an intrinsic call.
It is compiled once into a tree of small closures; evaluating it builds a fresh value each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smq.engine import errors
from smq.engine.errors import SmqError, StatesError
from smq.engine.intrinsics import IntrinsicSyntaxError, is_intrinsic_text, parse_intrinsic
from smq.engine.paths import PathNotFound, PathSyntaxError, Scope, compile_path

Template = Callable[[Scope], Any]


class TemplateError(SmqError):
    """Template fields that cannot compile: every (location, message) found, not only the first."""

    def __init__(self, where: str, message: str, more: list[tuple[str, str]] | None = None):
        self.where = where
        self.message = message
        self.problems = [(where, message), *(more or [])]
        super().__init__("; ".join(f"{w}: {m}" for w, m in self.problems))


def compile_template(value: Any, where: str = "") -> Template:
    """Compile a template; raise TemplateError listing every bad path, call or duplicate field."""
    problems: list[tuple[str, str]] = []
    template = _compile(value, where, problems)
    if problems:
        raise TemplateError(*problems[0], more=problems[1:])
    return template


def _compile(value: Any, where: str, problems: list[tuple[str, str]]) -> Template:
    if isinstance(value, dict):
        return _compile_object(value, where, problems)
    if isinstance(value, list):
        items = [_compile(item, f"{where}[{i}]", problems) for i, item in enumerate(value)]
        if all(getattr(item, "_constant", False) for item in items):
            return constant_template(value)
        return lambda scope: [item(scope) for item in items]
    return constant_template(value)


def constant_template(value: Any) -> Template:
    """A literal part of a template (JSONPath or JSONata): shared, since nothing mutates values."""

    def template(scope: Scope) -> Any:
        return value

    template._constant = True  # type: ignore[attr-defined]
    return template


def _compile_object(obj: dict[str, Any], where: str, problems: list[tuple[str, str]]) -> Template:
    fields: list[tuple[str, Template]] = []
    constant = True
    seen: set[str] = set()
    for key, value in obj.items():
        location = f"{where}.{key}" if where else key
        name = key[:-2] if key.endswith(".$") and len(key) > 2 else key
        if name in seen:
            problems.append((location, f"the field {name!r} is given twice (with and without '.$')"))
            continue
        seen.add(name)
        if name != key:
            try:
                fields.append((name, compile_expression(value, location)))
            except TemplateError as exc:
                problems.extend(exc.problems)
            constant = False
        else:
            compiled = _compile(value, location, problems)
            constant = constant and getattr(compiled, "_constant", False)
            fields.append((key, compiled))
    if constant:
        return constant_template(obj)

    def template(scope: Scope) -> dict[str, Any]:
        return {key: field(scope) for key, field in fields}

    return template


def compile_expression(text: Any, where: str) -> Template:
    """The value of a `.$` field: a path or an intrinsic call."""
    if not isinstance(text, str):
        raise TemplateError(where, f"the value of a field ending in '.$' must be a string, got {text!r}")
    if is_intrinsic_text(text):
        try:
            call = parse_intrinsic(text)
        except IntrinsicSyntaxError as exc:
            raise TemplateError(where, str(exc)) from None
        return call.evaluate
    try:
        path = compile_path(text)
    except PathSyntaxError as exc:
        raise TemplateError(where, f"{exc} (a '.$' field takes a path or an intrinsic function)") from None

    def read(scope: Scope) -> Any:
        try:
            return scope.read(path)
        except PathNotFound:
            raise StatesError(
                errors.RUNTIME,
                f"The JSONPath '{text}' specified for the field '{where}' could not be found in the input",
            ) from None

    return read
