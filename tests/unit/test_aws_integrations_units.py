"""The built-in AWS integrations' parts that need no server: how services, APIs and errors are named,
how Parameters become a request and a response becomes a result (by botocore's real models), how the
edges install them, and that the engine never imports boto3."""

from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys

import botocore.session
import pytest
from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError
from botocore.response import StreamingBody

import smq.integrations as integrations
from smq import HandlerRegistry, StateMachine
from smq.engine.errors import UnknownResourceError
from smq.integrations import Unavailable, install_integrations, resource_notes
from smq.integrations.aws import AwsIntegrations
from smq.integrations.aws.catalog import SdkResource, is_builtin, sdk_resource
from smq.integrations.aws.errors import java_client_name, optimized_style, sdk_style, task_error
from smq.integrations.aws.sdk import JAVA_NAME_TO_BOTO3, ServiceDirectory, UnknownApi
from smq.integrations.aws.shapes import from_response, iso_timestamp, to_request
from smq.settings import Settings, SettingsError

BOTOCORE = botocore.session.get_session()


def operation(service: str, name: str):  # noqa: ANN201 - botocore's OperationModel
    return BOTOCORE.get_service_model(service).operation_model(name)


@pytest.mark.parametrize(
    ("service_id", "name"),
    [
        ("DynamoDB", "DynamoDb"),
        ("SFN", "Sfn"),
        ("ACM PCA", "AcmPca"),  # AWS's documented example: AcmPca.ResourceNotFoundException
        ("S3", "S3"),
        ("EventBridge", "EventBridge"),
        ("Secrets Manager", "SecretsManager"),
        ("CloudWatch Logs", "CloudWatchLogs"),
        ("EC2", "Ec2"),
        ("Config Service", "Config"),
    ],
)
def test_service_names_as_step_functions_writes_them(service_id: str, name: str) -> None:
    assert java_client_name(service_id) == name


def test_every_alias_names_the_service_it_maps_to() -> None:
    loader = BOTOCORE.get_component("data_loader")
    for java_name, boto3_name in JAVA_NAME_TO_BOTO3.items():
        service_id = loader.load_service_model(boto3_name, "service-2")["metadata"]["serviceId"]
        assert java_client_name(service_id).lower() == java_name, boto3_name


def test_the_directory_finds_apis_by_step_functions_names() -> None:
    directory = ServiceDirectory()
    for sdk_name, boto3_name, api, operation_name, prefix in [
        ("sfn", "stepfunctions", "startExecution", "StartExecution", "Sfn"),
        ("eventbridge", "events", "putEvents", "PutEvents", "EventBridge"),
        ("dynamodb", "dynamodb", "putitem", "PutItem", "DynamoDb"),
        ("bedrockruntime", "bedrock-runtime", "converse", "Converse", "BedrockRuntime"),
        ("s3", "s3", "listObjectsV2", "ListObjectsV2", "S3"),
    ]:
        found = directory.api(SdkResource(sdk_name, api))
        assert (found.service, found.operation.name, found.style.prefix) == (
            boto3_name,
            operation_name,
            prefix,
        )
    with pytest.raises(UnknownApi, match="aws-sdk:sqs has no API named 'sendMesage'"):
        directory.api(SdkResource("sqs", "sendMesage"))
    with pytest.raises(UnknownApi, match="no AWS service named 'dynamo'"):
        directory.api(SdkResource("dynamo", "putItem"))


def test_resources_the_built_ins_serve() -> None:
    assert sdk_resource("arn:aws:states:::aws-sdk:s3:getObject") == SdkResource("s3", "getObject")
    assert sdk_resource("arn:aws:states:::aws-sdk:s3") is None
    assert is_builtin("arn:aws:states:::dynamodb:putItem")
    assert not is_builtin("arn:aws:states:::dynamodb:query")  # AWS's optimized DynamoDB has 4 APIs
    assert is_builtin("arn:aws:lambda:eu-west-1:123456789012:function:f:prod")
    assert not is_builtin("arn:aws:states:::glue:startJobRun")
    assert not is_builtin("charge-card")


def test_parameters_become_the_request_by_the_model() -> None:
    put = operation("dynamodb", "PutItem")
    request = to_request(
        {
            "tableName": "t",
            "Item": {"id": {"S": "1"}, "n": {"N": 5}, "tags": {"L": [{"S": "a"}]}},
            "Unknown": 1,
        },
        put.input_shape,
    )
    # member names as the model spells them, map keys as given, JSON values where text goes as text
    assert request == {
        "TableName": "t",
        "Item": {"id": {"S": "1"}, "n": {"N": "5"}, "tags": {"L": [{"S": "a"}]}},
        "Unknown": 1,
    }
    send = to_request(
        {"QueueUrl": "q", "MessageBody": {"a": [1, "é"]}}, operation("sqs", "SendMessage").input_shape
    )
    assert send["MessageBody"] == '{"a":[1,"é"]}'
    body = to_request({"Bucket": "b", "Key": "k", "Body": {"x": 1}}, operation("s3", "PutObject").input_shape)
    assert body["Body"] == b'{"x":1}'
    start = to_request(
        {"StateMachineArn": "arn", "Input": {"a": 1}},
        operation("stepfunctions", "StartExecution").input_shape,
    )
    assert start == {"stateMachineArn": "arn", "input": '{"a":1}'}


def test_responses_become_json_in_pascal_case() -> None:
    listed = from_response(
        {
            "stateMachines": [
                {
                    "name": "sm",
                    "creationDate": datetime.datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=datetime.UTC),
                }
            ],
            "ResponseMetadata": {"RequestId": "r"},
        },
        operation("stepfunctions", "ListStateMachines").output_shape,
    )
    assert listed == {"StateMachines": [{"Name": "sm", "CreationDate": "2026-01-02T03:04:05.12Z"}]}
    got = from_response(
        {"Item": {"blob": {"B": b"\x00\xff"}, "lowerKey": {"S": "kept"}}},
        operation("dynamodb", "GetItem").output_shape,
    )
    assert got == {"Item": {"blob": {"B": "AP8="}, "lowerKey": {"S": "kept"}}}  # map keys are data
    body = from_response(
        {"Body": StreamingBody(io.BytesIO(b'{"a":1}'), 7)}, operation("s3", "GetObject").output_shape
    )
    assert body == {"Body": '{"a":1}'}
    assert iso_timestamp(datetime.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"


def _client_error(code: str, status: int = 400, cls: type[ClientError] = ClientError) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "it failed"},
        "ResponseMetadata": {"RequestId": "req-1", "HTTPStatusCode": status, "HostId": "host-1"},
    }
    return cls(response, "Op")  # type: ignore[arg-type]


def test_errors_are_named_as_aws_names_them() -> None:
    client = BOTOCORE.create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    declared = _client_error(
        "ConditionalCheckFailedException", cls=client.exceptions.ConditionalCheckFailedException
    )
    undeclared = _client_error("ValidationException")
    optimized = optimized_style("DynamoDB", "AmazonDynamoDBException", "AmazonDynamoDBv2")
    sdk = sdk_style("DynamoDB")
    assert task_error(declared, optimized).error == "DynamoDB.ConditionalCheckFailedException"
    assert task_error(declared, optimized).cause == (
        "it failed (Service: AmazonDynamoDBv2; Status Code: 400; Error Code: ConditionalCheckFailedException; "
        "Request ID: req-1; Proxy: null)"
    )
    assert task_error(declared, sdk).error == "DynamoDb.ConditionalCheckFailedException"
    assert task_error(undeclared, optimized).error == "DynamoDB.AmazonDynamoDBException"
    assert task_error(undeclared, sdk).error == "DynamoDb.DynamoDbException"
    assert task_error(undeclared, sdk).cause == (
        "it failed (Service: DynamoDb, Status Code: 400, Request ID: req-1, Extended Request ID: host-1)"
    )
    s3 = BOTOCORE.create_client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    no_such_key = _client_error("NoSuchKey", 404, cls=s3.exceptions.NoSuchKey)
    assert task_error(no_such_key, sdk_style("S3")).error == "S3.NoSuchKeyException"  # suffix added
    assert task_error(NoCredentialsError(), sdk).error == "DynamoDb.SdkClientException"
    assert (
        task_error(ParamValidationError(report="Missing Item"), optimized).error
        == "DynamoDB.AmazonDynamoDBException"
    )
    assert task_error(RuntimeError("boom"), sdk).error == "States.TaskFailed"


def test_edges_install_the_integrations_as_the_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    on = HandlerRegistry()
    assert install_integrations(on, Settings()) == "aws integrations: on"
    assert install_integrations(on, Settings()) == "aws integrations: installed already"
    assert [type(p) for p in on.providers] == [AwsIntegrations]

    off = HandlerRegistry()
    install_integrations(off, Settings(aws_integrations="off"))
    with pytest.raises(
        UnknownResourceError, match=r"smq's built-in AWS integrations are off \(SMQ_AWS_INTEGRATIONS=off\)"
    ):
        off.resolve("arn:aws:states:::aws-sdk:s3:getObject")

    monkeypatch.setattr(integrations, "boto3_installed", lambda: False)
    with pytest.raises(SettingsError, match=r"SMQ_AWS_INTEGRATIONS=on needs boto3: pip install 'smq\[aws\]'"):
        install_integrations(HandlerRegistry(), Settings(aws_integrations="on"))
    missing = HandlerRegistry()
    assert (
        install_integrations(missing, Settings())
        == "aws integrations: not installed (pip install 'smq[aws]')"
    )
    assert isinstance(missing.providers[0], Unavailable)
    with pytest.raises(UnknownResourceError, match=r"serve it: pip install 'smq\[aws\]'"):
        missing.resolve("arn:aws:states:::lambda:invoke", "charge")
    machine = StateMachine.from_definition(
        {
            "StartAt": "A",
            "States": {
                "A": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Next": "B",
                },
                "B": {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun", "Next": "C"},
                "C": {
                    "Type": "Task",
                    "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                    "End": True,
                },
            },
        }
    ).machine
    assert resource_notes(machine, missing) == [
        "States.A.Resource: 'arn:aws:states:::sqs:sendMessage': smq's built-in AWS integrations serve it: "
        "pip install 'smq[aws]'",
        "States.B.Resource: 'arn:aws:states:::glue:startJobRun': smq has no built-in integration for "
        "'glue:startJobRun': register a handler under that name",
    ]


@pytest.mark.parametrize(
    ("raw", "mode"), [("", "auto"), ("AUTO", "auto"), ("on", "on"), ("1", "on"), ("false", "off")]
)
def test_the_setting(raw: str, mode: str) -> None:
    assert Settings.from_env({"SMQ_AWS_INTEGRATIONS": raw}).aws_integrations == mode


def test_a_bad_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="SMQ_AWS_INTEGRATIONS must be auto, on or off, got 'sometimes'"):
        Settings.from_env({"SMQ_AWS_INTEGRATIONS": "sometimes"})


def test_the_engine_and_the_installed_provider_import_no_boto3() -> None:
    """boto3 costs its import only when a built-in is first asked for a resource it serves."""
    code = (
        "import sys, smq, smq.integrations\n"
        "from smq import HandlerRegistry, StateMachine, Settings\n"
        "r = HandlerRegistry(); r.register('h', lambda p: p)\n"
        "smq.integrations.install_integrations(r, Settings())\n"
        "sm = StateMachine.from_definition({'StartAt': 'T', 'States': {'T': {'Type': 'Task', 'Resource': 'h', 'End': True}}})\n"
        "assert sm.run({'a': 1}, handlers=r).output == {'a': 1}\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.replace("'", '"')) == []
