"""Where a definition comes from: JSON or YAML text, or a dict, checked to be plain JSON data."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from smq.engine.errors import DefinitionError, Problem


def load_definition(source: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """A definition from a dict, JSON text or YAML text."""
    if isinstance(source, dict):
        return source
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionError([Problem("definition", f"not UTF-8 text: {exc}")]) from None
    if not isinstance(source, str):
        raise DefinitionError(
            [Problem("definition", f"expected a dict or JSON/YAML text, got {type(source).__name__}")]
        )
    try:
        loaded = json.loads(source)
    except json.JSONDecodeError as json_error:
        if source.lstrip()[:1] in ("{", "["):
            # Meant as JSON (YAML would read most of it too, and only confuse the report).
            raise DefinitionError(
                [
                    Problem(
                        "definition",
                        f"not valid JSON: {json_error.msg} at line {json_error.lineno}, column {json_error.colno}",
                    )
                ]
            ) from None
        try:
            loaded = yaml.load(source, Loader=_JsonCompatibleLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as yaml_error:
            raise DefinitionError(
                [Problem("definition", f"neither valid JSON ({json_error}) nor valid YAML ({yaml_error})")]
            ) from None
    if not isinstance(loaded, dict):
        raise DefinitionError(
            [Problem("definition", f"the top level must be an object, got {type(loaded).__name__}")]
        )
    require_json(loaded, "definition")
    return loaded


class _JsonCompatibleLoader(yaml.SafeLoader):
    """YAML limited to what JSON can say, read as AWS reads a YAML definition.

    - Every mapping key is its text, as in JSON: a state named `Yes:`, `No:`, `On:` or `404:` keeps its
      name (YAML 1.1 would make it a boolean or a number, and the definition unloadable).
    - Only `true`/`false` are booleans (YAML 1.2): `Next: No` names the state `No`.
    - `2024-01-01` stays a string, never a date object.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node, deep=deep)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


_YAML_12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_JsonCompatibleLoader.yaml_implicit_resolvers = {
    key: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_JsonCompatibleLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _YAML_12_BOOL, list("tTfF"))
_JsonCompatibleLoader.add_constructor(
    "tag:yaml.org,2002:bool", lambda loader, node: node.value.lower() == "true"
)


def require_json(value: Any, where: str) -> None:
    """Reject what JSON cannot represent (non-string keys, dates, NaN...), naming where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                problem = Problem(
                    f"{where}.{key!r}", f"object keys must be strings, got {type(key).__name__}"
                )
                raise DefinitionError([problem])
            require_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            require_json(item, f"{where}[{index}]")
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise DefinitionError([Problem(where, f"{value!r} is not a JSON number")])
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise DefinitionError([Problem(where, f"{type(value).__name__} is not a JSON value")])
