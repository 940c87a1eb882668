"""Task states: resolving resources, calling handlers, error naming, result processing, timeouts."""

from __future__ import annotations

import time
from typing import Any

import pytest

import smq
from smq import HandlerRegistry, StateMachine, TaskContext, TaskError, VirtualClock

T0 = 1_735_732_800.0  # 2025-01-01T12:00:00Z
LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


def task_machine(task: dict[str, Any], **top: Any) -> StateMachine:
    return StateMachine.from_definition(
        {"StartAt": "T", "States": {"T": {"Type": "Task", **task, "End": True}}, **top}
    )


def run(sm: StateMachine, inp: Any, reg: HandlerRegistry, **kw: Any):
    clock = VirtualClock(T0)
    return sm.run(inp, handlers=reg, clock=clock.now, sleep=clock.sleep, **kw)


class Recorder:
    """A handler that records what it was called with and returns a fixed or computed value."""

    def __init__(self, result: Any = None):
        self.calls: list[tuple[Any, TaskContext]] = []
        self.result = result

    def __call__(self, payload: Any, ctx: TaskContext) -> Any:
        self.calls.append((payload, ctx))
        return self.result(payload) if callable(self.result) else self.result


# -------------------------------------------------------------------------------- handler calling


class TestHandlerCall:
    def test_handler_gets_effective_input_and_context(self):
        reg = HandlerRegistry()
        rec = Recorder({"ok": True})
        reg.register("charge-card", rec)
        sm = task_machine(
            {
                "Resource": "charge-card",
                "InputPath": "$.order",
                "Parameters": {"amount.$": "$.total", "currency": "EUR"},
                "ResultPath": "$.charge",
            }
        )
        r = sm.run({"order": {"total": 12.5}, "user": "u1"}, handlers=reg, name="exec-1")
        assert r.status == "SUCCEEDED"
        assert len(rec.calls) == 1
        payload, ctx = rec.calls[0]
        assert payload == {"amount": 12.5, "currency": "EUR"}
        assert ctx.execution_id == r.execution_id
        assert ctx.execution_name == "exec-1"
        assert ctx.state_name == "T"
        assert ctx.attempt == 1
        assert r.output == {"order": {"total": 12.5}, "user": "u1", "charge": {"ok": True}}

    def test_single_argument_handler(self):
        reg = HandlerRegistry()

        @reg.handler("double")
        def double(payload):
            return payload * 2

        r = run(task_machine({"Resource": "double"}), 21, reg)
        assert r.status == "SUCCEEDED"
        assert r.output == 42

    def test_decorator_defaults_to_function_name(self):
        reg = HandlerRegistry()

        @reg.handler()
        def shout(payload):
            return payload.upper()

        r = run(task_machine({"Resource": "shout"}), "hi", reg)
        assert r.output == "HI"

    @pytest.mark.parametrize(
        "resource",
        [
            LAMBDA_ARN.format("process-order"),
            LAMBDA_ARN.format("process-order") + ":prod",
            LAMBDA_ARN.format("process-order") + ":$LATEST",
            LAMBDA_ARN.format("process-order") + ":7",
        ],
    )
    def test_resource_by_lambda_arn(self, resource):
        reg = HandlerRegistry()
        reg.register("process-order", lambda p: {"processed": p})
        r = run(task_machine({"Resource": resource}), {"id": 1}, reg)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"processed": {"id": 1}}

    def test_exact_name_wins_over_arn_tail(self):
        reg = HandlerRegistry()
        arn = LAMBDA_ARN.format("f")
        reg.register(arn, lambda p: "exact")
        reg.register("f", lambda p: "tail")
        r = run(task_machine({"Resource": arn}), {}, reg)
        assert r.output == "exact"

    @pytest.mark.parametrize(
        "function_name", ["fn", LAMBDA_ARN.format("fn"), LAMBDA_ARN.format("fn") + ":live"]
    )
    def test_lambda_invoke_integration(self, function_name):
        reg = HandlerRegistry()
        rec = Recorder(lambda p: {"sum": p["a"] + p["b"]})
        reg.register("fn", rec)
        sm = task_machine(
            {
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_name, "Payload": {"a.$": "$.x", "b": 2}},
            }
        )
        r = run(sm, {"x": 1}, reg)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert rec.calls[0][0] == {"a": 1, "b": 2}  # the handler gets Payload, not the whole Parameters
        assert r.output["Payload"] == {"sum": 3}
        assert r.output["StatusCode"] == 200

    def test_lambda_invoke_function_name_with_alias(self):
        reg = HandlerRegistry()
        reg.register("fn", lambda p: {"got": p})
        sm = task_machine(
            {
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "fn:live", "Payload": {"a": 1}},
            }
        )
        r = run(sm, {}, reg)
        assert r.status == "SUCCEEDED"
        assert r.output["Payload"] == {"got": {"a": 1}}

    def test_lambda_invoke_partial_arn(self):
        reg = HandlerRegistry()
        reg.register("fn", lambda p: "partial")
        sm = task_machine(
            {
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "123456789012:function:fn", "Payload": {}},
            }
        )
        r = run(sm, {}, reg)
        assert r.output["Payload"] == "partial"

    def test_lambda_invoke_output_path_payload(self):
        reg = HandlerRegistry()
        reg.register("fn", lambda p: {"echo": p})
        sm = task_machine(
            {
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "fn", "Payload.$": "$"},
                "OutputPath": "$.Payload",
            }
        )
        r = run(sm, {"k": [1, 2]}, reg)
        assert r.output == {"echo": {"k": [1, 2]}}

    def test_lambda_invoke_dynamic_function_name(self):
        reg = HandlerRegistry()
        reg.register("dyn", lambda p: "called dyn")
        sm = task_machine(
            {
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName.$": "$.fn", "Payload": {}},
                "ResultSelector": {"p.$": "$.Payload"},
            }
        )
        r = run(sm, {"fn": "dyn"}, reg)
        assert r.status == "SUCCEEDED"
        assert r.output == {"p": "called dyn"}

    def test_unregistered_resource_raises_before_anything_runs(self):
        reg = HandlerRegistry()
        first = Recorder("x")
        reg.register("first", first)
        sm = StateMachine.from_definition(
            {
                "StartAt": "A",
                "States": {
                    "A": {"Type": "Task", "Resource": "first", "Next": "B"},
                    "B": {"Type": "Task", "Resource": "no-such-handler", "End": True},
                },
            }
        )
        with pytest.raises(smq.UnknownResourceError) as info:
            sm.run({}, handlers=reg)
        assert "no-such-handler" in str(info.value)
        assert first.calls == []

    def test_unregistered_resource_inside_map_raises_before_anything_runs(self):
        reg = HandlerRegistry()
        first = Recorder("x")
        reg.register("first", first)
        missing = LAMBDA_ARN.format("ghost")
        sm = StateMachine.from_definition(
            {
                "StartAt": "A",
                "States": {
                    "A": {"Type": "Task", "Resource": "first", "Next": "M"},
                    "M": {
                        "Type": "Map",
                        "ItemProcessor": {
                            "StartAt": "I",
                            "States": {"I": {"Type": "Task", "Resource": missing, "End": True}},
                        },
                        "End": True,
                    },
                },
            }
        )
        with pytest.raises(smq.UnknownResourceError) as info:
            sm.run([1], handlers=reg)
        assert missing in str(info.value)
        assert first.calls == []


# ---------------------------------------------------------------------------------------- errors


class PaymentDeclined(Exception):
    pass


class NamedError(Exception):
    error_name = "Billing.CardExpired"


class TestErrors:
    def _fail(self, exc: BaseException):
        reg = HandlerRegistry()

        @reg.handler("h")
        def h(payload):
            raise exc

        return run(task_machine({"Resource": "h"}), {}, reg)

    def test_exception_class_name_is_the_error(self):
        r = self._fail(PaymentDeclined("insufficient funds"))
        assert r.status == "FAILED"
        assert r.error == "PaymentDeclined"
        assert "insufficient funds" in r.cause

    def test_builtin_exception(self):
        r = self._fail(KeyError("sku"))
        assert r.error == "KeyError"

    def test_task_error_explicit_name_and_cause(self):
        r = self._fail(TaskError("Custom.Name", "the cause"))
        assert (r.error, r.cause) == ("Custom.Name", "the cause")

    def test_error_name_attribute(self):
        r = self._fail(NamedError("expired in 2020"))
        assert r.error == "Billing.CardExpired"
        assert "expired in 2020" in r.cause

    def test_failed_history_entry(self):
        r = self._fail(TaskError("Custom.Name", "c"))
        assert [(e.state_name, e.status, e.error) for e in r.history] == [("T", "FAILED", "Custom.Name")]

    def test_non_json_result_fails(self):
        reg = HandlerRegistry()
        reg.register("bad", lambda p: {"when": object()})
        r = run(task_machine({"Resource": "bad"}), {}, reg)
        assert r.status == "FAILED"
        assert r.error is not None

    def test_set_result_fails(self):
        reg = HandlerRegistry()
        reg.register("bad", lambda p: {1, 2})
        r = run(task_machine({"Resource": "bad"}), {}, reg)
        assert r.status == "FAILED"


# --------------------------------------------------------------------------- result processing


class TestResults:
    def test_result_selector_then_result_path_then_output_path(self):
        reg = HandlerRegistry()
        reg.register("api", lambda p: {"body": {"total": 30, "items": [1, 2]}, "headers": {"x": "y"}})
        sm = task_machine(
            {
                "Resource": "api",
                "ResultSelector": {
                    "total.$": "$.body.total",
                    "n.$": "States.ArrayLength($.body.items)",
                    "k": "lit",
                },
                "ResultPath": "$.res",
                "OutputPath": "$.res",
            }
        )
        r = run(sm, {"in": 1}, reg)
        assert r.status == "SUCCEEDED"
        assert r.output == {"total": 30, "n": 2, "k": "lit"}

    def test_result_path_null_discards_result(self):
        reg = HandlerRegistry()
        reg.register("api", lambda p: "ignored")
        r = run(task_machine({"Resource": "api", "ResultPath": None}), {"keep": 1}, reg)
        assert r.output == {"keep": 1}

    def test_result_selector_missing_path_fails(self):
        reg = HandlerRegistry()
        reg.register("api", lambda p: {"a": 1})
        r = run(task_machine({"Resource": "api", "ResultSelector": {"b.$": "$.b"}}), {}, reg)
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_handler_mutating_its_input_does_not_change_history_or_output(self):
        reg = HandlerRegistry()

        @reg.handler("mutate")
        def mutate(payload):
            payload["list"].append("evil")
            payload["new"] = True
            return "r"

        inp = {"list": [1], "x": {"y": 2}}
        r = run(task_machine({"Resource": "mutate", "ResultPath": "$.r"}), inp, reg)
        assert r.status == "SUCCEEDED"
        assert r.history[0].input == {"list": [1], "x": {"y": 2}}
        assert r.output == {"list": [1], "x": {"y": 2}, "r": "r"}
        assert inp == {"list": [1], "x": {"y": 2}}

    def test_handler_result_reused_across_states_is_not_shared(self):
        shared = {"n": [0]}
        reg = HandlerRegistry()
        reg.register("give", lambda p: shared)

        @reg.handler("mutate")
        def mutate(payload):
            payload["n"].append(1)
            return payload

        sm = StateMachine.from_definition(
            {
                "StartAt": "G",
                "States": {
                    "G": {"Type": "Task", "Resource": "give", "Next": "M"},
                    "M": {"Type": "Task", "Resource": "mutate", "End": True},
                },
            }
        )
        r = run(sm, {}, reg)
        assert r.output == {"n": [0, 1]}
        assert r.history[0].output == {"n": [0]}
        assert shared == {"n": [0]}


# ------------------------------------------------------------------------------ timeouts (real)


def sleeper(seconds: float):
    def handler(payload, ctx: TaskContext):
        time.sleep(seconds)
        return "finished"

    return handler


class TestTimeouts:
    def test_timeout_seconds(self):
        reg = HandlerRegistry()
        reg.register("slow", sleeper(1.5))
        started = time.monotonic()
        r = task_machine({"Resource": "slow", "TimeoutSeconds": 1}).run({}, handlers=reg)
        elapsed = time.monotonic() - started
        assert r.status == "FAILED"
        assert r.error == "States.Timeout"
        assert 0.9 < elapsed < 1.45

    def test_timeout_seconds_path(self):
        reg = HandlerRegistry()
        reg.register("slow", sleeper(1.5))
        started = time.monotonic()
        r = task_machine({"Resource": "slow", "TimeoutSecondsPath": "$.t"}).run({"t": 1}, handlers=reg)
        assert r.status == "FAILED"
        assert r.error == "States.Timeout"
        assert time.monotonic() - started < 1.45

    def test_fast_handler_within_timeout(self):
        reg = HandlerRegistry()
        reg.register("quick", sleeper(0.05))
        r = task_machine({"Resource": "quick", "TimeoutSeconds": 1}).run({}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output == "finished"

    def test_timeout_can_be_caught(self):
        reg = HandlerRegistry()
        reg.register("slow", sleeper(1.5))
        sm = StateMachine.from_definition(
            {
                "StartAt": "T",
                "States": {
                    "T": {
                        "Type": "Task",
                        "Resource": "slow",
                        "TimeoutSeconds": 1,
                        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Handled"}],
                        "End": True,
                    },
                    "Handled": {"Type": "Pass", "End": True},
                },
            }
        )
        r = sm.run({}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output["Error"] == "States.Timeout"

    def test_heartbeat_timeout_when_handler_stops_heartbeating(self):
        reg = HandlerRegistry()
        contexts: list[TaskContext] = []

        @reg.handler("hb")
        def hb(payload, ctx: TaskContext):
            contexts.append(ctx)
            ctx.heartbeat()
            time.sleep(0.3)
            ctx.heartbeat()
            time.sleep(1.6)
            return "late"

        started = time.monotonic()
        r = task_machine({"Resource": "hb", "HeartbeatSeconds": 1}).run({}, handlers=reg)
        elapsed = time.monotonic() - started
        assert r.status == "FAILED"
        assert r.error == "States.HeartbeatTimeout"
        assert 1.2 < elapsed < 1.9  # one second after the last heartbeat (at ~0.3 s)
        # the abandoned handler learns about it the next time it heartbeats
        assert contexts[0].cancelled
        with pytest.raises(smq.TaskCancelled):
            contexts[0].heartbeat()

    def test_no_heartbeat_timeout_while_handler_keeps_heartbeating(self):
        reg = HandlerRegistry()

        @reg.handler("hb")
        def hb(payload, ctx: TaskContext):
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                ctx.heartbeat()
                time.sleep(0.1)
            return "alive"

        r = task_machine({"Resource": "hb", "HeartbeatSeconds": 1}).run({}, handlers=reg)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == "alive"

    def test_heartbeat_seconds_path(self):
        reg = HandlerRegistry()
        reg.register("slow", sleeper(1.5))
        r = task_machine({"Resource": "slow", "HeartbeatSecondsPath": "$.hb"}).run({"hb": 1}, handlers=reg)
        assert r.status == "FAILED"
        assert r.error == "States.HeartbeatTimeout"

    def test_timeout_seconds_path_invalid_value_is_runtime(self):
        reg = HandlerRegistry()
        rec = Recorder("x")
        reg.register("h", rec)
        r = run(task_machine({"Resource": "h", "TimeoutSecondsPath": "$.t"}), {"t": "soon"}, reg)
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"
        assert rec.calls == []
