"""AWS errors as Step Functions names them, so Retry and Catch match what they match on AWS.

Recorded against AWS (the LocalStack suite's snapshots): an optimized integration names an error
`<Prefix>.<Exception>` in the AWS SDK for Java 1.x's style, `DynamoDB.ConditionalCheckFailedException`,
with the service's base exception for codes the service's model does not declare
(`DynamoDB.AmazonDynamoDBException` for a ValidationException) and a cause ending in `(Service:
AmazonDynamoDBv2; Status Code: 400; Error Code: ...; Request ID: ...; Proxy: null)`. An aws-sdk
integration does the same in the Java 2.x style: the service's client name as prefix
(`DynamoDb.ConditionalCheckFailedException`, `S3.NoSuchKeyException`, `Sfn.InvalidTokenException`),
`Exception` appended where the code lacks it, `DynamoDb.DynamoDbException` for undeclared codes.
Client-side failures (no connection, no credentials) are `<Prefix>.SdkClientException` in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    ParamValidationError,
)

from smq.engine.handlers import TaskError

TASK_FAILED = "States.TaskFailed"


@dataclass(frozen=True)
class ErrorStyle:
    prefix: str  # before the dot: "DynamoDB" (optimized), "DynamoDb" (aws-sdk)
    base_exception: str  # for error codes the service's model does not declare
    service: str  # "Service: ..." in the cause
    java_v1: bool  # the cause's layout: Java 1.x ("; " and the error code) or 2.x (", ")


def optimized_style(prefix: str, base_exception: str, service: str) -> ErrorStyle:
    return ErrorStyle(prefix, base_exception, service, java_v1=True)


def sdk_style(service_id: str) -> ErrorStyle:
    """The aws-sdk style of a service, from its model's serviceId ("DynamoDB" -> "DynamoDb")."""
    name = java_client_name(service_id)
    return ErrorStyle(name, f"{name}Exception", name, java_v1=False)


def java_client_name(service_id: str) -> str:
    """The AWS SDK for Java 2.x client name of a service: its serviceId split into words (spaces,
    camel case, acronyms, digits), each capitalised, a trailing "Service" dropped: "DynamoDB" ->
    "DynamoDb", "SFN" -> "Sfn", "ACM PCA" -> "AcmPca", "Config Service" -> "Config". Step Functions names aws-sdk errors by it,
    and writes it in lower case in aws-sdk resources (`aws-sdk:sfn`)."""
    text = re.sub(r"[^A-Za-z0-9]+", " ", service_id)
    text = re.sub(r"(?<=[a-z])(?=[A-Z][A-Za-z0-9])", " ", text)  # camelCase -> camel Case
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text)  # ACMSuccess -> ACM Success
    text = re.sub(r"([0-9])([A-Za-z])", r"\1 \2", text)  # s3ec2 -> s3 ec2
    words = text.split()
    if words and words[0].lower() in ("amazon", "aws"):
        words = words[1:]
    if len(words) > 1 and words[-1].lower() == "service":  # "Config Service" -> Config
        words = words[:-1]
    return "".join(word[:1].upper() + word[1:].lower() for word in words)


def exception_name(exc: ClientError, style: ErrorStyle) -> str:
    """A declared error's shape name (boto3 raises its class), `Exception` appended where missing; the
    service's base exception for any other code."""
    declared = type(exc).__name__
    if declared == "ClientError":
        return style.base_exception
    return declared if declared.endswith("Exception") else f"{declared}Exception"


def task_error(exc: BaseException, style: ErrorStyle) -> TaskError:
    """What a call to AWS raised, as the Task's error."""
    if isinstance(exc, ClientError):
        return TaskError(f"{style.prefix}.{exception_name(exc, style)}", _cause(exc.response, style))
    if isinstance(exc, ParamValidationError):
        # Parameters the service would refuse: AWS reports its validation error (an undeclared code).
        return TaskError(f"{style.prefix}.{style.base_exception}", str(exc))
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return TaskError(f"{style.prefix}.SdkClientException", f"Unable to execute HTTP request: {exc}")
    if isinstance(exc, BotoCoreError):  # no credentials, no region, a bad endpoint: the client's own
        return TaskError(f"{style.prefix}.SdkClientException", str(exc))
    return TaskError(TASK_FAILED, f"{type(exc).__name__}: {exc}")


def _cause(response: dict[str, Any], style: ErrorStyle) -> str:
    error = response.get("Error", {})
    meta = response.get("ResponseMetadata", {})
    message = error.get("Message") or error.get("Code") or "no message"
    status = meta.get("HTTPStatusCode")
    request_id = meta.get("RequestId")
    if style.java_v1:
        return (
            f"{message} (Service: {style.service}; Status Code: {status}; Error Code: {error.get('Code')}; "
            f"Request ID: {request_id}; Proxy: null)"
        )
    details = [f"Service: {style.service}", f"Status Code: {status}", f"Request ID: {request_id}"]
    if meta.get("HostId"):
        details.append(f"Extended Request ID: {meta['HostId']}")
    return f"{message} ({', '.join(details)})"
