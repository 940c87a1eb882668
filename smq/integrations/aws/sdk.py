"""`arn:aws:states:::aws-sdk:SERVICE:ApiName`: any API of any service boto3 knows.

The Parameters are the API's request (PascalCase member names), the result its response without
metadata; errors are named in the aws-sdk style (`errors.sdk_style`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.model import OperationModel

from smq.engine.handlers import Handler, TaskContext
from smq.integrations.aws.catalog import SdkResource
from smq.integrations.aws.clients import AwsClients
from smq.integrations.aws.errors import ErrorStyle, sdk_style, task_error
from smq.integrations.aws.shapes import from_response, to_request

# Step Functions names a service by its Java 2.x client (errors.java_client_name). Where boto3's name is
# not that name without its hyphens, boto3's name (every such service of botocore 1.44's models;
# tests/unit/test_aws_catalog.py checks each against its model).
JAVA_NAME_TO_BOTO3 = {
    "applicationdiscovery": "discovery",
    "cloudwatchlogs": "logs",
    "cognitoidentityprovider": "cognito-idp",
    "costandusagereport": "cur",
    "costexplorer": "ce",
    "databasemigration": "dms",
    "directory": "ds",
    "directoryservicedata": "ds-data",
    "elasticloadbalancing": "elb",
    "elasticloadbalancingv2": "elbv2",
    "elasticsearch": "es",
    "eventbridge": "events",
    "iotdataplane": "iot-data",
    "iotjobsdataplane": "iot-jobs-data",
    "lexmodelbuilding": "lex-models",
    "lexmodelsv2": "lexv2-models",
    "lexruntimev2": "lexv2-runtime",
    "marketplacemetering": "meteringmarketplace",
    "migrationhub": "mgh",
    "pinpointsmsvoice": "sms-voice",
    "serverlessapplicationrepository": "serverlessrepo",
    "sfn": "stepfunctions",
    "simpledb": "sdb",
}


class UnknownApi(LookupError):
    """The aws-sdk resource names a service or an API boto3 does not know; the message says which."""


@dataclass(frozen=True)
class SdkApi:
    service: str  # boto3's name
    operation: OperationModel
    style: ErrorStyle


class ServiceDirectory:
    """boto3's services and their APIs, by the names Step Functions uses, read from botocore's models
    (no client, no credentials needed: `smq validate` asks too)."""

    def __init__(self) -> None:
        self._session = botocore.session.get_session()

    def api(self, resource: SdkResource) -> SdkApi:
        service = self.boto3_name(resource.service)
        model = self._session.get_service_model(service)
        operations = {name.lower(): name for name in model.operation_names}
        operation = operations.get(resource.api.lower())
        if operation is None:
            raise UnknownApi(f"aws-sdk:{resource.service} has no API named {resource.api!r}")
        return SdkApi(service, model.operation_model(operation), sdk_style(model.service_id))

    def boto3_name(self, java_name: str) -> str:
        """boto3's name of the service Step Functions calls `java_name` (boto3's own name works too)."""
        available = self._session.get_available_services()
        for name in (java_name, JAVA_NAME_TO_BOTO3.get(java_name)):
            if name is not None and name in available:
                return name
        for name in available:
            if name.replace("-", "") == java_name:
                return name
        raise UnknownApi(f"aws-sdk: no AWS service named {java_name!r} (boto3's models know none)")


def sdk_handler(api: SdkApi, clients: AwsClients) -> Handler:
    method = xform_name(api.operation.name)

    def call_api(parameters: Any, ctx: TaskContext) -> Any:
        request = to_request(parameters if parameters is not None else {}, api.operation.input_shape)
        try:
            response = getattr(clients.client(api.service), method)(**request)
        except Exception as exc:  # named as AWS names it
            raise task_error(exc, api.style) from exc
        return from_response(response, api.operation.output_shape)

    return call_api
