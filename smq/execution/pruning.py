"""The scheduler's automatic prune (SMQ_RETENTION): executions that ended longer ago than the
retention are deleted with their history, waits and chain links (`smq.repository.retention`).

It is one of the dispatcher's chores: every minute it deletes for at most `max_seconds`, batch by
batch, then leaves the rest for its next run, so timers and recovery are never held up by a backlog
(a first run over years of history catches up over a few hours instead of in one long stall).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

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
        self.retention = Retention(repository.engine, batch_size=batch_size)
        self.retention_seconds = retention_seconds
        self.max_seconds = max_seconds

    def run(self) -> dict[str, Any]:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.retention_seconds)
        deleted = self.retention.prune(cutoff, max_seconds=self.max_seconds)
        if deleted.executions:
            log.info(
                "retention: deleted %d execution(s) ended before %s (%d history rows, %d waits)",
                deleted.executions,
                cutoff.isoformat(timespec="seconds"),
                deleted.history,
                deleted.waits,
            )
        return deleted.to_dict()
