"""Validate and compile a definition in one pass, reporting every problem at once.

Each problem names where it is (`States.CheckStock.Catch[0].Next`) and what is wrong. The walk keeps
going after a problem so that a user fixing a definition sees the whole list, as `smq validate` shows.

Besides the ASL state types, smq has `Type: Message` (see `state_message`). This module walks machines
and states; how each field compiles is `smq.engine.field_rules`, where a definition's text comes from is
`smq.engine.definition_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smq.engine import choice as choice_rules
from smq.engine.definition_source import require_json
from smq.engine.errors import DefinitionError, Problem
from smq.engine.field_rules import (
    JSONATA,
    JSONPATH,
    MACHINE_FIELDS,
    MAX_INT_FIELD,
    MAX_STATE_NAME,
    QUERY_LANGUAGES,
    STATE_FIELDS,
    SUB_MACHINE_FIELDS,
    FieldCompiler,
    is_int,
    is_number,
    join_where,
)
from smq.engine.handlers import WAIT_FOR_TASK_TOKEN
from smq.engine.intrinsics import IntrinsicSyntaxError, is_intrinsic_text, parse_intrinsic
from smq.engine.jsonata import condition_predicate, is_expression
from smq.engine.model import (
    ChoiceBranch,
    ChoiceState,
    FailState,
    Machine,
    MapState,
    MessageState,
    ParallelState,
    PassState,
    State,
    SucceedState,
    TaskState,
    WaitState,
)
from smq.engine.nested import nested_mode
from smq.engine.sync import is_sync_resource
from smq.engine.templates import compile_expression
from smq.engine.timestamps import parse_timestamp


def compile_machine(definition: dict[str, Any]) -> Machine:
    """Validate and compile; raise DefinitionError listing every problem."""
    require_json(definition, "definition")
    compiler = _Compiler()
    machine = compiler.machine(definition, "", top_level=True)
    if compiler.problems:
        raise DefinitionError(compiler.problems)
    assert machine is not None
    return machine


def validate_definition(definition: dict[str, Any]) -> list[Problem]:
    try:
        require_json(definition, "definition")
    except DefinitionError as exc:
        return exc.problems
    compiler = _Compiler()
    compiler.machine(definition, "", top_level=True)
    return compiler.problems


class _Compiler(FieldCompiler):
    # ------------------------------------------------------------------ machines

    def machine(self, definition: Any, where: str, *, top_level: bool = False) -> Machine | None:
        if not isinstance(definition, dict):
            self.report(where or "definition", f"must be an object, got {type(definition).__name__}")
            return None
        outer = self.language
        if "QueryLanguage" in definition:
            self.language = self.query_language(
                definition["QueryLanguage"], join_where(where, "QueryLanguage")
            )
        if top_level:
            self.top_language = self.language
        try:
            return self.machine_body(definition, where, top_level=top_level)
        finally:
            self.language = outer

    def query_language(self, value: Any, where: str) -> str:
        """A QueryLanguage value; JSONPath inside a JSONata state machine is refused, as AWS does."""
        if value not in QUERY_LANGUAGES:
            self.report(where, f"must be JSONPath or JSONata, got {value!r}")
            return self.language
        if value == JSONPATH and self.top_language == JSONATA:
            self.report(where, "a state machine whose QueryLanguage is JSONata cannot have JSONPath parts")
        return str(value)

    def machine_body(self, definition: dict[str, Any], where: str, *, top_level: bool) -> Machine | None:
        allowed = MACHINE_FIELDS if top_level else SUB_MACHINE_FIELDS
        for key in definition:
            if key not in allowed:
                self.report(join_where(where, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")
        timeout = definition.get("TimeoutSeconds")
        if timeout is not None and not (is_int(timeout) and 0 < timeout <= MAX_INT_FIELD):
            self.report(join_where(where, "TimeoutSeconds"), f"must be a positive integer, got {timeout!r}")
        if "Version" in definition and definition["Version"] != "1.0":
            self.report(join_where(where, "Version"), f"only '1.0' is defined, got {definition['Version']!r}")
        raw_states = definition.get("States")
        start_at = definition.get("StartAt")
        if not isinstance(raw_states, dict) or not raw_states:
            self.report(join_where(where, "States"), "required: a non-empty object of states")
            raw_states = {}
        if not isinstance(start_at, str):
            self.report(join_where(where, "StartAt"), "required: the name of the first state")
        elif raw_states and start_at not in raw_states:
            self.report(join_where(where, "StartAt"), f"no state named {start_at!r}")
        problems_before = len(self.problems)
        states: dict[str, State] = {}
        self.depth += 0 if top_level else 1
        for name, raw in raw_states.items():
            if not isinstance(name, str):
                self.report(join_where(where, f"States.{name!r}"), "a state name must be a string")
                continue
            state_where = join_where(where, f"States.{name}")
            if len(name) > MAX_STATE_NAME:
                self.report(state_where, f"a state name is at most {MAX_STATE_NAME} characters")
            state = self.state(name, raw, state_where, raw_states)
            if state is not None:
                states[name] = state
        self.depth -= 0 if top_level else 1
        if isinstance(start_at, str) and start_at in raw_states:
            self.check_reachable(start_at, raw_states, where)
        clean_so_far = len(self.problems) == problems_before  # else it is noise on top of real problems
        if raw_states and clean_so_far and not any(_is_terminal(raw) for raw in raw_states.values()):
            self.report(
                join_where(where, "States"), "no terminal state: nothing ends (End: true, Succeed or Fail)"
            )
        pure = all(_state_is_pure(state) for state in states.values())
        return Machine(
            start_at=start_at if isinstance(start_at, str) else "",
            states=states,
            timeout_seconds=timeout if is_int(timeout) else None,
            comment=definition.get("Comment"),
            pure=pure,
            definition=definition,
        )

    def check_reachable(self, start_at: str, raw_states: dict[str, Any], where: str) -> None:
        seen = {start_at}
        todo = [start_at]
        while todo:
            raw = raw_states.get(todo.pop())
            if not isinstance(raw, dict):
                continue
            for target in _targets(raw):
                if target in raw_states and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name in raw_states:
            if name not in seen:
                self.report(
                    join_where(where, f"States.{name}"),
                    f"unreachable: no path from StartAt {start_at!r} leads here",
                )

    # ------------------------------------------------------------------ states

    def state(self, name: str, raw: Any, where: str, siblings: dict[str, Any]) -> State | None:
        if not isinstance(raw, dict):
            self.report(where, f"a state must be an object, got {type(raw).__name__}")
            return None
        state_type = raw.get("Type")
        if not isinstance(state_type, str) or state_type not in STATE_FIELDS:
            known = ", ".join(sorted(STATE_FIELDS))
            self.report(join_where(where, "Type"), f"unknown state type {state_type!r} (known: {known})")
            return None
        language = self.language
        if "QueryLanguage" in raw:
            language = self.query_language(raw["QueryLanguage"], join_where(where, "QueryLanguage"))
        self.jsonata = language == JSONATA
        self.state_name = name
        self.check_fields(raw, where, state_type)
        next_state, end = self.flow(raw, where, siblings, state_type)
        common: dict[str, Any] = {
            "name": name,
            "type": state_type,
            "next": next_state,
            "end": end,
            "input_path": self.io_path(raw, "InputPath", where),
            "output_path": self.io_path(raw, "OutputPath", where),
            "jsonata": self.jsonata,
        }
        if "Assign" in raw:
            common["assign"] = self.assign(raw["Assign"], join_where(where, "Assign"))
        if self.jsonata and "Output" in raw:
            common["output"] = self.jsonata_template(raw["Output"], where, "Output")
        builder: Callable[[dict[str, Any], str, dict[str, Any], dict[str, Any]], State | None] = getattr(
            self, f"state_{state_type.lower()}"
        )
        return builder(raw, where, siblings, common)

    def state_pass(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        return PassState(
            **common,
            **self.result_fields(raw, where),
            result=raw.get("Result"),
            has_result="Result" in raw,
        )

    def state_task(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        resource = raw.get("Resource")
        if not isinstance(resource, str) or not resource:
            self.report(join_where(where, "Resource"), "required: the name or ARN of a registered handler")
            resource = ""
        timeout = self.int_or_path(raw, "TimeoutSeconds", where, minimum=1)
        heartbeat = self.int_or_path(raw, "HeartbeatSeconds", where, minimum=1)
        if (
            timeout is not None
            and heartbeat is not None
            and timeout.value is not None
            and heartbeat.value is not None
            and heartbeat.value >= timeout.value
        ):
            self.report(join_where(where, "HeartbeatSeconds"), "must be smaller than TimeoutSeconds")
        return TaskState(
            **common,
            **self.result_fields(raw, where),
            **self.error_handling(raw, where, siblings),
            resource=resource,
            function_name=_literal_function_name(raw.get("Arguments" if self.jsonata else "Parameters")),
            timeout=timeout,
            heartbeat=heartbeat,
            wait_for_token=resource.endswith(WAIT_FOR_TASK_TOKEN),
            sync=is_sync_resource(resource),
            nested=nested_mode(resource),
        )

    def state_choice(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        if "Next" in raw or "End" in raw:
            self.report(
                where, "a Choice state takes neither Next nor End: its rules and Default say where to go"
            )
        rules = raw.get("Choices")
        branches: list[ChoiceBranch] = []
        if not isinstance(rules, list) or not rules:
            self.report(join_where(where, "Choices"), "required: a non-empty array of choice rules")
            rules = []
        for index, rule in enumerate(rules):
            at = f"{where}.Choices[{index}]"
            if self.jsonata:
                branch = self.jsonata_rule(rule, at, siblings)
                if branch is not None:
                    branches.append(branch)
                continue
            rule_ok = self.choice_rule(rule, at, top_level=True)
            if not isinstance(rule, dict):
                continue
            target = rule.get("Next")
            if not isinstance(target, str):
                self.report(f"{at}.Next", "required: the state to go to when this rule matches")
                continue
            if target not in siblings:
                self.report(f"{at}.Next", f"no state named {target!r}")
            assign = self.assign(rule["Assign"], f"{at}.Assign") if "Assign" in rule else None
            if not rule_ok:
                continue
            branches.append(ChoiceBranch(choice_rules.compile_rule(rule), target, assign))
        default = raw.get("Default")
        if default is not None and (not isinstance(default, str) or default not in siblings):
            self.report(join_where(where, "Default"), f"no state named {default!r}")
        return ChoiceState(**common, branches=tuple(branches), default=default)

    def jsonata_rule(self, rule: Any, where: str, siblings: dict[str, Any]) -> ChoiceBranch | None:
        """A JSONata choice rule: a Condition (true, false or an expression giving one), Next, and
        optionally Assign and Output."""
        if not isinstance(rule, dict):
            self.report(where, "a choice rule must be an object")
            return None
        for key in rule:
            if key not in ("Condition", "Next", "Assign", "Output", "Comment"):
                self.report(
                    f"{where}.{key}",
                    "unknown field in a JSONata choice rule (Condition, Next, Assign, Output)",
                )
        target = rule.get("Next")
        if not isinstance(target, str):
            self.report(f"{where}.Next", "required: the state to go to when this rule matches")
        elif target not in siblings:
            self.report(f"{where}.Next", f"no state named {target!r}")
        condition = rule.get("Condition")
        predicate: choice_rules.Predicate | None = None
        if "Condition" not in rule:
            self.report(f"{where}.Condition", "required: true, false or a {% %} JSONata expression")
        elif isinstance(condition, bool):
            predicate = choice_rules.constant(condition)
        elif is_expression(condition):
            expression = self.jsonata_expression(condition, f"{where}.Condition", "Condition")
            predicate = condition_predicate(expression) if expression is not None else None
        else:
            self.report(
                f"{where}.Condition",
                f"must be true, false or a {{% %}} JSONata expression, got {condition!r}",
            )
        assign = self.assign(rule["Assign"], f"{where}.Assign") if "Assign" in rule else None
        output = self.jsonata_template(rule["Output"], where, "Output") if "Output" in rule else None
        if predicate is None or not isinstance(target, str):
            return None
        return ChoiceBranch(predicate, target, assign, output)

    def choice_rule(self, rule: Any, where: str, *, top_level: bool) -> bool:
        """Check one rule; True when it compiles."""
        if not isinstance(rule, dict):
            self.report(where, "a choice rule must be an object")
            return False
        extra = {"Next", "Assign", "Comment"} if top_level else {"Comment"}
        combinators = [key for key in choice_rules.COMBINATORS if key in rule]
        operators = [key for key in rule if key in choice_rules.ALL_OPERATORS]
        if not top_level and "Next" in rule:
            self.report(f"{where}.Next", "only top-level choice rules take Next")
        if "Condition" in rule:
            self.report(
                f"{where}.Condition", "Condition is JSONata; JSONPath rules use Variable and an operator"
            )
            return False
        if len(combinators) + len(operators) != 1:
            self.report(
                where,
                "a choice rule needs exactly one comparison operator (e.g. StringEquals) or one of And/Or/Not, "
                f"found {', '.join(combinators + operators) or 'none'}",
            )
            return False
        allowed = extra | set(combinators) | set(operators) | ({"Variable"} if operators else set())
        ok = True
        for key in rule:
            if key not in allowed:
                self.report(f"{where}.{key}", "unknown field in a choice rule")
                ok = False
        if combinators:
            key = combinators[0]
            value = rule[key]
            if key == "Not":
                return self.choice_rule(value, f"{where}.Not", top_level=False) and ok
            if not isinstance(value, list) or not value:
                self.report(f"{where}.{key}", "must be a non-empty array of choice rules")
                return False
            results = [
                self.choice_rule(r, f"{where}.{key}[{i}]", top_level=False) for i, r in enumerate(value)
            ]
            return all(results) and ok
        operator = operators[0]
        if "Variable" not in rule:
            self.report(f"{where}.Variable", f"required with {operator}")
            return False
        if self.path(rule["Variable"], f"{where}.Variable") is None:
            ok = False
        operand = rule[operator]
        at = f"{where}.{operator}"
        if operator in choice_rules.TYPE_TESTS:
            if not isinstance(operand, bool):
                self.report(at, f"must be true or false, got {operand!r}")
                ok = False
        elif operator in choice_rules.PATH_OPERATORS:
            if self.path(operand, at) is None:
                ok = False
        else:
            kind, _ = choice_rules.COMPARISON_OPERATORS[operator]
            valid = {
                "string": isinstance(operand, str),
                "number": is_number(operand),
                "boolean": isinstance(operand, bool),
                "timestamp": parse_timestamp(operand) is not None,
            }[kind]
            if not valid:
                expected = {"timestamp": "an ISO-8601 timestamp string with offset"}.get(kind, f"a {kind}")
                self.report(at, f"must be {expected}, got {operand!r}")
                ok = False
        return ok

    def state_wait(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        given = [key for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if key in raw]
        if len(given) != 1:
            self.report(
                where,
                f"a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath; got {given or 'none'}",
            )
        fields: dict[str, Any] = {}
        if self.jsonata:  # Seconds and Timestamp may be expressions; the rest are literals
            expressions = {
                key: value
                for key, value in raw.items()
                if key in ("Seconds", "Timestamp") and is_expression(value)
            }
            for key, value in expressions.items():
                fields[f"{key.lower()}_expression"] = self.jsonata_expression(
                    value, join_where(where, key), key
                )
            raw = {key: value for key, value in raw.items() if key not in expressions}
        if "Seconds" in raw:
            seconds = raw["Seconds"]
            if not (is_int(seconds) and 0 <= seconds <= MAX_INT_FIELD):
                self.report(join_where(where, "Seconds"), f"must be a non-negative integer, got {seconds!r}")
            else:
                fields["seconds"] = seconds
        if "Timestamp" in raw:
            if parse_timestamp(raw["Timestamp"]) is None:
                self.report(
                    join_where(where, "Timestamp"),
                    f"must be an ISO-8601 timestamp with offset, got {raw['Timestamp']!r}",
                )
            else:
                fields["timestamp"] = raw["Timestamp"]
        if "SecondsPath" in raw:
            fields["seconds_path"] = self.path(
                raw["SecondsPath"], join_where(where, "SecondsPath"), definite=True
            )
        if "TimestampPath" in raw:
            fields["timestamp_path"] = self.path(
                raw["TimestampPath"], join_where(where, "TimestampPath"), definite=True
            )
        return WaitState(**common, **fields)

    def state_succeed(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        return SucceedState(**common)

    def state_fail(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        fields: dict[str, Any] = {}
        for key, path_key, literal_field, expr_field in (
            ("Error", "ErrorPath", "error", "error_expr"),
            ("Cause", "CausePath", "cause", "cause_expr"),
        ):
            if key in raw and path_key in raw:
                self.report(where, f"{key} and {path_key} are exclusive; give one")
            if key in raw:
                if self.jsonata and is_expression(raw[key]):
                    fields[f"{literal_field}_expression"] = self.jsonata_expression(
                        raw[key], join_where(where, key), key
                    )
                elif not isinstance(raw[key], str):
                    self.report(join_where(where, key), f"must be a string, got {raw[key]!r}")
                else:
                    fields[literal_field] = raw[key]
            if path_key in raw:
                value = raw[path_key]
                if is_intrinsic_text(value):
                    try:
                        fields[expr_field] = parse_intrinsic(value).evaluate
                    except IntrinsicSyntaxError as exc:
                        self.report(join_where(where, path_key), str(exc))
                elif self.path(value, join_where(where, path_key), definite=True) is not None:
                    fields[expr_field] = compile_expression(value, path_key)
        return FailState(**common, **fields)

    def state_message(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        """smq's Message state: wait for a message correlated by (CorrelationKey, value).

        CorrelationKey (required, a non-empty string); CorrelationValuePath (a reference path read
        from the effective input; absent: the whole effective input is the value); TimeoutSeconds or
        TimeoutSecondsPath (a positive integer); TimeoutPath (the name of the state to go to on
        timeout; without it a timeout fails the execution with States.Timeout); plus InputPath,
        ResultPath, OutputPath, Assign, Next/End. Inside Parallel/Map branches too (they park).
        """
        key = raw.get("CorrelationKey")
        if not isinstance(key, str) or not key:
            self.report(
                join_where(where, "CorrelationKey"),
                f"required: a non-empty string naming what messages are correlated on, got {key!r}",
            )
            key = ""
        elif len(key) > 200:
            self.report(join_where(where, "CorrelationKey"), f"at most 200 characters, got {len(key)}")
        fields: dict[str, Any] = {"correlation_key": key}
        if "CorrelationValuePath" in raw:
            fields["correlation_value_path"] = self.path(
                raw["CorrelationValuePath"], join_where(where, "CorrelationValuePath"), definite=True
            )
        fields["timeout"] = self.int_or_path(raw, "TimeoutSeconds", where, minimum=1)
        if "TimeoutPath" in raw:
            target = raw["TimeoutPath"]
            if not isinstance(target, str):
                self.report(join_where(where, "TimeoutPath"), f"must be a state name, got {target!r}")
            elif target not in siblings:
                self.report(join_where(where, "TimeoutPath"), f"no state named {target!r}")
            else:
                fields["timeout_next"] = target
        return MessageState(**common, **self.result_path(raw, where), **fields)

    def state_parallel(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        raw_branches = raw.get("Branches")
        branches = []
        if not isinstance(raw_branches, list) or not raw_branches:
            self.report(join_where(where, "Branches"), "required: a non-empty array of sub-machines")
            raw_branches = []
        for index, branch in enumerate(raw_branches):
            machine = self.machine(branch, f"{where}.Branches[{index}]")
            if machine is not None:
                branches.append(machine)
        return ParallelState(
            **common,
            **self.result_fields(raw, where),
            **self.error_handling(raw, where, siblings),
            branches=tuple(branches),
        )

    def state_map(
        self, raw: dict[str, Any], where: str, siblings: dict[str, Any], common: dict[str, Any]
    ) -> State:
        fields: dict[str, Any] = {}
        if "ItemSelector" in raw and "Parameters" in raw:
            self.report(where, "ItemSelector and (legacy) Parameters are exclusive; use ItemSelector")
        selector_key = (
            "ItemSelector" if "ItemSelector" in raw else "Parameters" if "Parameters" in raw else None
        )
        if selector_key is not None and self.jsonata:
            fields["item_selector"] = self.jsonata_template(raw[selector_key], where, selector_key)
        elif selector_key is not None:
            fields["item_selector"] = self.template(
                raw[selector_key], join_where(where, selector_key), require_object=True
            )
        if self.jsonata and "Items" in raw:
            items = raw["Items"]
            if is_expression(items):
                fields["items_expression"] = self.jsonata_expression(
                    items, join_where(where, "Items"), "Items"
                )
            elif isinstance(items, list):
                fields["items"] = self.jsonata_template(items, where, "Items")
            else:
                self.report(
                    join_where(where, "Items"),
                    f"must be a JSON array or a {{% %}} JSONata expression, got {items!r}",
                )
        if "ItemsPath" in raw:
            fields["items_path"] = self.path(raw["ItemsPath"], join_where(where, "ItemsPath"), definite=True)
        for unsupported in ("ItemReader", "ResultWriter"):
            if unsupported in raw:
                self.report(
                    join_where(where, unsupported),
                    "reads or writes S3; not supported by smq (pass items in the input)",
                )
        processor_key = [key for key in ("ItemProcessor", "Iterator") if key in raw]
        if len(processor_key) != 1:
            self.report(where, "a Map state needs exactly one of ItemProcessor or (legacy) Iterator")
        else:
            key = processor_key[0]
            sub = raw[key]
            at = join_where(where, key)
            mode = "INLINE"
            if isinstance(sub, dict) and "ProcessorConfig" in sub:
                config = sub["ProcessorConfig"]
                if not isinstance(config, dict):
                    self.report(f"{at}.ProcessorConfig", "must be an object")
                else:
                    mode = config.get("Mode", "INLINE")
                    if mode not in ("INLINE", "DISTRIBUTED"):
                        self.report(
                            f"{at}.ProcessorConfig.Mode", f"must be INLINE or DISTRIBUTED, got {mode!r}"
                        )
                    execution_type = config.get("ExecutionType", "STANDARD")
                    if execution_type not in ("STANDARD", "EXPRESS"):
                        self.report(
                            f"{at}.ProcessorConfig.ExecutionType",
                            f"must be STANDARD or EXPRESS, got {execution_type!r}",
                        )
            fields["mode"] = mode
            fields["processor"] = self.machine(sub, at)
        fields["max_concurrency"] = self.int_or_path(raw, "MaxConcurrency", where)
        fields["tolerated_failure_percentage"] = self.int_or_path(
            raw, "ToleratedFailurePercentage", where, maximum=100, integer=False
        )
        fields["tolerated_failure_count"] = self.int_or_path(raw, "ToleratedFailureCount", where)
        if "ItemBatcher" in raw:
            batcher = raw["ItemBatcher"]
            at = join_where(where, "ItemBatcher")
            if not isinstance(batcher, dict):
                self.report(at, "must be an object")
            else:
                fields["max_items_per_batch"] = self.int_or_path(batcher, "MaxItemsPerBatch", at, minimum=1)
                if "BatchInput" in batcher and self.jsonata:
                    fields["batch_input"] = self.jsonata_template(batcher["BatchInput"], at, "BatchInput")
                elif "BatchInput" in batcher:
                    fields["batch_input"] = self.template(
                        batcher["BatchInput"], f"{at}.BatchInput", require_object=True
                    )
        if "Label" in raw and (not isinstance(raw["Label"], str) or len(raw["Label"]) > 40):
            self.report(join_where(where, "Label"), "must be a string of at most 40 characters")
        return MapState(
            **common,
            **self.result_fields(raw, where, parameters=False),
            **self.error_handling(raw, where, siblings),
            **fields,
        )


def _literal_function_name(parameters: Any) -> str | None:
    """Parameters.FunctionName (Arguments.FunctionName in JSONata) when given literally."""
    name = parameters.get("FunctionName") if isinstance(parameters, dict) else None
    return name if isinstance(name, str) and not is_expression(name) else None


def _is_terminal(raw: Any) -> bool:
    return isinstance(raw, dict) and (raw.get("End") is True or raw.get("Type") in ("Succeed", "Fail"))


def _targets(raw: dict[str, Any]) -> list[str]:
    targets: list[str] = []
    for value in (raw.get("Next"), raw.get("Default")):
        if isinstance(value, str):
            targets.append(value)
    if raw.get("Type") == "Message" and isinstance(raw.get("TimeoutPath"), str):
        targets.append(raw["TimeoutPath"])
    for key in ("Choices", "Catch"):
        items = raw.get(key)
        if isinstance(items, list):
            targets.extend(
                item["Next"] for item in items if isinstance(item, dict) and isinstance(item.get("Next"), str)
            )
    return targets


def _state_is_pure(state: State) -> bool:
    if isinstance(state, (TaskState, WaitState, MessageState)):
        return False
    if isinstance(state, ParallelState):
        return all(branch.pure for branch in state.branches)
    if isinstance(state, MapState):
        return state.processor is None or state.processor.pure
    return True
