"""The 18 intrinsic functions (`States.Format(...)` and friends), parsed once into a call tree.

Arguments are string literals in single quotes (escape `'`, `{`, `}` and `\\` with a backslash),
numbers, `true`/`false`/`null`, paths (`$.x`, `$$.Execution.Id`, `$var`) and nested calls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smq.engine import errors
from smq.engine.errors import SmqError, StatesError
from smq.engine.jsontext import compact
from smq.engine.paths import Path, PathNotFound, PathSyntaxError, Scope, compile_path


class IntrinsicSyntaxError(SmqError):
    """The text is not a well-formed intrinsic function call."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    raw: str | None = None  # for string literals: the text between the quotes, escapes kept


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Literal | Path | Call, ...]
    text: str

    def evaluate(self, scope: Scope) -> Any:
        values = [_evaluate_arg(arg, scope) for arg in self.args]
        spec = FUNCTIONS[self.name]
        try:
            if self.name == "States.Format":
                return _format(self.args[0], values)
            return spec.fn(*values)
        except StatesError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, OverflowError, UnicodeError) as exc:
            raise StatesError(errors.INTRINSIC_FAILURE, f"{self.name}: {exc}") from None


def _evaluate_arg(arg: Literal | Path | Call, scope: Scope) -> Any:
    if isinstance(arg, Literal):
        return arg.value
    if isinstance(arg, Call):
        return arg.evaluate(scope)
    try:
        return scope.read(arg)
    except PathNotFound:
        raise StatesError(
            errors.RUNTIME, f"the JSONPath {arg.text!r} in an intrinsic function argument could not be found"
        ) from None


def is_intrinsic_text(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("States.") and value.rstrip().endswith(")")


def parse_intrinsic(text: str) -> Call:
    """Parse a whole `States.Fn(...)` expression; raise IntrinsicSyntaxError naming the problem."""
    parser = _Parser(text)
    call = parser.call()
    parser.skip_space()
    if parser.pos != len(text):
        raise IntrinsicSyntaxError(f"unexpected text after the call at position {parser.pos + 1} in {text!r}")
    return call


_NAME = re.compile(r"States\.[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(f"{message} at position {self.pos + 1} in {self.text!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def call(self) -> Call:
        start = self.pos
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected an intrinsic function name like States.Format")
        name = match.group(0)
        if name not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name} in {self.text!r}")
        self.pos = match.end()
        self.skip_space()
        if not self.text.startswith("(", self.pos):
            raise self.fail(f"expected '(' after {name}")
        self.pos += 1
        args: list[Literal | Path | Call] = []
        self.skip_space()
        if self.text.startswith(")", self.pos):
            self.pos += 1
        else:
            while True:
                self.skip_space()
                args.append(self.argument())
                self.skip_space()
                if self.text.startswith(",", self.pos):
                    self.pos += 1
                    continue
                if self.text.startswith(")", self.pos):
                    self.pos += 1
                    break
                raise self.fail(f"expected ',' or ')' in the arguments of {name}")
        spec = FUNCTIONS[name]
        if not spec.min_args <= len(args) <= spec.max_args:
            expected = (
                str(spec.min_args)
                if spec.min_args == spec.max_args
                else f"{spec.min_args} or more"
                if spec.max_args > 99
                else f"{spec.min_args} to {spec.max_args}"
            )
            raise IntrinsicSyntaxError(
                f"{name} takes {expected} argument(s), got {len(args)} in {self.text!r}"
            )
        call = Call(name, tuple(args), self.text[start : self.pos])
        if spec.check is not None:
            spec.check(call)
        return call

    def argument(self) -> Literal | Path | Call:
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.fail("missing argument")
        char = text[pos]
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        if text.startswith("States.", pos):
            return self.call()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                self.pos += len(word)
                return Literal(value)
        match = _NUMBER.match(text, pos)
        if match is not None:
            self.pos = match.end()
            number = match.group(0)
            is_float = any(c in number for c in ".eE")
            return Literal(float(number) if is_float else int(number))
        raise self.fail("expected a string, number, boolean, null, path or nested call")

    def string(self) -> Literal:
        self.pos += 1
        chars: list[str] = []
        raw_start = self.pos
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text):
                chars.append(text[self.pos + 1])
                self.pos += 2
                continue
            if char == "'":
                raw = text[raw_start : self.pos]
                self.pos += 1
                return Literal("".join(chars), raw)
            chars.append(char)
            self.pos += 1
        raise self.fail("unterminated string literal")

    def path(self) -> Path:
        start, depth, quote = self.pos, 0, ""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"" and depth:
                quote = char
            elif char == "[" or char == "(":
                depth += 1
            elif char == "]" or (char == ")" and depth):
                depth -= 1
            elif depth == 0 and (char in ",)" or char.isspace()):
                break
            self.pos += 1
        try:
            return compile_path(text[start : self.pos].strip())
        except PathSyntaxError as exc:
            raise IntrinsicSyntaxError(str(exc)) from None


# ---------------------------------------------------------------------------- the functions


def _format(template_arg: Any, values: list[Any]) -> str:
    template = values[0]
    if not isinstance(template, str):
        raise ValueError("the first argument must be a string template")
    raw = template_arg.raw if isinstance(template_arg, Literal) and template_arg.raw is not None else None
    pieces: list[str] = []
    args = values[1:]
    used = 0
    source = raw if raw is not None else template
    i = 0
    while i < len(source):
        char = source[i]
        if raw is not None and char == "\\" and i + 1 < len(source):
            pieces.append(source[i + 1])
            i += 2
            continue
        if source.startswith("{}", i):
            if used >= len(args):
                raise ValueError(
                    f"the template has more '{{}}' placeholders than the {len(args)} argument(s) given"
                )
            pieces.append(_format_value(args[used]))
            used += 1
            i += 2
            continue
        pieces.append(char)
        i += 1
    if used != len(args):
        raise ValueError(
            f"the template has {used} '{{}}' placeholder(s) but {len(args)} argument(s) were given"
        )
    return "".join(pieces)


def _format_value(value: Any) -> str:
    """How AWS renders an argument of States.Format: strings as they are, objects and arrays the Java
    way (`{key=value, ...}`, `[a, b]`, strings unquoted inside), not as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_format_value(item)}" for key, item in value.items()) + "}"
    return "[" + ", ".join(_format_value(item) for item in value) + "]"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _string_to_json(value: Any) -> Any:
    _require(isinstance(value, str), "the argument must be a string")
    if not value.strip():
        return None
    return json.loads(value)


def _json_to_string(value: Any) -> str:
    return compact(value)


def _array(*values: Any) -> list[Any]:
    return list(values)


def _array_partition(array: Any, size: Any) -> list[list[Any]]:
    _require(isinstance(array, list), "the first argument must be an array")
    _require(_is_int(size) and size > 0, "the chunk size must be a positive integer")
    step = int(size)
    return [array[i : i + step] for i in range(0, len(array), step)]


def _array_contains(array: Any, value: Any) -> bool:
    _require(isinstance(array, list), "the first argument must be an array")
    return any(_json_equal(item, value) for item in array)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


_ARRAY_RANGE_LIMIT = 1000


def _array_range(start: Any, end: Any, step: Any) -> list[int]:
    _require(all(_is_int(v) for v in (start, end, step)), "start, end and step must be integers")
    start, end, step = int(start), int(end), int(step)
    _require(step != 0, "the step must not be 0")
    span = range(start, end + (1 if step > 0 else -1), step)
    _require(len(span) <= _ARRAY_RANGE_LIMIT, f"the range would have more than {_ARRAY_RANGE_LIMIT} items")
    return list(span)


def _array_get_item(array: Any, index: Any) -> Any:
    _require(isinstance(array, list), "the first argument must be an array")
    _require(_is_int(index) and index >= 0, "the index must be a non-negative integer")
    _require(
        int(index) < len(array), f"index {int(index)} is out of bounds for an array of {len(array)} items"
    )
    return array[int(index)]


def _array_length(array: Any) -> int:
    _require(isinstance(array, list), "the argument must be an array")
    return len(array)


def _array_unique(array: Any) -> list[Any]:
    _require(isinstance(array, list), "the argument must be an array")
    seen: set[str] = set()
    unique: list[Any] = []
    for item in array:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


_BASE64_LIMIT = 10_000


def _base64_encode(value: Any) -> str:
    _require(isinstance(value, str), "the argument must be a string")
    _require(len(value) <= _BASE64_LIMIT, f"the input is longer than {_BASE64_LIMIT} characters")
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _base64_decode(value: Any) -> str:
    _require(isinstance(value, str), "the argument must be a string")
    _require(len(value) <= _BASE64_LIMIT, f"the input is longer than {_BASE64_LIMIT} characters")
    return base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(value: Any, algorithm: Any) -> str:
    _require(algorithm in _HASHES, f"the algorithm must be one of {', '.join(_HASHES)}, got {algorithm!r}")
    data = value if isinstance(value, str) else _json_to_string(value)
    return hashlib.new(_HASHES[algorithm], data.encode("utf-8")).hexdigest()


def _json_merge(left: Any, right: Any, deep: Any) -> dict[str, Any]:
    _require(isinstance(left, dict) and isinstance(right, dict), "both values to merge must be objects")
    _require(deep is False, "only shallow merging is supported: the third argument must be false")
    return {**left, **right}


def _java_round(value: float) -> int:
    return math.floor(value + 0.5)


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    _require(_is_number(start) and _is_number(end), "start and end must be numbers")
    low, high = _java_round(start), _java_round(end)
    _require(low < high, "start must be smaller than end")
    rng = random.Random(int(seed)) if seed is not None else random
    return rng.randrange(low, high)


def _math_add(a: Any, b: Any) -> int:
    _require(_is_number(a) and _is_number(b), "both arguments must be numbers")
    return _java_round(a) + _java_round(b)


def _string_split(value: Any, delimiters: Any) -> list[str]:
    _require(isinstance(value, str) and isinstance(delimiters, str), "both arguments must be strings")
    if not delimiters:
        return [value] if value else []
    pattern = "[" + re.escape(delimiters) + "]"
    return [piece for piece in re.split(pattern, value) if piece]


def _uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class _Spec:
    fn: Callable[..., Any]
    min_args: int
    max_args: int
    check: Callable[[Call], None] | None = None


def _check_format(call: Call) -> None:
    template = call.args[0]
    if isinstance(template, Literal) and not isinstance(template.value, str):
        raise IntrinsicSyntaxError(
            f"States.Format needs a string template as its first argument in {call.text!r}"
        )


def _check_hash(call: Call) -> None:
    algorithm = call.args[1]
    if isinstance(algorithm, Literal) and algorithm.value not in _HASHES:
        raise IntrinsicSyntaxError(
            f"States.Hash algorithm must be one of {', '.join(_HASHES)}, got {algorithm.value!r} in {call.text!r}"
        )


def _check_merge(call: Call) -> None:
    deep = call.args[2]
    if isinstance(deep, Literal) and deep.value is not False:
        raise IntrinsicSyntaxError(f"States.JsonMerge supports only shallow merges (false) in {call.text!r}")


MANY = 1_000

FUNCTIONS: dict[str, _Spec] = {
    "States.Format": _Spec(lambda *a: None, 1, MANY, _check_format),
    "States.StringToJson": _Spec(_string_to_json, 1, 1),
    "States.JsonToString": _Spec(_json_to_string, 1, 1),
    "States.Array": _Spec(_array, 0, MANY),
    "States.ArrayPartition": _Spec(_array_partition, 2, 2),
    "States.ArrayContains": _Spec(_array_contains, 2, 2),
    "States.ArrayRange": _Spec(_array_range, 3, 3),
    "States.ArrayGetItem": _Spec(_array_get_item, 2, 2),
    "States.ArrayLength": _Spec(_array_length, 1, 1),
    "States.ArrayUnique": _Spec(_array_unique, 1, 1),
    "States.Base64Encode": _Spec(_base64_encode, 1, 1),
    "States.Base64Decode": _Spec(_base64_decode, 1, 1),
    "States.Hash": _Spec(_hash, 2, 2, _check_hash),
    "States.JsonMerge": _Spec(_json_merge, 3, 3, _check_merge),
    "States.MathRandom": _Spec(_math_random, 2, 3),
    "States.MathAdd": _Spec(_math_add, 2, 2),
    "States.StringSplit": _Spec(_string_split, 2, 2),
    "States.UUID": _Spec(_uuid, 0, 0),
}
