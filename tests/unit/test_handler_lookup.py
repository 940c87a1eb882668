"""Which handler a Task's Resource resolves to: every name a handler may be registered under, no two
integrations sharing one, and providers (the built-in integrations) only behind registered names."""

from __future__ import annotations

from typing import Any

import pytest

import smq
from smq import HandlerRegistry, StateMachine, TaskContext
from smq.engine.handlers import Handler, lookup_names

FN = "arn:aws:lambda:us-east-1:123456789012:function:charge"
INVOKE = "arn:aws:states:::lambda:invoke"


@pytest.mark.parametrize(
    ("resource", "function_name", "names"),
    [
        ("charge", None, ["charge"]),
        (FN, None, [FN, "charge"]),
        (FN + ":live", None, [FN + ":live", "charge:live", "charge"]),  # never the qualifier alone
        (INVOKE, "charge", ["charge", INVOKE, "lambda:invoke"]),
        (INVOKE, FN + ":7", [FN + ":7", "charge:7", "charge", INVOKE, "lambda:invoke"]),
        (INVOKE, "charge:live", ["charge:live", "charge", INVOKE, "lambda:invoke"]),
        (INVOKE + ".waitForTaskToken", "charge", ["charge", INVOKE, "lambda:invoke"]),
        (
            "arn:aws:states:::dynamodb:putItem",
            None,
            ["arn:aws:states:::dynamodb:putItem", "dynamodb:putItem"],
        ),
        (
            "arn:aws:states:::aws-sdk:dynamodb:putItem",
            None,
            ["arn:aws:states:::aws-sdk:dynamodb:putItem", "aws-sdk:dynamodb:putItem"],
        ),
        (
            "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            None,
            ["arn:aws:states:::sqs:sendMessage", "sqs:sendMessage"],
        ),
        (
            "arn:aws:states:us-east-1:123456789012:activity:approve",
            None,
            ["arn:aws:states:us-east-1:123456789012:activity:approve", "approve"],
        ),
        ("ask.waitForTaskToken", None, ["ask"]),
    ],
)
def test_the_names_a_resource_answers_to(resource: str, function_name: Any, names: list[str]) -> None:
    assert [name for name, _ in lookup_names(resource, function_name)] == names


def test_two_integrations_never_share_a_handler() -> None:
    registry = HandlerRegistry()
    registry.register("dynamodb:putItem", lambda p: "optimized")
    registry.register("aws-sdk:dynamodb:putItem", lambda p: "sdk")
    registry.register("putItem", lambda p: "short")
    for resource, expected in [
        ("arn:aws:states:::dynamodb:putItem", "optimized"),
        ("arn:aws:states:::aws-sdk:dynamodb:putItem", "sdk"),
        ("putItem", "short"),
    ]:
        sm = StateMachine.from_definition(
            {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": resource, "End": True}}}
        )
        assert sm.run({}, handlers=registry).output == expected, resource


def _invoke_machine(function_name: str) -> StateMachine:
    return StateMachine.from_definition(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Parameters": {"FunctionName": function_name, "Payload": {"n": 1}},
                    "End": True,
                }
            },
        }
    )


def test_a_handler_for_the_invoke_integration_takes_and_gives_the_whole_request() -> None:
    """Registered for a function: Payload in, Invoke's result around its output. Registered for the
    integration (`lambda:invoke`, or its ARN): the whole request in, its result out as it is."""
    seen: list[Any] = []
    registry = HandlerRegistry()
    registry.register("lambda:invoke", lambda request: seen.append(request) or {"StatusCode": 202})
    registry.register("charge", lambda payload: {"charged": payload["n"]})
    assert _invoke_machine("charge").run({}, handlers=registry).output == {
        "ExecutedVersion": "$LATEST",
        "Payload": {"charged": 1},
        "StatusCode": 200,
    }
    assert _invoke_machine("refund").run({}, handlers=registry).output == {"StatusCode": 202}
    assert seen == [{"FunctionName": "refund", "Payload": {"n": 1}}]


class EverythingProvider:
    """A provider that serves every resource with a handler naming it (and says why not otherwise)."""

    def __init__(self, serves: bool = True) -> None:
        self.serves = serves
        self.asked: list[str] = []

    def handler_for(self, resource: str) -> Handler | None:
        self.asked.append(resource)
        if not self.serves:
            return None

        def built_in(payload: Any, ctx: TaskContext) -> Any:
            return {"built-in": resource, "payload": payload, "execution": ctx.execution_arn}

        return built_in

    def why_not(self, resource: str) -> str | None:
        return None if self.serves else f"the provider has nothing for {resource}"


def test_providers_serve_only_what_no_registered_name_answers() -> None:
    provider = EverythingProvider()
    registry = HandlerRegistry()
    registry.add_provider(provider)
    registry.add_provider(provider)  # once
    assert registry.providers == (provider,)
    registry.register("sqs:sendMessage", lambda p: "mine")
    send = StateMachine.from_definition(
        {
            "StartAt": "T",
            "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True}},
        }
    )
    assert send.run({}, handlers=registry).output == "mine"
    assert provider.asked == []
    publish = StateMachine.from_definition(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
                    "Parameters": {"t.$": "$$.Task.Token"},
                    "End": True,
                }
            },
        },
        id="notify",
    )
    resolved = registry.resolve("arn:aws:states:::sns:publish.waitForTaskToken")
    assert (resolved.name, resolved.builtin) == ("arn:aws:states:::sns:publish", True)
    invoked = registry.resolve(INVOKE, "charge")
    assert invoked.builtin and invoked.whole_request  # the built-in invoke takes the whole request
    result = publish.run({}, handlers=registry, name="n-1")
    assert result.status == "WAITING"  # the callback task handed its token over and parked
    assert provider.asked[-1] == "arn:aws:states:::sns:publish"  # the suffix is not the provider's


def test_a_provider_says_why_it_did_not_serve() -> None:
    registry = HandlerRegistry()
    registry.add_provider(EverythingProvider(serves=False))
    with pytest.raises(smq.UnknownResourceError) as info:
        registry.resolve("arn:aws:states:::glue:startJobRun")
    assert str(info.value) == (
        "no handler registered for resource 'arn:aws:states:::glue:startJobRun' (known: none registered); "
        "the provider has nothing for arn:aws:states:::glue:startJobRun"
    )


def test_handlers_learn_the_callers_arns() -> None:
    registry = HandlerRegistry()
    registry.add_provider(EverythingProvider())
    sm = StateMachine.from_definition(
        {
            "StartAt": "T",
            "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents", "End": True}},
        },
        id="orders",
    )
    output = sm.run({"a": 1}, handlers=registry, name="o-1").output
    assert output == {
        "built-in": "arn:aws:states:::events:putEvents",
        "payload": {"a": 1},
        "execution": "arn:aws:states:us-east-1:000000000000:execution:orders:o-1",
    }


def test_an_empty_registry_is_still_a_registry() -> None:
    assert bool(HandlerRegistry()) is True and len(HandlerRegistry()) == 0
