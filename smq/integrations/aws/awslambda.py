"""Lambda: `arn:aws:states:::lambda:invoke` and a function's ARN as the Resource, against real Lambda.

lambda:invoke takes Invoke's request (FunctionName, Payload, Qualifier, InvocationType, ClientContext,
LogType) and gives AWS's result: `ExecutedVersion`, `Payload` (the function's JSON output, parsed),
`StatusCode`, `SdkHttpMetadata`, `SdkResponseMetadata`. A function ARN as the Resource takes the
state's input as the payload and gives the function's output alone. A function that fails (Lambda's
`FunctionError`) fails the Task with the error its payload names (`errorType`) and the payload, Lambda's
JSON object, as the cause, as on AWS; Lambda's own errors are `Lambda.<Exception>`.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.response import StreamingBody

from smq.engine.handlers import Handler, TaskContext, TaskError
from smq.integrations.aws.clients import AwsClients
from smq.integrations.aws.optimized import STYLES, call, sdk_metadata
from smq.integrations.aws.shapes import from_response

STYLE = STYLES["lambda"]
# A function error whose payload names no errorType (a payload that is not Lambda's error object).
UNNAMED_FUNCTION_ERROR = "Exception"


def invoke_handler(clients: AwsClients) -> Handler:
    def invoke(parameters: Any, ctx: TaskContext) -> Any:
        if not isinstance(parameters, dict):
            raise TaskError(
                "States.TaskFailed", "lambda:invoke takes an object of parameters (FunctionName, Payload)"
            )
        request = dict(parameters)
        if "Payload" in request:
            request["Payload"] = payload_bytes(request["Payload"])
        response = call(clients, "lambda", "Invoke", request, STYLE)
        payload = _function_output(response)
        model = clients.service_model("lambda").operation_model("Invoke")
        result: dict[str, Any] = from_response(response, model.output_shape)
        result.update(sdk_metadata(response), Payload=payload)
        return dict(sorted(result.items()))

    return invoke


def function_handler(clients: AwsClients, function_arn: str) -> Handler:
    def invoke_function(payload: Any, ctx: TaskContext) -> Any:
        request = {"FunctionName": function_arn, "Payload": payload_bytes(payload)}
        return _function_output(call(clients, "lambda", "Invoke", request, STYLE))

    return invoke_function


def payload_bytes(payload: Any) -> bytes:
    """A JSON value as its JSON text; a string that is JSON text already as it is (as AWS sends it)."""
    if isinstance(payload, str):
        try:
            json.loads(payload)
            return payload.encode("utf-8")
        except ValueError:
            pass
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _function_output(response: dict[str, Any]) -> Any:
    """The function's output, parsed (its text when it is not JSON); its error raised as the Task's."""
    body = response.pop("Payload", b"")
    data = body.read() if isinstance(body, StreamingBody) else body
    text = data.decode("utf-8", errors="replace") if isinstance(data, (bytes, bytearray)) else str(data)
    try:
        output = json.loads(text) if text else None
    except ValueError:
        output = text
    if response.get("FunctionError"):
        named = output.get("errorType") if isinstance(output, dict) else None
        raise TaskError(named if isinstance(named, str) and named else UNNAMED_FUNCTION_ERROR, text)
    return output
