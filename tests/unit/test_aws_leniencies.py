"""What AWS Step Functions accepts beyond the letter of the ASL spec, so published definitions run
unchanged (issue 23.4): a dot before an index, YAML names YAML 1.1 would read as booleans or numbers,
a Parameters that is not an object, and ARN-shaped ids in the Context object."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from smq import HandlerRegistry, StateMachine, TaskError
from smq.engine.cursor import AwsIdentity
from smq.engine.paths import compile_path
from smq.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("$.Snapshots.[0].State", ("Snapshots", 0, "State")),
        ("$.a.['b c'].[1]", ("a", "b c", 1)),
        ("$.[0]", (0,)),
        ("$['x.[y']", ("x.[y",)),  # inside quotes a dot-bracket is part of the name
    ],
)
def test_a_dot_before_a_bracket_is_no_segment(text: str, keys: tuple[Any, ...]) -> None:
    assert compile_path(text).keys == keys


def test_a_dot_before_a_bracket_in_an_indefinite_path() -> None:
    path = compile_path("$.items.[*].id")
    assert not path.definite
    assert path.select({"items": [{"id": 1}, {"id": 2}]}) == [1, 2]


def test_a_definition_reading_snapshots_dot_index_runs() -> None:
    definition = {
        "StartAt": "Pick",
        "States": {"Pick": {"Type": "Pass", "Parameters": {"state.$": "$.Snapshots.[0].State"}, "End": True}},
    }
    result = StateMachine.from_definition(definition).run({"Snapshots": [{"State": "completed"}]})
    assert result.output == {"state": "completed"}


YES_NO = """
StartAt: Approved?
States:
  Approved?:
    Type: Choice
    Choices:
      - Variable: $.approved
        BooleanEquals: true
        Next: Yes
    Default: No
  Yes:
    Type: Pass
    Result: {on: off, 'y': n}
    Next: '404'
  No:
    Type: Fail
    Error: Rejected
  404:
    Type: Succeed
"""


def test_yaml_state_names_yes_no_and_numbers_stay_names() -> None:
    machine = StateMachine.from_definition(YES_NO)
    assert set(machine.definition["States"]) == {"Approved?", "Yes", "No", "404"}
    approved = machine.run({"approved": True})
    assert (approved.status, approved.output) == ("SUCCEEDED", {"on": "off", "y": "n"})
    rejected = machine.run({"approved": False})
    assert (rejected.status, rejected.error) == ("FAILED", "Rejected")


def test_yaml_true_and_false_are_still_booleans() -> None:
    text = "StartAt: A\nStates:\n  A: {Type: Pass, Result: {a: true, b: False, c: yes}, End: TRUE}\n"
    assert StateMachine.from_definition(text).run({}).output == {"a": True, "b": False, "c": "yes"}


def test_parameters_may_be_an_array_of_templates_on_a_pass_state() -> None:
    definition = {
        "StartAt": "List",
        "States": {
            "List": {
                "Type": "Pass",
                "Parameters": [{"Prop.$": "$.a", "Fixed": 1}, {"Prop.$": "$.b"}, "plain"],
                "ResultPath": "$.list",
                "End": True,
            }
        },
    }
    result = StateMachine.from_definition(definition).run({"a": "x", "b": "y"})
    assert result.output["list"] == [{"Prop": "x", "Fixed": 1}, {"Prop": "y"}, "plain"]


def test_a_bad_path_inside_array_parameters_is_named() -> None:
    definition = {
        "StartAt": "List",
        "States": {"List": {"Type": "Pass", "Parameters": [{"Prop.$": "a"}], "End": True}},
    }
    with pytest.raises(Exception, match=r"States\.List\.Parameters\[0\]\.Prop"):
        StateMachine.from_definition(definition)


CONTEXT = {
    "StartAt": "Ids",
    "States": {
        "Ids": {
            "Type": "Pass",
            "Parameters": {"execution.$": "$$.Execution.Id", "machine.$": "$$.StateMachine.Id"},
            "End": True,
        }
    },
}


def test_context_ids_are_arns_in_the_configured_region_and_account() -> None:
    machine = StateMachine.from_definition(CONTEXT, id="orders")
    default = machine.run({}, name="o-1").output
    assert default == {
        "execution": f"arn:aws:states:us-east-1:000000000000:execution:{machine.name}:o-1",
        "machine": f"arn:aws:states:us-east-1:000000000000:stateMachine:{machine.name}",
    }
    settings = Settings.from_env({"SMQ_AWS_REGION": "eu-west-3", "SMQ_AWS_ACCOUNT_ID": "123456789012"})
    assert settings.aws_identity == AwsIdentity("eu-west-3", "123456789012")
    configured = machine.run({}, name="o-2", identity=settings.aws_identity).output
    assert configured["execution"] == f"arn:aws:states:eu-west-3:123456789012:execution:{machine.name}:o-2"
    assert configured["machine"] == f"arn:aws:states:eu-west-3:123456789012:stateMachine:{machine.name}"


def test_context_ids_survive_a_resume_from_json() -> None:
    machine = StateMachine.from_definition(CONTEXT, id="orders")
    cursor = machine.begin({}, name="o-3", identity=AwsIdentity("ap-south-1", "999999999999"))
    output = StateMachine.from_definition(CONTEXT, id="orders").resume(cursor.to_json()).output
    assert output["execution"].startswith("arn:aws:states:ap-south-1:999999999999:execution:")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SMQ_AWS_REGION", "Europe"), ("SMQ_AWS_ACCOUNT_ID", "12345"), ("SMQ_AWS_ACCOUNT_ID", "abcdefghijkl")],
)
def test_a_bad_region_or_account_is_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def lambda_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    def charge(payload: Any) -> Any:
        raise ValueError(f"card declined for {payload['who']}")

    def explicit(payload: Any) -> Any:
        raise TaskError("Card.Declined", "plain words")

    registry.register("charge", charge)
    registry.register("explicit", explicit)
    return registry


def failing(resource: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"Type": "Task", "Resource": resource, "End": True}
    if parameters is not None:
        task["Parameters"] = parameters
    return {"StartAt": "Charge", "States": {"Charge": task}}


@pytest.mark.parametrize(
    ("resource", "parameters"),
    [
        ("arn:aws:lambda:us-east-1:123456789012:function:charge", None),
        ("arn:aws:states:::lambda:invoke", {"FunctionName": "charge", "Payload": {"who.$": "$.who"}}),
    ],
)
def test_a_lambda_handlers_exception_has_aws_json_cause(resource: str, parameters: Any) -> None:
    machine = StateMachine.from_definition(failing(resource, parameters))
    result = machine.run({"who": "ann"}, handlers=lambda_registry())
    assert (result.status, result.error) == ("FAILED", "ValueError")
    cause = json.loads(result.cause)
    assert cause["errorMessage"] == "card declined for ann"
    assert cause["errorType"] == "ValueError"
    assert uuid.UUID(cause["requestId"])
    assert any("raise ValueError" in frame for frame in cause["stackTrace"])


def test_a_plain_handlers_cause_and_explicit_errors_stay_text() -> None:
    plain = StateMachine.from_definition(failing("charge")).run({"who": "bo"}, handlers=lambda_registry())
    assert (plain.error, plain.cause) == ("ValueError", "card declined for bo")
    explicit = StateMachine.from_definition(
        failing("arn:aws:lambda:us-east-1:123456789012:function:explicit")
    ).run({}, handlers=lambda_registry())
    assert (explicit.error, explicit.cause) == ("Card.Declined", "plain words")


def test_a_catcher_can_parse_the_lambda_cause() -> None:
    definition = failing("arn:aws:lambda:us-east-1:123456789012:function:charge")
    definition["States"]["Charge"]["Catch"] = [
        {"ErrorEquals": ["ValueError"], "ResultPath": "$.error", "Next": "Parse"}
    ]
    del definition["States"]["Charge"]["End"]
    definition["States"]["Charge"]["Next"] = "Parse"
    definition["States"]["Parse"] = {
        "Type": "Pass",
        "Parameters": {"cause.$": "States.StringToJson($.error.Cause)"},
        "End": True,
    }
    result = StateMachine.from_definition(definition).run({"who": "cy"}, handlers=lambda_registry())
    assert result.output["cause"]["errorMessage"] == "card declined for cy"
