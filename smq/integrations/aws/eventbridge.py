"""EventBridge: `arn:aws:states:::events:putEvents`.

As AWS does: an entry's `Detail` given as a JSON value is sent as its text; the state machine's and the
execution's ARNs are added to each entry's `Resources`; a response with failed entries fails the Task
with `EventBridge.FailedEntry` and the response as the cause. The result is PutEvents' response
(`Entries`, `FailedEntryCount`), without HTTP metadata.
"""

from __future__ import annotations

import json
from typing import Any

from smq.engine.handlers import Handler, TaskContext, TaskError
from smq.integrations.aws.clients import AwsClients
from smq.integrations.aws.optimized import STYLES, call
from smq.integrations.aws.shapes import from_response

STYLE = STYLES["events"]
FAILED_ENTRY = "EventBridge.FailedEntry"


def put_events_handler(clients: AwsClients) -> Handler:
    def put_events(parameters: Any, ctx: TaskContext) -> Any:
        request = dict(parameters) if isinstance(parameters, dict) else parameters
        if isinstance(request, dict) and isinstance(request.get("Entries"), list):
            callers = [arn for arn in (ctx.state_machine_arn, ctx.execution_arn) if arn]
            request["Entries"] = [_with_resources(entry, callers) for entry in request["Entries"]]
        response = call(clients, "events", "PutEvents", request, STYLE)
        model = clients.service_model("events").operation_model("PutEvents")
        result: dict[str, Any] = from_response(response, model.output_shape)
        if result.get("FailedEntryCount"):
            raise TaskError(FAILED_ENTRY, json.dumps(result, separators=(",", ":")))
        return result

    return put_events


def _with_resources(entry: Any, callers: list[str]) -> Any:
    if not isinstance(entry, dict) or not callers:
        return entry
    resources = entry.get("Resources")
    return {**entry, "Resources": [*(resources if isinstance(resources, list) else []), *callers]}
