"""Payload templates: Parameters, ItemSelector, ResultSelector, Assign and the Pass `Result`.

A template is JSON in which a key ending in `.$` takes its value from a path or an intrinsic call.
It is compiled once into a tree of small closures; evaluating it builds a fresh value each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smq.engine import errors
from smq.engine.errors import StatesError
from smq.engine.intrinsics import IntrinsicSyntaxError, is_intrinsic_text, parse_intrinsic
from smq.engine.paths import PathNotFound, PathSyntaxError, Scope, compile_path

Template = Callable[[Scope], Any]


class TemplateError(Exception):
    """A template field that cannot compile; `where` is the dotted location inside the template."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


def compile_template(value: Any, where: str = "") -> Template:
    """Compile a template; raise TemplateError (with the field's location) on a bad path or call."""
    if isinstance(value, dict):
        return _compile_object(value, where)
    if isinstance(value, list):
        items = [compile_template(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if all(getattr(item, "_constant", False) for item in items):
            return _constant(value)
        return lambda scope: [item(scope) for item in items]
    return _constant(value)


def _constant(value: Any) -> Template:
    def template(scope: Scope) -> Any:
        return value

    template._constant = True  # type: ignore[attr-defined]
    return template


def _compile_object(obj: dict[str, Any], where: str) -> Template:
    fields: list[tuple[str, Template]] = []
    constant = True
    for key, value in obj.items():
        location = f"{where}.{key}" if where else key
        if key.endswith(".$") and len(key) > 2:
            fields.append((key[:-2], compile_expression(value, location)))
            constant = False
        else:
            compiled = compile_template(value, location)
            constant = constant and getattr(compiled, "_constant", False)
            fields.append((key, compiled))
    if constant:
        return _constant(obj)

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
