"""Parallel and Map: ordering, concurrency, item selection, tolerated failures, nesting."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from smq import HandlerRegistry, StateMachine, TaskContext, TaskError, VirtualClock

T0 = 1_735_732_800.0


def run(definition: dict[str, Any], inp: Any, reg: HandlerRegistry | None = None, **kw: Any):
    clock = VirtualClock(T0)
    sm = StateMachine.from_definition(definition)
    return sm.run(inp, handlers=reg or HandlerRegistry(), clock=clock.now, sleep=clock.sleep, **kw)


def one_task(resource: str, **extra: Any) -> dict[str, Any]:
    return {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": resource, "End": True, **extra}}}


def one_pass(**fields: Any) -> dict[str, Any]:
    return {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, **fields}}}


def map_machine(map_fields: dict[str, Any], processor: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = dict(map_fields)
    if "Iterator" not in fields:
        fields.setdefault("ItemProcessor", processor or one_task("item"))
    return {"StartAt": "M", "States": {"M": {"Type": "Map", "End": True, **fields}}}


class ConcurrencyProbe:
    """A handler that counts how many calls run at the same time."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.calls = 0

    def __call__(self, payload: Any) -> Any:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.seconds)
            return payload
        finally:
            with self.lock:
                self.active -= 1


# -------------------------------------------------------------------------------------- Parallel


class TestParallel:
    def test_outputs_in_branch_order(self):
        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        one_pass(Parameters={"b": 0, "x.$": "$.x"}),
                        one_pass(Result="second"),
                        {
                            "StartAt": "A",
                            "States": {
                                "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
                                "B": {"Type": "Pass", "OutputPath": "$.a", "End": True},
                            },
                        },
                    ],
                    "End": True,
                }
            },
        }
        r = run(definition, {"x": 9})
        assert r.status == "SUCCEEDED"
        assert r.output == [{"b": 0, "x": 9}, "second", 1]

    def test_branch_outputs_ordered_even_when_finishing_out_of_order(self):
        reg = HandlerRegistry()
        finished: list[str] = []

        def make(name: str, seconds: float):
            def h(payload):
                time.sleep(seconds)
                finished.append(name)
                return name

            return h

        reg.register("slow", make("slow", 0.2))
        reg.register("fast", make("fast", 0.0))
        definition = {
            "StartAt": "P",
            "States": {
                "P": {"Type": "Parallel", "Branches": [one_task("slow"), one_task("fast")], "End": True}
            },
        }
        r = StateMachine.from_definition(definition).run({}, handlers=reg)
        assert r.output == ["slow", "fast"]
        assert finished == ["fast", "slow"]

    def test_branches_run_concurrently(self):
        reg = HandlerRegistry()

        def sleeper(value: int):
            def handler(payload):
                time.sleep(0.3)
                return value

            return handler

        for i in range(3):
            reg.register(f"b{i}", sleeper(i))
        definition = {
            "StartAt": "P",
            "States": {
                "P": {"Type": "Parallel", "Branches": [one_task(f"b{i}") for i in range(3)], "End": True}
            },
        }
        started = time.monotonic()
        r = StateMachine.from_definition(definition).run({}, handlers=reg)
        elapsed = time.monotonic() - started
        assert r.status == "SUCCEEDED"
        assert r.output == [0, 1, 2]
        assert elapsed < 0.8

    def test_each_branch_gets_the_effective_input(self):
        reg = HandlerRegistry()
        seen: list[Any] = []
        lock = threading.Lock()

        def rec(payload):
            with lock:
                seen.append(payload)
            return None

        reg.register("rec", rec)
        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "InputPath": "$.sub",
                    "Parameters": {"v.$": "$.v"},
                    "Branches": [one_task("rec"), one_task("rec")],
                    "ResultPath": "$.res",
                    "End": True,
                }
            },
        }
        r = run(definition, {"sub": {"v": 1}}, reg)
        assert seen == [{"v": 1}, {"v": 1}]
        assert r.output == {"sub": {"v": 1}, "res": [None, None]}

    def test_failing_branch_fails_the_state_with_its_error(self):
        reg = HandlerRegistry()
        reg.register("ok", lambda p: "ok")

        @reg.handler("bad")
        def bad(payload):
            raise TaskError("Inventory.Missing", "sku 42")

        definition = {
            "StartAt": "P",
            "States": {
                "P": {"Type": "Parallel", "Branches": [one_task("ok"), one_task("bad")], "Next": "After"},
                "After": {"Type": "Pass", "End": True},
            },
        }
        r = run(definition, {}, reg)
        assert r.status == "FAILED"
        assert (r.error, r.cause) == ("Inventory.Missing", "sku 42")
        assert [e.state_name for e in r.history if e.scope == ""] == ["P"]

    def test_parallel_result_selector(self):
        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [one_pass(Result={"a": 1}), one_pass(Result={"b": 2})],
                    "ResultSelector": {"a.$": "$[0].a", "b.$": "$[1].b"},
                    "End": True,
                }
            },
        }
        r = run(definition, {})
        assert r.output == {"a": 1, "b": 2}


# ------------------------------------------------------------------------------------------- Map


class TestMapItems:
    def test_items_path_and_item_processor(self):
        reg = HandlerRegistry()
        reg.register("item", lambda p: p * 2)
        r = run(map_machine({"ItemsPath": "$.nums", "ResultPath": "$.doubled"}), {"nums": [1, 2, 3]}, reg)
        assert r.status == "SUCCEEDED"
        assert r.output == {"nums": [1, 2, 3], "doubled": [2, 4, 6]}

    def test_default_items_path_is_the_input(self):
        reg = HandlerRegistry()
        reg.register("item", lambda p: p + 1)
        r = run(map_machine({}), [1, 2], reg)
        assert r.output == [2, 3]

    def test_item_selector(self):
        reg = HandlerRegistry()
        seen: list[Any] = []
        lock = threading.Lock()

        def item(payload):
            with lock:
                seen.append(payload)
            return payload["index"]

        reg.register("item", item)
        selector = {
            "index.$": "$$.Map.Item.Index",
            "value.$": "$$.Map.Item.Value",
            "shared.$": "$.shared",
            "k": 1,
        }
        r = run(
            map_machine({"ItemsPath": "$.items", "ItemSelector": selector}),
            {"items": ["a", "b"], "shared": 7},
            reg,
        )
        assert r.status == "SUCCEEDED"
        assert r.output == [0, 1]
        assert sorted(seen, key=lambda p: p["index"]) == [
            {"index": 0, "value": "a", "shared": 7, "k": 1},
            {"index": 1, "value": "b", "shared": 7, "k": 1},
        ]

    def test_legacy_parameters_and_iterator(self):
        definition = {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "Parameters": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"},
                    "Iterator": one_pass(Parameters={"sum.$": "States.MathAdd($.i, $.v)"}),
                    "End": True,
                }
            },
        }
        r = run(definition, {"items": [10, 20, 30]})
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == [{"sum": 10}, {"sum": 21}, {"sum": 32}]

    def test_map_input_path_then_items_path(self):
        definition = map_machine(
            {
                "InputPath": "$.order",
                "ItemsPath": "$.lines",
                "ItemSelector": {"sku.$": "$$.Map.Item.Value.sku"},
            },
            one_pass(),
        )
        r = run(definition, {"order": {"lines": [{"sku": "a", "q": 1}, {"sku": "b", "q": 2}]}})
        assert r.output == [{"sku": "a"}, {"sku": "b"}]

    def test_outputs_in_input_order_when_items_finish_out_of_order(self):
        reg = HandlerRegistry()
        finished: list[int] = []
        lock = threading.Lock()

        def item(payload):
            time.sleep(0.05 * (5 - payload))
            with lock:
                finished.append(payload)
            return {"i": payload}

        reg.register("item", item)
        r = StateMachine.from_definition(map_machine({})).run([0, 1, 2, 3, 4], handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output == [{"i": i} for i in range(5)]
        assert finished != sorted(finished)  # they really did finish out of order

    def test_result_selector_on_the_result_array(self):
        reg = HandlerRegistry()
        reg.register("item", lambda p: {"v": p})
        fields = {
            "ResultSelector": {"count.$": "States.ArrayLength($)", "first.$": "$[0].v", "all.$": "$[*].v"},
            "ResultPath": "$.summary",
            "ItemsPath": "$.xs",
        }
        r = run(map_machine(fields), {"xs": [5, 6, 7]}, reg)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == {"xs": [5, 6, 7], "summary": {"count": 3, "first": 5, "all": [5, 6, 7]}}

    def test_empty_array_gives_empty_list(self):
        reg = HandlerRegistry()
        calls: list[Any] = []
        reg.register("item", lambda p: calls.append(p))
        r = run(map_machine({"ItemsPath": "$.xs", "ResultPath": "$.out"}), {"xs": []}, reg)
        assert r.status == "SUCCEEDED"
        assert r.output == {"xs": [], "out": []}
        assert calls == []

    @pytest.mark.parametrize("items", [{"a": 1}, "abc", 3, None])
    def test_items_path_not_an_array_is_runtime_even_with_catch(self, items):
        fields = {
            "ItemsPath": "$.xs",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}],
        }
        definition = map_machine(fields, one_pass())
        definition["States"]["M"].pop("End")
        definition["States"]["M"]["Next"] = "Handled"
        definition["States"]["Handled"] = {"Type": "Pass", "Result": "handled", "End": True}
        r = run(definition, {"xs": items})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_items_path_missing_is_runtime(self):
        r = run(map_machine({"ItemsPath": "$.nope"}, one_pass()), {"xs": []})
        assert r.status == "FAILED"
        assert r.error == "States.Runtime"

    def test_nested_map(self):
        reg = HandlerRegistry()
        reg.register("item", lambda p: p * 2)
        inner = {
            "StartAt": "Inner",
            "States": {"Inner": {"Type": "Map", "ItemProcessor": one_task("item"), "End": True}},
        }
        r = run(map_machine({"ItemsPath": "$.rows"}, inner), {"rows": [[1, 2], [3], []]}, reg)
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == [[2, 4], [6], []]

    def test_nested_map_item_context_is_the_inner_one(self):
        inner = {
            "StartAt": "Inner",
            "States": {
                "Inner": {
                    "Type": "Map",
                    "ItemsPath": "$.row",
                    "ItemSelector": {"outer.$": "$.outer", "inner.$": "$$.Map.Item.Index"},
                    "ItemProcessor": one_pass(),
                    "End": True,
                }
            },
        }
        fields = {"ItemSelector": {"outer.$": "$$.Map.Item.Index", "row.$": "$$.Map.Item.Value"}}
        r = run(map_machine(fields, inner), [["a", "b"], ["c"]])
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert r.output == [
            [{"outer": 0, "inner": 0}, {"outer": 0, "inner": 1}],
            [{"outer": 1, "inner": 0}],
        ]

    def test_map_with_multi_state_processor_and_choice(self):
        processor = {
            "StartAt": "Check",
            "States": {
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$", "NumericGreaterThan": 1, "Next": "Big"}],
                    "Default": "Small",
                },
                "Big": {"Type": "Pass", "Result": "big", "End": True},
                "Small": {"Type": "Pass", "Result": "small", "End": True},
            },
        }
        r = run(map_machine({}, processor), [0, 5, 1])
        assert r.output == ["small", "big", "small"]


class TestMapConcurrency:
    def test_max_concurrency_is_honoured(self):
        reg = HandlerRegistry()
        probe = ConcurrencyProbe(0.05)
        reg.register("item", probe)
        r = StateMachine.from_definition(map_machine({"MaxConcurrency": 2})).run(list(range(6)), handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output == list(range(6))
        assert probe.calls == 6
        assert probe.peak <= 2
        assert probe.peak == 2

    @pytest.mark.parametrize("fields", [{}, {"MaxConcurrency": 0}])
    def test_unbounded_concurrency_runs_items_together(self, fields):
        reg = HandlerRegistry()
        probe = ConcurrencyProbe(0.1)
        reg.register("item", probe)
        r = StateMachine.from_definition(map_machine(fields)).run(list(range(5)), handlers=reg)
        assert r.status == "SUCCEEDED"
        assert probe.peak > 1

    def test_max_concurrency_one_is_sequential_in_order(self):
        reg = HandlerRegistry()
        order: list[int] = []
        probe = ConcurrencyProbe(0.01)

        def item(p):
            order.append(p)
            return probe(p)

        reg.register("item", item)
        r = StateMachine.from_definition(map_machine({"MaxConcurrency": 1})).run([3, 1, 2, 0], handlers=reg)
        assert r.output == [3, 1, 2, 0]
        assert probe.peak == 1
        assert order == [3, 1, 2, 0]

    def test_max_concurrency_path(self):
        reg = HandlerRegistry()
        probe = ConcurrencyProbe(0.03)
        reg.register("item", probe)
        definition = map_machine({"ItemsPath": "$.xs", "MaxConcurrencyPath": "$.mc"})
        r = StateMachine.from_definition(definition).run({"xs": [1, 2, 3, 4], "mc": 1}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert r.output == [1, 2, 3, 4]
        assert probe.peak == 1

    def test_max_concurrency_path_two(self):
        reg = HandlerRegistry()
        probe = ConcurrencyProbe(0.05)
        reg.register("item", probe)
        definition = map_machine({"ItemsPath": "$.xs", "MaxConcurrencyPath": "$.mc"})
        r = StateMachine.from_definition(definition).run({"xs": list(range(6)), "mc": 2}, handlers=reg)
        assert r.status == "SUCCEEDED"
        assert 1 < probe.peak <= 2


class TestToleratedFailures:
    @staticmethod
    def definition(tolerance: dict[str, Any]) -> dict[str, Any]:
        processor = {
            "StartAt": "Check",
            "States": {
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Boom"}],
                    "Default": "Ok",
                },
                "Boom": {"Type": "Fail", "Error": "Item.Failed", "Cause": "asked to"},
                "Ok": {"Type": "Pass", "Result": "ok", "End": True},
            },
        }
        return map_machine(tolerance, processor)

    @staticmethod
    def items(failures: int, total: int = 10) -> list[dict[str, bool]]:
        return [{"fail": i < failures} for i in range(total)]

    def test_count_under_threshold_succeeds(self):
        r = run(self.definition({"ToleratedFailureCount": 2}), self.items(1))
        assert r.status == "SUCCEEDED", (r.error, r.cause)
        assert len(r.output) == 10
        assert r.output[1:] == ["ok"] * 9

    def test_count_over_threshold_fails(self):
        r = run(self.definition({"ToleratedFailureCount": 2}), self.items(3))
        assert r.status == "FAILED"
        assert r.error == "States.ExceedToleratedFailureThreshold"

    def test_percentage_under_threshold_succeeds(self):
        r = run(self.definition({"ToleratedFailurePercentage": 25}), self.items(1))
        assert r.status == "SUCCEEDED", (r.error, r.cause)

    def test_percentage_over_threshold_fails(self):
        r = run(self.definition({"ToleratedFailurePercentage": 25}), self.items(4))
        assert r.status == "FAILED"
        assert r.error == "States.ExceedToleratedFailureThreshold"

    def test_count_path(self):
        definition = self.definition({"ItemsPath": "$.xs", "ToleratedFailureCountPath": "$.ok"})
        assert run(definition, {"xs": self.items(2), "ok": 2}).status == "SUCCEEDED"
        assert (
            run(definition, {"xs": self.items(3), "ok": 2}).error == "States.ExceedToleratedFailureThreshold"
        )

    def test_without_tolerance_one_failure_fails_with_its_error(self):
        r = run(self.definition({}), self.items(1))
        assert r.status == "FAILED"
        assert r.error == "Item.Failed"

    def test_threshold_failure_can_be_caught(self):
        definition = self.definition({"ToleratedFailureCount": 0})
        definition["States"]["M"].pop("End")
        definition["States"]["M"]["Next"] = "Done"
        definition["States"]["M"]["Catch"] = [
            {"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Next": "Handled"}
        ]
        definition["States"]["Done"] = {"Type": "Pass", "End": True}
        definition["States"]["Handled"] = {"Type": "Pass", "Result": "handled", "End": True}
        r = run(definition, self.items(1))
        assert r.status == "SUCCEEDED"
        assert r.output == "handled"


class TestFanoutWithContext:
    def test_map_iterations_get_their_own_task_context(self):
        reg = HandlerRegistry()
        contexts: list[TaskContext] = []
        lock = threading.Lock()

        def item(payload, ctx: TaskContext):
            with lock:
                contexts.append(ctx)
            return ctx.state_name

        reg.register("item", item)
        r = StateMachine.from_definition(map_machine({})).run([1, 2, 3], handlers=reg, name="fan")
        assert r.output == ["T", "T", "T"]
        assert {c.execution_name for c in contexts} == {"fan"}
        assert {c.execution_id for c in contexts} == {r.execution_id}
        assert {c.attempt for c in contexts} == {1}

    def test_nested_history_is_scoped(self):
        reg = HandlerRegistry()
        reg.register("item", lambda p: p)
        r = run(map_machine({}), ["a", "b"], reg)
        scopes = sorted(e.scope for e in r.history if e.state_name == "T")
        assert len(scopes) == 2
        assert scopes[0] != scopes[1]
        assert [e.state_name for e in r.history if e.scope == ""] == ["M"]


# ------------------------------------------------------------------- failing fast, virtual time


class TestStoppingOnFailure:
    def test_failed_iteration_stops_items_not_yet_started(self):
        reg = HandlerRegistry()
        calls: list[int] = []
        lock = threading.Lock()

        def item(payload):
            with lock:
                calls.append(payload)
            if payload == 0:
                raise TaskError("Item.Failed", "first item")
            time.sleep(0.05)
            return payload

        reg.register("item", item)
        r = StateMachine.from_definition(map_machine({"MaxConcurrency": 2})).run(
            list(range(10)), handlers=reg
        )
        assert r.status == "FAILED"
        assert r.error == "Item.Failed"
        # AWS: the Map state fails as soon as an iteration fails and stops the rest; with two at a time,
        # at most a couple of other items can have started.
        assert len(calls) <= 5, calls

    def test_failed_branch_stops_sibling_branches(self):
        reg = HandlerRegistry()
        after: list[Any] = []
        reg.register("slow", lambda p: time.sleep(0.3))
        reg.register("after", lambda p: after.append(p))

        @reg.handler("bad")
        def bad(payload):
            raise TaskError("Branch.Failed", "now")

        definition = {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Slow",
                            "States": {
                                "Slow": {"Type": "Task", "Resource": "slow", "Next": "After"},
                                "After": {"Type": "Task", "Resource": "after", "End": True},
                            },
                        },
                        one_task("bad"),
                    ],
                    "End": True,
                }
            },
        }
        r = StateMachine.from_definition(definition).run({}, handlers=reg)
        assert r.status == "FAILED"
        assert r.error == "Branch.Failed"
        assert after == []


WAIT_10 = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "End": True}}}


class TestConcurrentWaitsOnVirtualClock:
    def test_map_iteration_waits_overlap(self):
        clock = VirtualClock(T0)
        sm = StateMachine.from_definition(map_machine({}, WAIT_10))
        r = sm.run([1, 2, 3, 4, 5], clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED"
        assert clock.now() - T0 == pytest.approx(10)

    def test_map_iteration_waits_fit_in_execution_timeout(self):
        clock = VirtualClock(T0)
        definition = {**map_machine({}, WAIT_10), "TimeoutSeconds": 30}
        r = StateMachine.from_definition(definition).run([1, 2, 3, 4, 5], clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED"
        assert r.output == [1, 2, 3, 4, 5]

    def test_parallel_branch_waits_overlap(self):
        clock = VirtualClock(T0)
        definition = {
            "StartAt": "P",
            "States": {"P": {"Type": "Parallel", "Branches": [WAIT_10, WAIT_10, WAIT_10], "End": True}},
        }
        r = StateMachine.from_definition(definition).run({"a": 1}, clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED"
        assert r.output == [{"a": 1}] * 3
        assert clock.now() - T0 == pytest.approx(10)

    def test_sequential_map_waits_add_up(self):
        clock = VirtualClock(T0)
        sm = StateMachine.from_definition(map_machine({"MaxConcurrency": 1}, WAIT_10))
        r = sm.run([1, 2, 3], clock=clock.now, sleep=clock.sleep)
        assert r.status == "SUCCEEDED"
        assert clock.now() - T0 == pytest.approx(30)
