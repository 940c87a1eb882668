"""What comes off a queue that is not a task smq can run: it goes to the dead letters, the worker goes on.

Celery and kombu log such a message and drop it, or, for an item of a queue's Redis list that is not
a kombu message at all (`redis-cli LPUSH default 'text'`), crash the worker's main process. Each is
caught where it first shows, in the worker's main process, and recorded with what is known of it and
its raw text (capped at RAW_LIMIT) under a reason:

- `malformed_envelope`: not a kombu message (checked by `Channel`, smq's Redis transport), or a
  message Celery cannot make a task request of (no task name or id, a body not `[args, kwargs, embed]`);
- `undecodable_body`: the body is not what its content type says (not JSON);
- `content_type_refused`: any content type but JSON (pickle included): smq decodes nothing else;
- `unknown_task`: a task name this worker does not have;
- `invalid_arguments`: arguments that do not fit the task's signature, which would otherwise fail in
  the pool as an ordinary TypeError and be retried as if the infrastructure had failed.

None of these can be replayed: `smq dead retry` refuses them (BAD_MESSAGE_REASONS).
"""

from __future__ import annotations

import inspect
import logging
import traceback
import uuid
from collections.abc import Callable
from queue import Empty
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.strategy import default as default_strategy
from kombu.exceptions import ContentDisallowed
from kombu.serialization import prepare_accept_content
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from smq.distributed.resources import worker_dead_letters

MALFORMED_ENVELOPE = "malformed_envelope"
UNDECODABLE_BODY = "undecodable_body"
CONTENT_TYPE_REFUSED = "content_type_refused"
UNKNOWN_TASK = "unknown_task"
INVALID_ARGUMENTS = "invalid_arguments"
BAD_MESSAGE_REASONS = frozenset(
    {MALFORMED_ENVELOPE, UNDECODABLE_BODY, CONTENT_TYPE_REFUSED, UNKNOWN_TASK, INVALID_ARGUMENTS}
)
# The raw text kept of a bad message: enough to see what it was, not a way to fill the database.
RAW_LIMIT = 64 * 1024
# Control characters but tab and newlines, escaped like undecodable bytes: NUL cannot be stored in
# PostgreSQL's JSON, and the others would reach a terminal through the logs.
_CONTROLS = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in "\t\n\r"
}

log = logging.getLogger("smq.intake")


class BadMessage(Exception):
    """A queue item that is not a kombu message; `reason` is one of BAD_MESSAGE_REASONS."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason


class InvalidArguments(InvalidTaskError):  # type: ignore[misc]
    """Celery's own error for a task message it cannot run, raised for arguments that do not fit."""


def raw_text(raw: Any, limit: int = RAW_LIMIT) -> str:
    """A message's raw bytes as text for the dead letters: UTF-8 where it is, `\\xNN` escapes for other
    bytes and control characters (a pickle stays readable), at most `limit` characters, then a note of
    the full size."""
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
    else:
        data = ("" if raw is None else str(raw)).encode("utf-8", "surrogatepass")
    text = data[:limit].decode("utf-8", "backslashreplace").translate(_CONTROLS)
    if len(data) <= limit and len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(data)} bytes in all, cut]"


def envelope(item: bytes | str, decode_body: Callable[[Any, Any], Any]) -> dict[str, Any]:
    """The kombu message in a queue item of kombu's Redis transport, or BadMessage: every field kombu
    reads before Celery can refuse the message itself (`decode_body` is the channel's)."""
    try:
        message = loads(bytes_to_str(item))
    except ValueError as exc:
        raise BadMessage(MALFORMED_ENVELOPE, f"not a kombu message: not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise BadMessage(MALFORMED_ENVELOPE, f"not a kombu message: JSON {type(message).__name__}")
    properties = message.get("properties")
    info = properties.get("delivery_info") if isinstance(properties, dict) else None
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
        raise BadMessage(MALFORMED_ENVELOPE, "not a kombu message: no properties.delivery_tag")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        raise BadMessage(MALFORMED_ENVELOPE, "not a kombu message: no properties.delivery_info")
    body, encoding = message.get("body"), properties.get("body_encoding")
    if not isinstance(body, str) or not isinstance(encoding, str | None):
        raise BadMessage(MALFORMED_ENVELOPE, "not a kombu message: no text body")
    if not isinstance(message.get("content-type"), str | None):
        raise BadMessage(MALFORMED_ENVELOPE, "not a kombu message: content-type is not text")
    if message.get("headers") and not isinstance(message["headers"], dict):
        raise BadMessage(MALFORMED_ENVELOPE, "not a kombu message: headers are not an object")
    try:
        decode_body(body, encoding)
    except (ValueError, TypeError, AttributeError) as exc:  # AttributeError: an unknown body encoding
        raise BadMessage(MALFORMED_ENVELOPE, f"body does not decode as {encoding!r}: {exc}") from None
    return message


def dead_letter(
    raw: Any,
    *,
    reason: str,
    error: str,
    queue: Any,
    task_id: Any = None,
    task_name: Any = None,
    trace: str | None = None,
) -> None:
    """Record a bad message in the dead letters from the worker's main process; never raises (a bad
    message must not stop the worker), and if the database refuses, the raw text goes to the log."""
    text = raw_text(raw)
    key = task_id if isinstance(task_id, str) and 0 < len(task_id) <= 255 else str(uuid.uuid4())
    queue = (queue if isinstance(queue, str) and queue else "default")[:50]
    log.warning("bad message on %s dead-lettered as %s (task id %s): %s", queue, reason, key, error)
    try:
        worker_dead_letters().record(
            task_id=key,
            task_name=(task_name if isinstance(task_name, str) and task_name else "-")[:200],
            queue=queue,
            reason=reason,
            payload=text,
            error=error,
            traceback=trace,
            attempts=1,
        )
    except Exception:
        log.exception("bad message %s: dead letter not written; its raw text: %s", key, text)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, except that a queue item which is not a kombu message is dead-lettered
    instead of raising in the worker's event loop (which would end the worker, the item lost)."""

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's _brpop_read, with `envelope` between the item and its delivery.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                message = envelope(item, self.decode_body)
            except BadMessage as bad:
                dead_letter(item, reason=bad.reason, error=str(bad), queue=dest)
                return True
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # as kombu does
            self._flush_brpop_reauth()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """The Redis transport of smq's workers (celeryconfig's broker_transport for redis:// URLs)."""

    Channel = Channel


def _message_fields(message: Any) -> tuple[Any, Any, Any]:
    """(task id, task name, queue) of a kombu message, whatever its headers hold."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    return headers.get("id"), headers.get("task"), info.get("routing_key") or info.get("exchange")


def refuse(message: Any, reason: str, error: str, trace: str | None = None) -> None:
    """Dead-letter a kombu message Celery will not run, with its body as raw text."""
    task_id, task_name, queue = _message_fields(message)
    dead_letter(
        message.body,
        reason=reason,
        error=error,
        queue=queue,
        task_id=task_id,
        task_name=task_name,
        trace=trace,
    )


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer (celeryconfig's worker_consumer): each message Celery logs and drops (or would
    crash on) is dead-lettered first."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        if isinstance(exc, ContentDisallowed):
            refuse(message, CONTENT_TYPE_REFUSED, _refused(message))
        else:
            error = f"the body is not {message.content_type!r}: {type(exc).__name__}: {exc}"
            refuse(message, UNDECODABLE_BODY, error)
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        refuse(message, MALFORMED_ENVELOPE, "not a task message: no task name in its headers")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        _, name, _ = _message_fields(message)
        refuse(message, UNKNOWN_TASK, f"no task named {name!r} on this worker")
        try:
            super().on_unknown_task(body, message, exc)
        except Exception:  # Celery reads a task id from headers or body that may not have one
            log.exception("unknown task message")
            self._settle(message)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        if isinstance(exc, InvalidArguments):
            refuse(message, INVALID_ARGUMENTS, str(exc))
        elif isinstance(exc, ContentDisallowed):
            refuse(message, CONTENT_TYPE_REFUSED, _refused(message))
        else:
            refuse(message, MALFORMED_ENVELOPE, f"not a valid task message: {exc}")
        super().on_invalid_task(body, message, exc)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Celery's handler of each task message, made unable to raise into the event loop: whatever a
        message makes it fail on (a task name that is a list, headers Celery's Request cannot read) is
        that message's fault."""
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except Exception as exc:
                log.exception("task message refused")
                error = f"not a valid task message: {type(exc).__name__}: {exc}"
                refuse(message, MALFORMED_ENVELOPE, error, traceback.format_exc())
                self._settle(message)
                return None

        return on_task_received

    def _settle(self, message: Any) -> None:
        if not message.acknowledged:
            message.reject_log_error(log, self.connection_errors)


def _refused(message: Any) -> str:
    return f"content type {message.content_type!r} refused: smq takes JSON only"


def checked_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default strategy (the task's `Strategy`), run only for messages the task can take: JSON,
    a task id, a body of `[args, kwargs, embed]` whose arguments bind to the task's signature. Else
    InvalidTaskError, which Celery hands to the consumer's on_invalid_task."""
    handle = default_strategy(task, app, consumer, **options)
    signature = inspect.signature(task.run)
    shown = (
        f"{task.name}({', '.join(str(p.replace(annotation=p.empty)) for p in signature.parameters.values())})"
    )
    accepted = prepare_accept_content(app.conf.accept_content)

    def on_message(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        if message.content_type not in accepted:
            raise ContentDisallowed(_refused(message))
        task_id = (message.headers if body is None else body).get("id")  # body: protocol 1
        if not isinstance(task_id, str) or not task_id:
            raise InvalidTaskError(f"task id {task_id!r} in the headers is not a non-empty string")
        arguments, keywords = _arguments(message.payload if body is None else body)
        try:
            signature.bind(*arguments, **keywords)
        except TypeError as exc:
            raise InvalidArguments(f"arguments do not fit {shown}: {exc}") from None
        return handle(message, body, *args, **kwargs)

    return on_message


def _arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments of a decoded task body (protocol 2, or 1 for old clients)."""
    if isinstance(payload, dict):  # protocol 1: {"task", "id", "args", "kwargs", ...}
        arguments, keywords, embed = payload.get("args", []), payload.get("kwargs", {}), {}
    elif isinstance(payload, list) and len(payload) == 3:
        arguments, keywords, embed = payload
    else:
        raise InvalidTaskError(f"the body is a JSON {type(payload).__name__}, not (args, kwargs, embed)")
    if not isinstance(arguments, list) or not isinstance(keywords, dict) or not isinstance(embed, dict):
        raise InvalidArguments("the body is not (args: list, kwargs: object, embed: object)")
    return arguments, keywords
