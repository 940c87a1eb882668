"""Retention of what no execution owns: the log of messages sent and the dead letters.

Every message sent is recorded (matched or not), and dead letters stay until an operator acts; left
alone both grow without end. Under SMQ_RETENTION the scheduler deletes them once older than the
retention, like finished executions, in short batches so no writer waits long.

Messages are deleted oldest id first: ids grow with `sent_at`, so each batch takes the first ids of the
primary key and keeps those that are old enough, and no index on `sent_at` is needed. A batch that
keeps fewer than it took has reached the messages still within the retention: the prune stops there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Delete, Engine, delete, select

from smq.repository.tables import DEAD_LETTERS, MESSAGES

DEFAULT_BATCH_SIZE = 500


@dataclass
class Pruned:
    """How many messages and dead letters a prune deleted."""

    messages: int = 0
    dead_letters: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "dead_letters": self.dead_letters}


def prune_messages(
    engine: Engine,
    before: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seconds: float | None = None,
) -> int:
    """Delete the messages sent before `before`, a batch per transaction; how many went."""
    oldest = select(MESSAGES.c.id).order_by(MESSAGES.c.id).limit(batch_size)
    statement = delete(MESSAGES).where(MESSAGES.c.id.in_(oldest), MESSAGES.c.sent_at < before)
    return _in_batches(engine, statement, batch_size, max_seconds)


def prune_dead_letters(
    engine: Engine,
    before: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seconds: float | None = None,
) -> int:
    """Delete the dead letters that failed before `before` (by their `failed_at` index); how many went."""
    c = DEAD_LETTERS.c
    oldest = select(c.task_id).where(c.failed_at < before).order_by(c.failed_at).limit(batch_size)
    return _in_batches(engine, delete(DEAD_LETTERS).where(c.task_id.in_(oldest)), batch_size, max_seconds)


def _in_batches(engine: Engine, statement: Delete, batch_size: int, max_seconds: float | None) -> int:
    """Run `statement` (which deletes at most `batch_size` rows) a transaction at a time until it
    deletes fewer, or `max_seconds` are spent (after one batch at least); how many rows went."""
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    total = 0
    while True:
        with engine.begin() as connection:
            gone = connection.execute(statement).rowcount
        total += gone
        if gone < batch_size or (deadline is not None and time.monotonic() >= deadline):
            return total
