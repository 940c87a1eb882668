"""The scheduler's automatic prune (SMQ_RETENTION): executions that ended longer ago than the
retention are deleted with their history, waits and chain links (`smq.repository.retention`), and so
are messages sent and dead letters kept longer than that (`smq.repository.record_retention`).

It is one of the dispatcher's chores: every minute it deletes for at most `max_seconds`, batch by
batch, then leaves the rest for its next run, so timers and recovery are never held up by a backlog
(a first run over years of history catches up over a few hours instead of in one long stall).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from smq.repository.record_retention import prune_dead_letters, prune_messages
from smq.repository.repository import Repository
from smq.repository.retention import DEFAULT_BATCH_SIZE, Retention

log = logging.getLogger("smq.retention")


class PruneChore:
    """smq.execution.dispatcher.Chore: delete executions that ended more than `retention_seconds` ago."""

    name = "retention"
    every = 60.0

    def __init__(
        self,
        repository: Repository,
        retention_seconds: float,
        *,
        max_seconds: float = 1.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.engine = repository.engine
        self.retention = Retention(repository.engine, batch_size=batch_size)
        self.retention_seconds = retention_seconds
        self.max_seconds = max_seconds
        self.batch_size = batch_size

    def run(self) -> dict[str, Any]:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.retention_seconds)
        started = time.monotonic()
        deleted = self.retention.prune(cutoff, max_seconds=self.max_seconds)
        # Messages and dead letters get what is left of this run's time (at least one batch each).
        left = max(0.0, self.max_seconds - (time.monotonic() - started))
        messages = prune_messages(self.engine, cutoff, batch_size=self.batch_size, max_seconds=left / 2)
        letters = prune_dead_letters(self.engine, cutoff, batch_size=self.batch_size, max_seconds=left / 2)
        if messages or letters:
            log.info(
                "retention: deleted %d message(s) sent and %d dead letter(s) kept since before %s",
                messages,
                letters,
                cutoff.isoformat(timespec="seconds"),
            )
        if deleted.executions:
            log.info(
                "retention: deleted %d execution(s) ended before %s (%d history rows, %d waits)",
                deleted.executions,
                cutoff.isoformat(timespec="seconds"),
                deleted.history,
                deleted.waits,
            )
        return {**deleted.to_dict(), "messages": messages, "dead_letters": letters}
