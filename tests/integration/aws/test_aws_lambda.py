"""Lambda through `arn:aws:states:::lambda:invoke` and a function ARN as the Resource, on moto.

moto runs a function's code only in Docker, which this machine (and CI) has not: these tests use
moto's Docker-less Lambda (`use_docker: false`), which answers Invoke with results queued through its
control API, and answers over HTTP, headers and all, as Lambda does. A function error is moto's own
one for an oversized response (`FunctionError: Unhandled`, Lambda's JSON error object): the shaping of
a function error is tested with it, not a function of ours raising. A missing function is moto's
Docker backend refusing the call before any container would start.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.aws.moto_server import Moto, assert_sdk_metadata, one_task, run, unique

INVOKE = "arn:aws:states:::lambda:invoke"


@pytest.fixture
def docker_less(moto: Moto) -> Iterator[None]:
    moto.moto_api("config", {"lambda": {"use_docker": False}})
    yield
    moto.moto_api("config", {"lambda": {"use_docker": True}})


@pytest.fixture
def function_arn(moto: Moto) -> str:
    role = moto.client("iam").create_role(
        RoleName=unique("role"),
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    created = moto.client("lambda").create_function(
        FunctionName=unique("fn"),
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return str(created["FunctionArn"])


def queue_results(moto: Moto, *results: Any) -> None:
    """What the next Invokes return (moto's Docker-less Lambda), each as the function's JSON output."""
    moto.moto_api("static/lambda-simple/response", {"results": [json.dumps(result) for result in results]})


def test_invoke_gives_aws_result_shape(moto: Moto, function_arn: str, docker_less: None) -> None:
    queue_results(moto, {"total": 42, "lines": [1, 2]})
    name = function_arn.rsplit(":", 1)[-1]
    sm = one_task(INVOKE, Parameters={"FunctionName": name, "Payload": {"order.$": "$.order"}})
    result = run(sm, moto.registry(), {"order": "o-1"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    out = result.output
    assert out["Payload"] == {"total": 42, "lines": [1, 2]}  # the function's output, parsed
    assert out["StatusCode"] == 200
    assert_sdk_metadata(out)
    assert {"Payload", "StatusCode", "SdkHttpMetadata", "SdkResponseMetadata"} <= set(out)


def test_invoke_sends_the_payload_as_json(moto: Moto, function_arn: str, docker_less: None) -> None:
    """With nothing queued moto's Lambda answers with the payload it received: what smq sent."""
    sm = one_task(
        INVOKE, Parameters={"FunctionName": function_arn, "Payload": {"a.$": "$.a", "b": [True, None]}}
    )
    result = run(sm, moto.registry(), {"a": "x"})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["Payload"] == {"a": "x", "b": [True, None]}


def test_function_arn_resource_gives_the_output_alone(
    moto: Moto, function_arn: str, docker_less: None
) -> None:
    queue_results(moto, "plain text")
    result = run(one_task(function_arn), moto.registry(), {"n": 1})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output == "plain text"


def test_function_error_fails_with_its_error_type_and_lambdas_json_cause(
    moto: Moto, function_arn: str, docker_less: None
) -> None:
    queue_results(moto, {"x": "y" * 6_100_000})  # moto's Lambda refuses a response over 6 MB
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": INVOKE,
                "Parameters": {"FunctionName": function_arn, "Payload": {}},
                "Catch": [{"ErrorEquals": ["Function.ResponseSizeTooLarge"], "Next": "Parse"}],
                "End": True,
            },
            "Parse": {
                "Type": "Pass",
                "Parameters": {"error.$": "$.Error", "cause.$": "States.StringToJson($.Cause)"},
                "End": True,
            },
        },
    }
    result = run(definition, moto.registry())
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["error"] == "Function.ResponseSizeTooLarge"
    assert result.output["cause"]["errorType"] == "Function.ResponseSizeTooLarge"
    assert "exceeded maximum allowed payload size" in result.output["cause"]["errorMessage"]


def test_missing_function_is_named_as_aws(moto: Moto) -> None:
    missing = f"arn:aws:lambda:us-east-1:123456789012:function:{unique('gone')}"
    registry = moto.registry()
    for sm in (one_task(INVOKE, Parameters={"FunctionName": missing, "Payload": {}}), one_task(missing)):
        result = run(sm, registry)
        assert (result.status, result.error) == ("FAILED", "Lambda.ResourceNotFoundException")
        assert (
            "(Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; " in result.cause
        )
