"""The JSON payload of `execute_state_machine`, and its validation.

The payload is the whole task: a worker needs nothing else to create or resume the execution. It is
plain JSON so that it crosses Redis unchanged and can be replayed from the dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smq.engine.errors import SmqError
from smq.execution.runner import StartRequest
from smq.repository.repository import check_state_machine_id
from smq.repository.tags import MAX_TAGS, TagError, check_tags
from smq.settings import QUEUES

FIELDS = {
    "state_machine_id",
    "version",
    "name",
    "index",
    "input",
    "source_execution_id",
    "source_state_name",
    "transformer",
    "options",
    "tags",
}
# smq's own options; any other key of `options` is the caller's own, kept with the execution's tags.
OPTIONS = {"queue", "unique", "max_retries"}
MAX_NAME = 200


class InvalidTaskPayload(SmqError, ValueError):
    """A payload the task cannot run; the message names the field. Never retried."""


@dataclass(frozen=True)
class ExecutionPayload:
    state_machine_id: str
    name: str
    version: int | None = None
    index: int | None = None
    input: Any = None
    source_execution_id: str | None = None
    source_state_name: str | None = None
    transformer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return str(self.options.get("queue", "default"))

    @property
    def max_retries(self) -> int | None:
        value = self.options.get("max_retries")
        return None if value is None else int(value)

    def start_request(self) -> StartRequest:
        return StartRequest(
            self.state_machine_id,
            self.input,
            name=self.name,
            version=self.version,
            source_execution_id=self.source_execution_id,
            source_state_name=self.source_state_name,
            transformer=self.transformer,
            index=self.index,
            tags=self.tags or None,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state_machine_id": self.state_machine_id, "name": self.name}
        for key in ("version", "index", "input", "source_execution_id", "source_state_name", "transformer"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.options:
            data["options"] = dict(self.options)
        if self.tags:
            data["tags"] = dict(self.tags)
        return data


def _text(payload: dict[str, Any], key: str, *, required: bool = False, limit: int = MAX_NAME) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise InvalidTaskPayload(f"payload field {key!r} is required")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidTaskPayload(
            f"payload field {key!r} must be a non-empty string, got {type(value).__name__}"
        )
    if len(value) > limit:
        raise InvalidTaskPayload(f"payload field {key!r} is {len(value)} characters, above {limit}")
    if "\x00" in value:
        raise InvalidTaskPayload(f"payload field {key!r} contains a NUL character")
    return value


# Versions and counts are 32-bit integers in the database: a larger one is malformed, not transient.
MAX_WHOLE = 2**31 - 1


def _whole(payload: dict[str, Any], key: str, minimum: int) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_WHOLE:
        raise InvalidTaskPayload(
            f"payload field {key!r} must be an integer from {minimum} to {MAX_WHOLE}, got {value!r}"
        )
    return value


def payload_max_retries(payload: Any) -> int | None:
    """The payload's own `options.max_retries` when it is a valid one (None: absent or malformed, so
    the configured limit applies). For Celery's failure handling, which must not raise."""
    options = payload.get("options") if isinstance(payload, dict) else None
    if not isinstance(options, dict):
        return None
    try:
        return _whole(options, "max_retries", 0)
    except InvalidTaskPayload:
        return None


def parse_payload(payload: Any) -> ExecutionPayload:
    """Validate a received payload; InvalidTaskPayload names the first field at fault."""
    if not isinstance(payload, dict):
        raise InvalidTaskPayload(f"payload must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise InvalidTaskPayload(f"unknown payload field(s): {', '.join(map(repr, unknown))}")
    state_machine_id = _text(payload, "state_machine_id", required=True)
    assert state_machine_id is not None
    try:
        check_state_machine_id(state_machine_id)
    except SmqError as exc:
        raise InvalidTaskPayload(f"payload field 'state_machine_id': {exc}") from None
    name = _text(payload, "name", required=True)
    assert name is not None
    source = _text(payload, "source_execution_id", limit=64)
    if source is not None and "input" in payload and payload["input"] is not None:
        raise InvalidTaskPayload("payload fields 'input' and 'source_execution_id' exclude each other")
    source_state = _text(payload, "source_state_name")
    transformer = _text(payload, "transformer")
    if source is None and (source_state is not None or transformer is not None):
        raise InvalidTaskPayload(
            "payload fields 'source_state_name' and 'transformer' need 'source_execution_id'"
        )
    options = payload.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidTaskPayload(f"payload field 'options' must be an object, got {type(options).__name__}")
    try:
        # The caller's own option keys are user data (a free-form Options map): kept as tags; the
        # payload's `tags` win over an option of the same key.
        tags = check_tags({k: v for k, v in options.items() if k not in OPTIONS}, "payload field 'options'")
        tags.update(check_tags(payload.get("tags") or {}, "payload field 'tags'"))
    except TagError as exc:
        raise InvalidTaskPayload(str(exc)) from None
    if len(tags) > MAX_TAGS:
        raise InvalidTaskPayload(
            f"payload fields 'tags' and 'options': {len(tags)} user keys, at most {MAX_TAGS}"
        )
    if "queue" in options and options["queue"] not in QUEUES:
        raise InvalidTaskPayload(
            f"payload option 'queue' must be one of {', '.join(QUEUES)}, got {options['queue']!r}"
        )
    if "unique" in options and not isinstance(options["unique"], bool):
        raise InvalidTaskPayload(f"payload option 'unique' must be true or false, got {options['unique']!r}")
    _whole(options, "max_retries", 0)
    return ExecutionPayload(
        state_machine_id=state_machine_id,
        name=name,
        version=_whole(payload, "version", 1),
        index=_whole(payload, "index", 0),
        input=payload.get("input"),
        source_execution_id=source,
        source_state_name=source_state,
        transformer=transformer,
        options={key: value for key, value in options.items() if key in OPTIONS},
        tags=tags,
    )
