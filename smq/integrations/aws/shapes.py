"""Parameters to a boto3 request and a boto3 response to the Task's result, by the API's model.

Step Functions spells every member in PascalCase whatever the service's model says (`StateMachineArn`
for Step Functions' own `stateMachineArn`), turns a JSON value given where the API wants text into its
JSON text (`MessageBody`, `Detail`, `Input`, an S3 object's `Body`), and gives responses back with
PascalCase member names, an object's body as text. botocore's model of the operation says which member
is which; what is not in the model is passed on as it is, for botocore to name if it is wrong.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from botocore.model import Shape
from botocore.response import StreamingBody

RESPONSE_METADATA = "ResponseMetadata"


def to_request(value: Any, shape: Shape | None) -> Any:
    """`value` (the Task's Parameters, or a part of them) as boto3 takes it for `shape`."""
    if shape is None or value is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict) and not _is_document(shape):
        members = {name.lower(): (name, member) for name, member in shape.members.items()}
        request = {}
        for key, item in value.items():
            found = members.get(key.lower())
            if found is None:
                request[key] = item  # botocore reports the unknown parameter by its name
            else:
                request[found[0]] = to_request(item, found[1])
        return request
    if kind == "list" and isinstance(value, list):
        return [to_request(item, shape.member) for item in value]  # type: ignore[attr-defined]
    if kind == "map" and isinstance(value, dict):
        return {key: to_request(item, shape.value) for key, item in value.items()}  # type: ignore[attr-defined]
    if kind == "string" and not isinstance(value, str):
        return _json_text(value)
    if kind == "blob" and not isinstance(value, (bytes, bytearray)):
        return (value if isinstance(value, str) else _json_text(value)).encode("utf-8")
    return value


def from_response(value: Any, shape: Shape | None) -> Any:
    """A boto3 response (or part) as JSON: PascalCase member names, bodies and blobs as text,
    timestamps in ISO 8601; `ResponseMetadata` left out."""
    if isinstance(value, StreamingBody):
        return _text(value.read())
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime.datetime):
        return iso_timestamp(value)
    kind = shape.type_name if shape is not None else None
    if isinstance(value, dict):
        if kind == "map":
            return {key: from_response(item, shape.value) for key, item in value.items()}  # type: ignore[union-attr]
        members = shape.members if kind == "structure" and shape is not None else {}
        return {
            _pascal(key): from_response(item, members.get(key))
            for key, item in value.items()
            if key != RESPONSE_METADATA
        }
    if isinstance(value, list):
        member = shape.member if kind == "list" else None  # type: ignore[union-attr]
        return [from_response(item, member) for item in value]
    return value


def iso_timestamp(moment: datetime.datetime) -> str:
    """As Java's Instant prints it (the SDK Step Functions runs on): UTC, `Z`, fractions only if any."""
    utc = moment.astimezone(datetime.UTC) if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _text(data: bytes) -> str:
    """An object's body: its text when it is UTF-8, else base64."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def _is_document(shape: Shape) -> bool:
    return bool(getattr(shape, "is_document_type", False))
