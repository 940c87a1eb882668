"""JSONPath for ASL, compiled once when a definition is loaded.

Three roots: `$` (the state's data), `$$` (the Context object) and `$name` (a workflow variable).
Definite paths (`$.a['b'][0]`) are compiled to a tuple of keys and read with plain indexing, the hot
path. Indefinite ones (`*`, `..`, slices, filters, unions) go to jsonpath-ng and always yield a list,
as AWS does. A definite path that finds nothing raises `PathNotFound`; the caller decides which ASL
error that is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonpath_ng.ext import parse as _jsonpath_ng_parse  # type: ignore[import-untyped]
from jsonpath_ng.ext.filter import OPERATOR_MAP, Expression  # type: ignore[import-untyped]
from jsonpath_ng.jsonpath import DatumInContext, Index, Slice  # type: ignore[import-untyped]

from smq.engine.errors import SmqError

ROOT_INPUT = "$"
ROOT_CONTEXT = "$$"


class PathSyntaxError(SmqError):
    """The text is not a JSONPath smq can evaluate."""


class PathNotFound(SmqError):
    """A definite path that selects nothing in the given data."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"no results for path {path}")


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEFINITE_MARKERS = ("*", "..", "?", "@", ":", ",")
_MISSING = object()


class _Missing:
    """No value at all (not even null): `$states.result` outside a result, `$states.errorOutput`
    outside a catcher."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled path. `root` is "$", "$$" or a variable name; `keys` is set when definite."""

    text: str
    root: str
    keys: tuple[str | int, ...] | None
    _query: Any = None  # jsonpath-ng expression for indefinite paths

    @property
    def definite(self) -> bool:
        return self.keys is not None

    @property
    def is_variable(self) -> bool:
        return self.root not in (ROOT_INPUT, ROOT_CONTEXT)

    def select(self, data: Any) -> Any:
        """Apply the path to the value its root names (data, context or variable value)."""
        keys = self.keys
        if keys is not None:
            value = data
            for key in keys:
                if type(key) is int:
                    if type(value) is not list or not 0 <= key < len(value):
                        raise PathNotFound(self.text)
                    value = value[key]
                else:
                    if type(value) is not dict:
                        raise PathNotFound(self.text)
                    value = value.get(key, _MISSING)
                    if value is _MISSING:
                        raise PathNotFound(self.text)
            return value
        return [match.value for match in self._query.find(data)]


_cache: dict[str, Path] = {}


def compile_path(text: str, *, allow_variables: bool = True, allow_context: bool = True) -> Path:
    """Compile `text`, or raise PathSyntaxError saying what is wrong with it."""
    cache_key = f"{int(allow_variables)}{int(allow_context)}{text}"
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathSyntaxError(f"a path must start with '$', got {text!r}")
    if text.startswith("$$"):
        if not allow_context:
            raise PathSyntaxError(f"the Context object ($$) is not allowed here: {text!r}")
        root, rest = ROOT_CONTEXT, text[2:]
    elif len(text) > 1 and text[1] not in ".[":
        match = _VARIABLE_NAME.match(text, 1)
        if match is None:
            raise PathSyntaxError(f"{text!r} is neither '$...' nor a variable reference '$name...'")
        if not allow_variables:
            raise PathSyntaxError(f"variable references are not allowed here: {text!r}")
        root, rest = match.group(0), text[match.end() :]
    else:
        root, rest = ROOT_INPUT, text[1:]
    rest = _without_empty_segments(rest)
    keys = _definite_keys(rest, text)
    if keys is not None:
        path = Path(text, root, keys)
    else:
        try:
            query = _jsonpath_ng_parse("$" + rest)
        except Exception as exc:  # jsonpath-ng raises several unrelated types
            raise PathSyntaxError(f"invalid JSONPath {text!r}: {exc}") from None
        path = Path(text, root, None, _strict(query))
    if len(_cache) < 20_000:
        _cache[cache_key] = path
    return path


def _without_empty_segments(rest: str) -> str:
    """`$.a.[0]` as `$.a[0]`: AWS (Jayway JSONPath) reads a dot right before a bracket as no segment at
    all, and published definitions rely on it (`$.Snapshots.[0].State`). Quoted names are left alone."""
    if ".[" not in rest:
        return rest
    out: list[str] = []
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        char = rest[i]
        if quote:
            if char == "\\" and i + 1 < n:
                out.append(rest[i : i + 2])
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "'\"" and i > 0 and rest[i - 1] == "[":
            quote = char
        elif char == "\\" and i + 1 < n:
            out.append(rest[i : i + 2])
            i += 2
            continue
        elif char == "." and rest.startswith(".[", i) and not rest.startswith("..[", i - 1):
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _definite_keys(rest: str, text: str) -> tuple[str | int, ...] | None:
    """Parse `.name`, `['name']`, `["name"]`, `[N]` segments; None if any segment is indefinite."""
    keys: list[str | int] = []
    i, n = 0, len(rest)
    while i < n:
        char = rest[i]
        if char == ".":
            if rest.startswith("..", i):
                return None
            j = i + 1
            chars: list[str] = []
            while j < n and rest[j] not in ".[":
                if rest[j] == "\\" and j + 1 < n:  # `\.`, `\[`, `\@`...: the next character literally
                    chars.append(rest[j + 1])
                    j += 2
                    continue
                if rest[j] in "]'\"":
                    raise PathSyntaxError(f"unexpected {rest[j]!r} at position {j + 2} in path {text!r}")
                chars.append(rest[j])
                j += 1
            name = "".join(chars)
            if not name:
                raise PathSyntaxError(f"empty field name in path {text!r}")
            raw_name = rest[i + 1 : j]
            if raw_name == "*" or any(c in raw_name for c in "*?@()") and "\\" not in raw_name:
                return None
            keys.append(name)
            i = j
        elif char == "[":
            if i + 1 < n and rest[i + 1] in "'\"":
                quote = rest[i + 1]
                j = i + 2
                quoted: list[str] = []
                while j < n and rest[j] != quote:
                    if rest[j] == "\\" and j + 1 < n and rest[j + 1] == quote:
                        quoted.append(quote)
                        j += 2
                        continue
                    quoted.append(rest[j])
                    j += 1
                if j >= n or not rest.startswith("]", j + 1):
                    if j < n and rest[j + 1 : j + 2] == ",":
                        return None
                    raise PathSyntaxError(f"unterminated quoted name in path {text!r}")
                keys.append("".join(quoted))
                i = j + 2
            else:
                close = rest.find("]", i)
                if close < 0:
                    raise PathSyntaxError(f"missing ']' in path {text!r}")
                inner = rest[i + 1 : close].strip()
                if inner.isdigit():
                    keys.append(int(inner))
                elif any(marker in inner for marker in _INDEFINITE_MARKERS) or inner.startswith("-"):
                    return None
                else:
                    raise PathSyntaxError(f"invalid index [{inner}] in path {text!r}")
                i = close + 1
        else:
            raise PathSyntaxError(f"unexpected {char!r} at position {i + 1} in path {text!r}")
    return tuple(keys)


class _StrictSlice(Slice):  # type: ignore[misc]
    """`[*]` and slices as AWS evaluates them: `[*]` on an object yields its values, on a scalar nothing.

    jsonpath-ng wraps a non-list in a one-element list first, so `$[*]` on `{}` would give `[{}]`.
    """

    def find(self, datum: Any) -> list[Any]:
        datum = DatumInContext.wrap(datum)
        value = datum.value
        if isinstance(value, list):
            return super().find(datum)
        if isinstance(value, dict) and self.start is None and self.end is None and self.step is None:
            return [DatumInContext(v, path=Index(i), context=datum) for i, v in enumerate(value.values())]
        return []


# jsonpath-ng's comparisons by operator text, read through plain str keys (its own key type varies by release).
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    str(op): compare for op, compare in OPERATOR_MAP.items()
}


def _is_literal(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class _StrictExpression(Expression):  # type: ignore[misc]
    """Filter comparisons with JSON types: `[?(@.p > 10)]` keeps 10.5 (jsonpath-ng truncates it with
    int()), and a value of another type (null, a string against a number) never matches or raises."""

    def find(self, datum: Any) -> list[Any]:
        if self.op is not None and (self.op not in _COMPARISONS or not _is_literal(self.value)):
            # Negation (`!`) and path operands, which newer jsonpath-ng parses: nothing to make strict.
            return list(super().find(datum))
        matches = self.target.find(DatumInContext.wrap(datum))
        if not matches or self.op is None:
            return list(matches)
        compare = _COMPARISONS[self.op]
        found = []
        for data in matches:
            if _comparable(self.op, data.value, self.value):
                try:
                    if compare(data.value, self.value):
                        found.append(data)
                except (TypeError, ValueError, re.error):
                    continue
        return found


def _comparable(op: str, left: Any, right: Any) -> bool:
    def kind(value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, (int, float)):
            return "number"
        return type(value).__name__

    if op in ("==", "=", "!="):
        return kind(left) == kind(right) or op == "!="
    return kind(left) == kind(right) and kind(left) in ("number", "str")


def _strict(node: Any) -> Any:
    """Replace jsonpath-ng's lenient Slice and filter nodes throughout a parsed expression."""
    if type(node) is Slice:
        return _StrictSlice(node.start, node.end, node.step)
    if type(node) is Expression:
        return _StrictExpression(_strict(node.target), node.op, node.value)
    for attribute in ("left", "right", "expressions", "target"):
        child = getattr(node, attribute, None)
        if child is None:
            continue
        if isinstance(child, list):
            setattr(node, attribute, [_strict(c) for c in child])
        elif hasattr(child, "find"):
            setattr(node, attribute, _strict(child))
    return node


def compile_reference_path(text: str) -> Path:
    """A Reference Path (ResultPath): `$`-rooted, definite, no context or variables."""
    path = compile_path(text, allow_variables=False, allow_context=False)
    if not path.definite:
        raise PathSyntaxError(f"{text!r} must be a definite reference path (no '*', '..', filters or slices)")
    return path


def set_at(target: Any, keys: tuple[str | int, ...], value: Any) -> Any:
    """Return a copy of `target` with `value` written at `keys`, creating objects on the way.

    Copy-on-write along the path only, so the original (kept in history) is never mutated. Raises
    PathNotFound when an intermediate value is not an object (AWS: States.ResultPathMatchFailure).
    """
    if not keys:
        return value
    key, rest = keys[0], keys[1:]
    if type(key) is int:
        if type(target) is not list or not 0 <= key < len(target):
            raise PathNotFound("$")
        copy_list = list(target)
        copy_list[key] = set_at(target[key], rest, value)
        return copy_list
    if type(target) is not dict:
        raise PathNotFound("$")
    copy = dict(target)
    copy[key] = set_at(target.get(key, {}), rest, value) if rest else value
    return copy


class Scope:
    """What paths may read while one state runs: its data (`$`), the Context object (`$$`), variables.

    The Context object is built lazily because most states never read it. JSONata expressions also
    read `result` and `error_output` (`$states.result`, `$states.errorOutput`) where a state has them.
    """

    __slots__ = ("data", "variables", "_context", "_context_factory", "result", "error_output")

    def __init__(self, data: Any, variables: dict[str, Any], context_factory: Any) -> None:
        self.data = data
        self.variables = variables
        self._context: Any = None
        self._context_factory = context_factory
        self.result: Any = MISSING
        self.error_output: Any = MISSING

    @property
    def context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = self._context_factory()
        return self._context

    def with_data(self, data: Any) -> Scope:
        other = Scope(data, self.variables, self._context_factory)
        other._context = self._context
        return other

    def with_states(self, *, result: Any = MISSING, error_output: Any = MISSING) -> Scope:
        """The same input, variables and context, with `$states.result` or `$states.errorOutput`."""
        other = self.with_data(self.data)
        other.result = result
        other.error_output = error_output
        return other

    def read(self, path: Path) -> Any:
        """Evaluate `path` here; raises PathNotFound (also for an unknown variable)."""
        root = path.root
        if root == ROOT_INPUT:
            return path.select(self.data)
        if root == ROOT_CONTEXT:
            return path.select(self.context)
        try:
            base = self.variables[root]
        except KeyError:
            raise PathNotFound(path.text) from None
        return path.select(base)
