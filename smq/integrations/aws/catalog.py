"""Which Task resources the built-in AWS integrations serve, read from the resource text alone.

No boto3 here: `smq validate` and the error messages use this to say what installing `smq[aws]` would
serve, on machines without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTEGRATION_PREFIX = "arn:aws:states:::"
AWS_SDK = "aws-sdk"
EXTRA = "smq[aws]"
INSTALL_HINT = f"pip install '{EXTRA}'"

# The optimized integrations built in: resource path -> (boto3 service, operation). DynamoDB's optimized
# integration has these four APIs only (Query and the rest go through aws-sdk:dynamodb, as in AWS).
OPTIMIZED: dict[str, tuple[str, str]] = {
    "lambda:invoke": ("lambda", "Invoke"),
    "dynamodb:getItem": ("dynamodb", "GetItem"),
    "dynamodb:putItem": ("dynamodb", "PutItem"),
    "dynamodb:updateItem": ("dynamodb", "UpdateItem"),
    "dynamodb:deleteItem": ("dynamodb", "DeleteItem"),
    "sqs:sendMessage": ("sqs", "SendMessage"),
    "sns:publish": ("sns", "Publish"),
    "events:putEvents": ("events", "PutEvents"),
}

_LAMBDA_FUNCTION = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:[^:]+(:[^:]+)?$")


@dataclass(frozen=True)
class SdkResource:
    """`arn:aws:states:::aws-sdk:SERVICE:ApiName`: the service as Step Functions spells it (the AWS
    SDK for Java 2.x client's name, lower case: `sfn`, `eventbridge`, `dynamodb`) and the API."""

    service: str
    api: str


def integration_path(resource: str) -> str | None:
    """`arn:aws:states:::dynamodb:putItem` -> `dynamodb:putItem`; None for other resources."""
    return resource[len(INTEGRATION_PREFIX) :] if resource.startswith(INTEGRATION_PREFIX) else None


def sdk_resource(resource: str) -> SdkResource | None:
    path = integration_path(resource)
    if path is None:
        return None
    parts = path.split(":")
    if len(parts) != 3 or parts[0] != AWS_SDK or not parts[1] or not parts[2]:
        return None
    return SdkResource(parts[1], parts[2])


def is_lambda_function(resource: str) -> bool:
    """A Lambda function's ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`)."""
    return bool(_LAMBDA_FUNCTION.match(resource))


def is_builtin(resource: str) -> bool:
    """Whether `smq[aws]` has an integration for this resource (its `.waitForTaskToken` suffix removed);
    for aws-sdk, whether the service and API exist is only known with boto3."""
    path = integration_path(resource)
    return path in OPTIMIZED or sdk_resource(resource) is not None or is_lambda_function(resource)


def is_service_integration(resource: str) -> bool:
    """An `arn:aws:states:::` resource: an AWS service integration, built in or not."""
    return resource.startswith(INTEGRATION_PREFIX)


def builtin_gap(resource: str) -> str | None:
    """For an `arn:aws:states:::` resource no built-in serves, whatever is installed: what to do."""
    path = integration_path(resource)
    if path is None or is_builtin(resource):
        return None
    return f"smq has no built-in integration for {path!r}: register a handler under that name"
