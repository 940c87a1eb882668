"""How each field of a state compiles, and which fields each state type takes.

`FieldCompiler` is the part of the one-pass compiler (smq.engine.compiler) that knows fields: paths,
templates, Assign, ResultPath, Retry and Catch, integers or their paths, JSONata templates and
expressions. It reports every problem where it is, and never stops at the first.
"""

from __future__ import annotations

import re
from typing import Any

from smq.engine.errors import ALL, Problem
from smq.engine.jsonata import Expression, JsonataSyntaxError, is_expression
from smq.engine.jsonata import TemplateError as JsonataTemplateError
from smq.engine.jsonata import compile_template as compile_jsonata_template
from smq.engine.model import (
    NULL_PATH,
    Catcher,
    IntOrPath,
    Retrier,
)
from smq.engine.paths import Path, PathSyntaxError, compile_path, compile_reference_path
from smq.engine.templates import Template, TemplateError, compile_template

COMMON_FIELDS = {"Type", "Comment", "QueryLanguage"}
FLOW_FIELDS = {"Next", "End"}
IO_FIELDS = {"InputPath", "OutputPath"}
RESULT_FIELDS = {"Parameters", "ResultSelector", "ResultPath"}
ERROR_FIELDS = {"Retry", "Catch"}

STATE_FIELDS: dict[str, set[str]] = {
    "Pass": COMMON_FIELDS | FLOW_FIELDS | IO_FIELDS | {"Parameters", "Result", "ResultPath", "Assign"},
    "Task": COMMON_FIELDS
    | FLOW_FIELDS
    | IO_FIELDS
    | RESULT_FIELDS
    | ERROR_FIELDS
    | {"Resource", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath"}
    | {"Assign", "Credentials"},
    "Choice": COMMON_FIELDS | IO_FIELDS | {"Choices", "Default", "Assign"},
    "Wait": COMMON_FIELDS
    | FLOW_FIELDS
    | IO_FIELDS
    | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"}
    | {"Assign"},
    "Succeed": COMMON_FIELDS | IO_FIELDS,
    "Fail": COMMON_FIELDS | {"Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": COMMON_FIELDS
    | FLOW_FIELDS
    | IO_FIELDS
    | RESULT_FIELDS
    | ERROR_FIELDS
    | {"Branches", "Assign"},
    "Map": COMMON_FIELDS
    | FLOW_FIELDS
    | IO_FIELDS
    | RESULT_FIELDS
    | ERROR_FIELDS
    | {"ItemsPath", "ItemSelector", "ItemProcessor", "Iterator", "MaxConcurrency", "MaxConcurrencyPath"}
    | {"ToleratedFailurePercentage", "ToleratedFailurePercentagePath", "ToleratedFailureCount"}
    | {"ToleratedFailureCountPath", "ItemBatcher", "ItemReader", "ResultWriter", "Label", "Assign"},
    # smq's extension: wait for a message correlated by (CorrelationKey, value), or a timeout.
    "Message": COMMON_FIELDS
    | FLOW_FIELDS
    | IO_FIELDS
    | {"ResultPath", "CorrelationKey", "CorrelationValuePath", "TimeoutSeconds", "TimeoutSecondsPath"}
    | {"TimeoutPath", "Assign"},
}
# Fields only JSONata states take, and the JSONPath fields they refuse (AWS's field rules).
JSONATA_FIELDS: dict[str, set[str]] = {
    "Pass": {"Output"},
    "Task": {"Arguments", "Output"},
    "Choice": {"Output"},
    "Wait": {"Output"},
    "Succeed": {"Output"},
    "Fail": set(),
    "Parallel": {"Arguments", "Output"},
    "Map": {"Items", "Output"},
    "Message": set(),
}
JSONPATH_ONLY = (
    IO_FIELDS
    | {"Parameters", "ResultSelector", "ResultPath", "ItemsPath", "SecondsPath"}
    | {
        "TimestampPath",
        "ErrorPath",
        "CausePath",
        "MaxConcurrencyPath",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentagePath",
        "TimeoutSecondsPath",
        "HeartbeatSecondsPath",
    }
)
JSONPATH, JSONATA = "JSONPath", "JSONata"
QUERY_LANGUAGES = (JSONPATH, JSONATA)
MACHINE_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
SUB_MACHINE_FIELDS = {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}
MAX_STATE_NAME = 80
MAX_INT_FIELD = 99_999_999
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_VARIABLES = frozenset({"states"})


def join_where(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FieldCompiler:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.depth = 0  # > 0 while compiling a Parallel branch or a Map item processor
        self.top_language = JSONPATH  # the state machine's QueryLanguage
        self.language = JSONPATH  # the default of the (sub-)machine being compiled
        self.jsonata = False  # the state being compiled is a JSONata state
        self.state_name = ""

    def report(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def check_fields(self, raw: dict[str, Any], where: str, state_type: str) -> None:
        """Unknown fields, and fields of the other query language (AWS's field rules)."""
        jsonata_only = JSONATA_FIELDS[state_type]
        allowed = (
            STATE_FIELDS[state_type] | jsonata_only | ({"Next", "End"} if state_type == "Choice" else set())
        )
        for key in raw:
            if key not in allowed:
                self.report(join_where(where, key), f"unknown field for a {state_type} state")
            elif self.jsonata and key in JSONPATH_ONLY:
                self.report(
                    join_where(where, key),
                    f"{key} is a JSONPath field; a JSONata state uses Arguments, Output and {{% %}} expressions",
                )
            elif not self.jsonata and key in jsonata_only:
                self.report(join_where(where, key), f"{key} is a JSONata field; set QueryLanguage to JSONata")
        if self.jsonata and state_type == "Message":
            self.report(where, "smq's Message state runs only with QueryLanguage JSONPath")

    def jsonata_template(self, value: Any, where: str, field: str) -> Template | None:
        """A JSONata template (`{% %}` strings anywhere inside); `where` is the state's location and
        `field` AWS's name of the field: syntax errors name both."""
        try:
            return compile_jsonata_template(value, self.state_name, field)
        except JsonataTemplateError as exc:
            for location, message in exc.problems:
                self.report(join_where(where, location.replace("/", ".")), message)
            return None

    def jsonata_expression(self, value: Any, where: str, field: str) -> Expression | None:
        """One `{% %}` expression at `where` (the field's full location)."""
        try:
            return Expression(value, self.state_name, field)
        except JsonataSyntaxError as exc:
            self.report(where, str(exc))
            return None

    def flow(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], state_type: str
    ) -> tuple[str | None, bool]:
        next_state, end = raw.get("Next"), raw.get("End", False)
        if state_type in ("Choice", "Succeed", "Fail"):
            return None, False
        if end is not False and end is not True:
            self.report(join_where(where, "End"), f"must be true or false, got {end!r}")
            end = False
        if next_state is not None and end:
            self.report(where, "has both Next and End: true; a state either continues or ends")
        elif next_state is None and not end:
            self.report(where, "needs Next (the state to go to) or End: true")
        if next_state is not None:
            if not isinstance(next_state, str):
                self.report(join_where(where, "Next"), f"must be a state name, got {next_state!r}")
                next_state = None
            elif next_state not in siblings:
                self.report(join_where(where, "Next"), f"no state named {next_state!r}")
        return next_state, bool(end)

    def io_path(self, raw: dict[str, Any], key: str, where: str) -> Any:
        if key not in raw:
            return None
        value = raw[key]
        if value is None:
            return NULL_PATH
        return self.path(value, join_where(where, key))

    def path(self, value: Any, where: str, *, reference: bool = False, definite: bool = False) -> Path | None:
        """Compile a path field. `reference`: ResultPath rules; `definite`: a Reference Path that may
        still read the Context object or a variable (ItemsPath, SecondsPath, ...)."""
        if not isinstance(value, str):
            self.report(where, f"must be a JSONPath string, got {value!r}")
            return None
        try:
            path = compile_reference_path(value) if reference else compile_path(value)
        except PathSyntaxError as exc:
            self.report(where, str(exc))
            return None
        if definite and not path.definite:
            self.report(where, f"{value!r} must be a definite path (no '*', '..', filters or slices)")
            return None
        return path

    def template(self, value: Any, where: str, *, require_object: bool = False) -> Template | None:
        if require_object and not isinstance(value, dict):
            self.report(where, f"must be an object, got {type(value).__name__}")
            return None
        try:
            return compile_template(value, where)
        except TemplateError as exc:
            for location, message in exc.problems:
                self.report(location, message)
            return None

    def assign(self, value: Any, where: str) -> Template | None:
        if not isinstance(value, dict):
            self.report(where, f"must be an object of variable names, got {type(value).__name__}")
            return None
        for key in value:
            name = key[:-2] if key.endswith(".$") and not self.jsonata else key
            if not VARIABLE_NAME.match(name) or len(name) > 80:
                self.report(f"{where}.{key}", f"{name!r} is not a valid variable name (letters, digits, '_')")
            elif name in RESERVED_VARIABLES:
                self.report(f"{where}.{key}", f"{name!r} is reserved and cannot be assigned")
        if self.jsonata:
            return self.jsonata_template(value, where.removesuffix(".Assign"), "Assign")
        return self.template(value, where)

    def result_fields(self, raw: dict[str, Any], where: str, *, parameters: bool = True) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.jsonata:
            if "Arguments" in raw:
                fields["arguments"] = self.jsonata_template(raw["Arguments"], where, "Arguments")
            return fields
        if parameters and "Parameters" in raw:
            # Any JSON value, as AWS accepts (an array of objects on a Pass state is common); the
            # ASL spec's "a JSON object" is stricter than the service.
            fields["parameters"] = self.template(raw["Parameters"], join_where(where, "Parameters"))
        if "ResultSelector" in raw:
            fields["result_selector"] = self.template(
                raw["ResultSelector"], join_where(where, "ResultSelector"), require_object=True
            )
        fields.update(self.result_path(raw, where))
        return fields

    def result_path(self, raw: dict[str, Any], where: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "ResultPath" in raw:
            if raw["ResultPath"] is None:
                fields["result_path_mode"] = "discard"
            else:
                path = self.path(raw["ResultPath"], join_where(where, "ResultPath"), reference=True)
                if path is not None and path.keys:
                    fields["result_path_mode"] = "path"
                    fields["result_path"] = path
        return fields

    def error_handling(self, raw: dict[str, Any], where: str, siblings: dict[str, Any]) -> dict[str, Any]:
        return {
            "retriers": tuple(self.retriers(raw.get("Retry", []), join_where(where, "Retry"))),
            "catchers": tuple(self.catchers(raw.get("Catch", []), join_where(where, "Catch"), siblings)),
        }

    def error_equals(self, value: Any, where: str, is_last: bool) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.report(where, "required: a non-empty array of error names")
            return ()
        if ALL in value and len(value) > 1:
            self.report(where, "States.ALL must appear alone in ErrorEquals")
        if ALL in value and not is_last:
            self.report(where, "States.ALL must be in the last retrier or catcher")
        return tuple(value)

    def retriers(self, raw: Any, where: str) -> list[Retrier]:
        if not isinstance(raw, list):
            self.report(where, "must be an array of retriers")
            return []
        retriers = []
        allowed = {
            "ErrorEquals",
            "IntervalSeconds",
            "MaxAttempts",
            "BackoffRate",
            "MaxDelaySeconds",
            "JitterStrategy",
            "Comment",
        }
        for index, item in enumerate(raw):
            at = f"{where}[{index}]"
            if not isinstance(item, dict):
                self.report(at, "a retrier must be an object")
                continue
            for key in item:
                if key not in allowed:
                    self.report(f"{at}.{key}", "unknown field for a retrier")
            errors_ = self.error_equals(item.get("ErrorEquals"), f"{at}.ErrorEquals", index == len(raw) - 1)
            interval = item.get("IntervalSeconds", 1)
            if not (is_int(interval) and 1 <= interval <= MAX_INT_FIELD):
                self.report(
                    f"{at}.IntervalSeconds", f"must be an integer from 1 to {MAX_INT_FIELD}, got {interval!r}"
                )
                interval = 1
            attempts = item.get("MaxAttempts", 3)
            if not (is_int(attempts) and 0 <= attempts <= MAX_INT_FIELD):
                self.report(
                    f"{at}.MaxAttempts", f"must be an integer from 0 to {MAX_INT_FIELD}, got {attempts!r}"
                )
                attempts = 0
            backoff = item.get("BackoffRate", 2.0)
            if not (is_number(backoff) and backoff >= 1.0):
                self.report(f"{at}.BackoffRate", f"must be a number >= 1.0, got {backoff!r}")
                backoff = 1.0
            max_delay = item.get("MaxDelaySeconds")
            if max_delay is not None and not (is_int(max_delay) and 0 < max_delay < 31_622_401):
                self.report(
                    f"{at}.MaxDelaySeconds", f"must be an integer from 1 to 31622400, got {max_delay!r}"
                )
                max_delay = None
            jitter = item.get("JitterStrategy", "NONE")
            if jitter not in ("FULL", "NONE"):
                self.report(f"{at}.JitterStrategy", f"must be FULL or NONE, got {jitter!r}")
                jitter = "NONE"
            retriers.append(Retrier(errors_, float(interval), attempts, float(backoff), max_delay, jitter))
        return retriers

    def catchers(self, raw: Any, where: str, siblings: dict[str, Any]) -> list[Catcher]:
        if not isinstance(raw, list):
            self.report(where, "must be an array of catchers")
            return []
        catchers = []
        allowed = {"ErrorEquals", "Next", "Assign", "Comment"} | (
            {"Output"} if self.jsonata else {"ResultPath"}
        )
        for index, item in enumerate(raw):
            at = f"{where}[{index}]"
            if not isinstance(item, dict):
                self.report(at, "a catcher must be an object")
                continue
            for key in item:
                if key not in allowed:
                    self.report(f"{at}.{key}", "unknown field for a catcher")
            errors_ = self.error_equals(item.get("ErrorEquals"), f"{at}.ErrorEquals", index == len(raw) - 1)
            target = item.get("Next")
            if not isinstance(target, str):
                self.report(f"{at}.Next", "required: the state to go to when this catcher matches")
                target = ""
            elif target not in siblings:
                self.report(f"{at}.Next", f"no state named {target!r}")
            result_path: Path | None = compile_path("$")
            output = self.jsonata_template(item["Output"], at, "Output") if "Output" in item else None
            if "ResultPath" in item and not self.jsonata:
                result_path = (
                    None
                    if item["ResultPath"] is None
                    else self.path(item["ResultPath"], f"{at}.ResultPath", reference=True)
                )
            assign = self.assign(item["Assign"], f"{at}.Assign") if "Assign" in item else None
            catchers.append(Catcher(errors_, target, result_path, assign, output))
        return catchers

    def int_or_path(
        self,
        raw: dict[str, Any],
        key: str,
        where: str,
        *,
        minimum: float = 0,
        maximum: float = MAX_INT_FIELD,
        integer: bool = True,
    ) -> IntOrPath | None:
        path_key = key + "Path"
        if self.jsonata and is_expression(raw.get(key)):
            expression = self.jsonata_expression(raw[key], join_where(where, key), key)
            return IntOrPath(key, expression=expression) if expression is not None else None
        if key in raw and path_key in raw:
            self.report(where, f"{key} and {path_key} are exclusive; give one")
            return None
        if key in raw:
            value = raw[key]
            ok = (is_int(value) if integer else is_number(value)) and minimum <= value <= maximum
            if not ok:
                kind = "an integer" if integer else "a number"
                self.report(
                    join_where(where, key), f"must be {kind} from {minimum:g} to {maximum:g}, got {value!r}"
                )
                return None
            return IntOrPath(key, value=value)
        if path_key in raw:
            path = self.path(raw[path_key], join_where(where, path_key), definite=True)
            return IntOrPath(key, path=path) if path is not None else None
        return None

    # ------------------------------------------------------------------ per type
