"""The optimized request-response integrations: DynamoDB GetItem/PutItem/UpdateItem/DeleteItem,
SQS SendMessage and SNS Publish.

Each result is the API's response plus the HTTP metadata AWS adds (`SdkHttpMetadata`: the headers as
received and sorted, the status code; `SdkResponseMetadata`: the request id), its keys in AWS's
(sorted) order. Errors are named in the Java 1.x style of these integrations (`errors.optimized_style`).
`MessageBody` and `Message` given as JSON values are sent as their JSON text, as AWS does.
"""

from __future__ import annotations

from typing import Any

from botocore import xform_name

from smq.engine.handlers import Handler, TaskContext
from smq.integrations.aws.clients import RAW_HEADERS, AwsClients
from smq.integrations.aws.errors import ErrorStyle, optimized_style, task_error
from smq.integrations.aws.shapes import RESPONSE_METADATA, from_response, to_request

STYLES = {
    "dynamodb": optimized_style("DynamoDB", "AmazonDynamoDBException", "AmazonDynamoDBv2"),
    "sqs": optimized_style("SQS", "AmazonSQSException", "AmazonSQS"),
    "sns": optimized_style("SNS", "AmazonSNSException", "AmazonSNS"),
    "lambda": optimized_style("Lambda", "AWSLambdaException", "AWSLambda"),
    "events": optimized_style("EventBridge", "AmazonEventBridgeException", "AmazonEventBridge"),
}


def call(
    clients: AwsClients, service: str, operation: str, parameters: Any, style: ErrorStyle
) -> dict[str, Any]:
    """The raw boto3 response of `operation` with the Parameters converted; AWS's error on failure."""
    try:
        client = clients.client(service)
        model = client.meta.service_model.operation_model(operation)
        request = to_request(parameters if parameters is not None else {}, model.input_shape)
        response: dict[str, Any] = getattr(client, xform_name(operation))(**request)
    except Exception as exc:  # named as AWS names it
        raise task_error(exc, style) from exc
    return response


def result_of(clients: AwsClients, service: str, operation: str, response: dict[str, Any]) -> dict[str, Any]:
    """The response as JSON with AWS's metadata, keys sorted as AWS gives them."""
    model = clients.service_model(service).operation_model(operation)
    result: dict[str, Any] = from_response(response, model.output_shape)
    result.update(sdk_metadata(response))
    return dict(sorted(result.items()))


def sdk_metadata(response: dict[str, Any]) -> dict[str, Any]:
    """`SdkHttpMetadata` and `SdkResponseMetadata`, as the AWS SDK for Java 1.x reports them."""
    metadata = response.get(RESPONSE_METADATA, {})
    received = metadata.get(RAW_HEADERS) or list(metadata.get("HTTPHeaders", {}).items())
    every: dict[str, list[str]] = {}
    for name, value in received:
        every.setdefault(name, []).append(value)
    return {
        "SdkHttpMetadata": {
            "AllHttpHeaders": every,
            "HttpHeaders": {name: every[name][-1] for name in sorted(every, key=str.lower)},
            "HttpStatusCode": metadata.get("HTTPStatusCode"),
        },
        "SdkResponseMetadata": {"RequestId": metadata.get("RequestId")},
    }


def optimized_handler(clients: AwsClients, service: str, operation: str) -> Handler:
    style = STYLES[service]

    def call_api(parameters: Any, ctx: TaskContext) -> Any:
        return result_of(clients, service, operation, call(clients, service, operation, parameters, style))

    return call_api
