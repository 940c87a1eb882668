"""Dead letters that survive a database outage: spooled in Redis until the database takes them.

A task is dead-lettered when it can no longer run, and the commonest reason is the database being down;
that is exactly when the dead letter cannot be written there. So a worker that cannot write one pushes
it, as JSON, onto a list on the broker (`smq:dead-letters:spool`; Redis is up, or the task could not
have been delivered) and every later writer of a dead letter, the scheduler on each pass and `smq dead`
move spooled letters into the database. Moving is idempotent (dead letters are keyed by task id), so
two drainers at once only write the same row twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis

from smq.logs import ended_fields, log_end
from smq.repository.database import database_unavailable
from smq.repository.queue_records import DeadLetters, FailedExecution

SPOOL_KEY = "smq:dead-letters:spool"
log = logging.getLogger("smq.dead_letters")
# An execution a dead letter fails gets its end line where every other execution's end is logged.
execution_log = logging.getLogger("smq.execution")

# Told of each dead letter kept (written or spooled): its reason, its queue, and the state machine of the
# execution it failed (None: none was RUNNING, or the letter waits in the spool). smq's metrics.
Recorded = Callable[[str, str | None, str | None], None]


class SpooledDeadLetters:
    """`DeadLetters.record` that never loses a letter: the database, else the broker's spool."""

    def __init__(
        self, store: DeadLetters, broker_url: str | None, on_recorded: Recorded | None = None
    ) -> None:
        self.store = store
        self.broker_url = broker_url
        self.on_recorded = on_recorded

    def record(self, **letter: Any) -> None:
        try:
            failed = self.store.record(**letter)
        except Exception as exc:
            if not database_unavailable(exc) or not self.broker_url:
                raise
            spool(self.broker_url, letter)
            self._recorded(letter, None)
            log.warning(
                "task %s: the database is unreachable (%s); its dead letter is spooled in Redis (%s) "
                "until the database is back",
                letter.get("task_id"),
                str(exc).splitlines()[0][:200],
                SPOOL_KEY,
            )
            return
        self._recorded(letter, failed.state_machine_id if failed else None)
        if failed is not None:
            log_failed(failed)
        if self.broker_url:
            try:
                drain_spool(self.store, self.broker_url)  # the database is back: letters spooled earlier
            except Exception:
                log.warning("could not move spooled dead letters into the database", exc_info=True)

    def _recorded(self, letter: dict[str, Any], failed: str | None) -> None:
        if self.on_recorded is not None:
            self.on_recorded(str(letter.get("reason")), letter.get("queue"), failed)


def log_failed(failed: FailedExecution) -> None:
    """The end line of an execution a dead letter failed, naming it (not whatever context is bound)."""
    log_end(execution_log, ended_fields(failed), level=logging.WARNING)


def spool(broker_url: str, letter: dict[str, Any]) -> None:
    """Append one dead letter to the spool (JSON; times as ISO-8601 text)."""
    text = json.dumps(letter, default=_iso, separators=(",", ":"))
    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    try:
        client.rpush(SPOOL_KEY, text)
    finally:
        client.close()


def drain_spool(store: DeadLetters, broker_url: str, *, limit: int = 1000) -> int:
    """Move up to `limit` spooled dead letters into the database, oldest first; returns how many.

    Each is removed from the spool only after its row is written, so a crash in between writes it
    twice (the same row), never zero times. An entry that is not a dead letter is kept in the database
    as one (reason `spool_unreadable`, its text as payload) rather than dropped."""
    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    moved = 0
    try:
        entries: list[bytes] = client.lrange(SPOOL_KEY, 0, limit - 1)  # type: ignore[assignment]
        for raw in entries:
            failed = store.record(**_letter(raw))
            if failed is not None:
                log_failed(failed)
            client.lrem(SPOOL_KEY, 1, raw)  # type: ignore[arg-type]  # bytes: the very entry read
            moved += 1
    finally:
        client.close()
    if moved:
        log.info("moved %d spooled dead letter(s) into the database", moved)
    return moved


def _letter(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    try:
        letter = json.loads(text)
        fields = {
            "task_id": str(letter["task_id"]),
            "task_name": str(letter["task_name"]),
            "queue": str(letter["queue"]),
            "reason": str(letter["reason"]),
            "payload": letter.get("payload"),
            "error": str(letter["error"]),
            "traceback": letter.get("traceback"),
            "attempts": int(letter["attempts"]),
            "first_attempt_at": _time(letter.get("first_attempt_at")),
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return {
            "task_id": "spool-unreadable-" + hashlib.sha256(raw).hexdigest()[:32],
            "task_name": "unknown",
            "queue": "default",
            "reason": "spool_unreadable",
            "payload": text[:65536],
            "error": f"a spooled dead letter could not be read: {type(exc).__name__}: {exc}",
            "traceback": None,
            "attempts": 1,
        }
    return fields


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
