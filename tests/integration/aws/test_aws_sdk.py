"""The generic `arn:aws:states:::aws-sdk:SERVICE:ApiName` integration on moto (S3 object bodies, Step
Functions' own camelCase API, timestamps), what a user's handler overrides, and what the client says
when AWS cannot be reached."""

from __future__ import annotations

import json
import re
import socket

import pytest

import smq
from smq import HandlerRegistry
from smq.integrations.aws import AwsIntegrations
from tests.integration.aws.moto_server import Moto, one_task, run, unique

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def bucket(moto: Moto) -> str:
    name = unique("bucket")
    moto.client("s3").create_bucket(Bucket=name)
    return name


def test_s3_put_and_get_object(moto: Moto, bucket: str) -> None:
    definition = {
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {"Bucket": bucket, "Key": "orders/o-1.json", "Body.$": "$.order"},
                "ResultPath": "$.put",
                "Next": "Get",
            },
            "Get": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {"Bucket": bucket, "Key": "orders/o-1.json"},
                "ResultSelector": {
                    "body.$": "States.StringToJson($.Body)",
                    "modified.$": "$.LastModified",
                    "etag.$": "$.ETag",
                },
                "ResultPath": "$.get",
                "End": True,
            },
        },
    }
    result = run(definition, moto.registry(), {"order": {"id": "o-1", "total": 3}})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    stored = moto.client("s3").get_object(Bucket=bucket, Key="orders/o-1.json")["Body"].read()
    assert stored == b'{"id":"o-1","total":3}'  # a JSON Body is stored as its text
    assert result.output["get"]["body"] == {"id": "o-1", "total": 3}
    assert result.output["get"]["etag"] == result.output["put"]["ETag"]
    assert ISO_UTC.match(result.output["get"]["modified"])


def test_s3_errors_are_named_as_aws(moto: Moto, bucket: str) -> None:
    registry = moto.registry()
    missing_key = run(
        one_task("arn:aws:states:::aws-sdk:s3:getObject", Parameters={"Bucket": bucket, "Key": "nope"}),
        registry,
    )
    assert missing_key.error == "S3.NoSuchKeyException"
    assert missing_key.cause.startswith(
        "The specified key does not exist. (Service: S3, Status Code: 404, Request ID: "
    )
    missing_bucket = run(
        one_task("arn:aws:states:::aws-sdk:s3:listObjectsV2", Parameters={"Bucket": bucket + "-gone"}),
        registry,
    )
    assert missing_bucket.error == "S3.NoSuchBucketException"


def test_step_functions_api_by_its_sdk_name(moto: Moto) -> None:
    """`sfn` is boto3's `stepfunctions`; its members are camelCase in the model, PascalCase in the
    definition and in the result; timestamps come back as ISO 8601 text."""
    sfn = moto.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=unique("sm"),
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    result = run(
        one_task(
            "arn:aws:states:::aws-sdk:sfn:describeStateMachine", Parameters={"StateMachineArn.$": "$.arn"}
        ),
        moto.registry(),
        {"arn": arn},
    )
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    out = result.output
    assert out["StateMachineArn"] == arn
    assert json.loads(out["Definition"])["StartAt"] == "P"
    assert ISO_UTC.match(out["CreationDate"])
    assert all(key[0].isupper() for key in out)


def test_unknown_service_or_api_is_refused_before_the_run(moto: Moto) -> None:
    registry = moto.registry()
    for resource, said in [
        ("arn:aws:states:::aws-sdk:dynamodb:putItm", "aws-sdk:dynamodb has no API named 'putItm'"),
        ("arn:aws:states:::aws-sdk:nosuchservice:doIt", "no AWS service named 'nosuchservice'"),
    ]:
        with pytest.raises(smq.UnknownResourceError, match=re.escape(said)):
            run(one_task(resource), registry)


def test_a_registered_handler_wins_over_the_built_in(moto: Moto) -> None:
    """Every name a handler may take for an integration overrides the built-in, and only that one."""
    table = moto.table("t")
    put = {"TableName": table, "Item": {"pk": {"S": "1"}}}
    for name, resource in [
        ("dynamodb:putItem", "arn:aws:states:::dynamodb:putItem"),
        ("arn:aws:states:::dynamodb:putItem", "arn:aws:states:::dynamodb:putItem"),
        ("aws-sdk:dynamodb:putItem", "arn:aws:states:::aws-sdk:dynamodb:putItem"),
    ]:
        registry = moto.registry()
        registry.register(name, lambda parameters: {"mine": parameters["TableName"]})
        result = run(one_task(resource, Parameters=put), registry)
        assert result.output == {"mine": table}, name
        # The other integration is still the built-in one: it wrote the item.
        other = (
            "arn:aws:states:::aws-sdk:dynamodb:putItem"
            if "aws-sdk" not in name
            else "arn:aws:states:::dynamodb:putItem"
        )
        assert run(one_task(other, Parameters=put), registry).status == "SUCCEEDED"
    assert moto.client("dynamodb").scan(TableName=table)["Count"] == 1

    registry = HandlerRegistry()
    registry.register("putItem", lambda parameters: "short name")  # the old, ambiguous fallback
    with pytest.raises(smq.UnknownResourceError):
        run(one_task("arn:aws:states:::dynamodb:putItem", Parameters=put), registry)


def test_unreachable_aws_is_an_sdk_client_exception(moto: Moto) -> None:
    from botocore.config import Config

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    registry = HandlerRegistry()
    registry.add_provider(
        AwsIntegrations(moto.session, endpoint_url=closed, config=Config(retries={"total_max_attempts": 1}))
    )
    for resource, error in [
        ("arn:aws:states:::dynamodb:getItem", "DynamoDB.SdkClientException"),
        ("arn:aws:states:::aws-sdk:dynamodb:getItem", "DynamoDb.SdkClientException"),
    ]:
        result = run(one_task(resource, Parameters={"TableName": "t", "Key": {"pk": {"S": "1"}}}), registry)
        assert result.error == error
        assert result.cause.startswith("Unable to execute HTTP request: ")
