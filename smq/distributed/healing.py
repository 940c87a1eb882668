"""Nothing enqueued is stranded: the scheduler puts back what the broker lost, without an operator.

Every few seconds (`BrokerWatch.check`, run by `smq scheduler`):

- **The broker lost its data** (Redis restarted empty, flushed, replaced; seen by smq's epoch key):
  at once, every execution handed to the queue and not yet taken (woken, redriven, recovered) gets its
  continuation published again, and every claimed name that has not started gets its kept payload
  published again, unless the broker still holds its message.
- **Messages lost without that** (`celery purge`, a leader or `smq start` killed between its claim and
  its publish): claims older than `stale_after` with no execution are looked up in the broker when it
  is cheap to (the backlog is smaller than the number of such claims, or small in absolute terms);
  those missing from it twice in a row are published again. A deep, healthy backlog is never read in
  full nor flooded: claims waiting behind it are simply still queued.

A message published twice is harmless: the first delivery creates the execution, the other finds it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from smq.distributed.broker_contents import backlog, held_task_ids, lost_its_data
from smq.distributed.client import QueueClient
from smq.distributed.dead_letter_spool import drain_spool
from smq.distributed.launcher import QueueLauncher
from smq.execution.recovery import continuations, requeue_handed_over
from smq.repository.queue_records import DeadLetters, EnqueueLedger, Unstarted
from smq.repository.repository import Repository
from smq.settings import Settings

log = logging.getLogger("smq.healing")

# A backlog at most this deep is read in full when claims look stranded (about a second of work).
SMALL_BACKLOG = 50_000
# Seconds between full reads of a small backlog while stale claims remain.
RECHECK_SECONDS = 30.0
# Seconds between clearing the kept payloads of claims that started.
FORGET_SECONDS = 60.0


@dataclass
class Healed:
    broker_lost_data: bool = False
    continuations_requeued: int = 0
    claims_republished: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "broker_lost_data": self.broker_lost_data,
            "continuations_requeued": self.continuations_requeued,
            "claims_republished": self.claims_republished,
            "errors": self.errors,
        }


class BrokerWatch:
    """The scheduler's chore with a broker (smq.execution.dispatcher.Chore), every 2 s: spooled dead
    letters moved into the database, then `check`."""

    name = "broker"
    every = 2.0

    def __init__(
        self, repository: Repository, settings: Settings, *, stale_after: float | None = None
    ) -> None:
        if not settings.broker_url:
            raise ValueError("BrokerWatch needs a broker (SMQ_BROKER_URL)")
        self.broker_url = settings.broker_url
        self.repository = repository
        self.settings = settings
        self.launcher = QueueLauncher(repository)
        self.stale_after = settings.stranded_after if stale_after is None else stale_after
        self.ledger = EnqueueLedger(repository.engine)
        self.redis = redis.Redis.from_url(settings.broker_url, socket_timeout=10)
        self._suspects: set[tuple[str, str, str]] = set()  # missing from the broker at the last look
        self._last_look = 0.0
        self._last_forget = 0.0

    def close(self) -> None:
        self.redis.close()

    def run(self) -> dict[str, Any]:
        moved = drain_spool(DeadLetters(self.repository.engine), self.broker_url)
        return {"dead_letters_moved": moved, **self.check().to_dict()}

    def check(self) -> Healed:
        healed = Healed()
        now = time.monotonic()
        if now - self._last_forget >= FORGET_SECONDS:
            self._last_forget = now
            self.ledger.forget_started_payloads()
        if lost_its_data(self.redis):
            healed.broker_lost_data = True
            log.warning("the broker has lost its data (or is new): publishing again what it held")
            self._requeue_handed_over(healed)
            claims = self.ledger.stale_unstarted(datetime.now(UTC), limit=100_000)
            self._republish(claims, held_task_ids(self.redis), healed, confirmed=True)
            return healed
        claims = self.ledger.stale_unstarted(datetime.now(UTC) - timedelta(seconds=self.stale_after))
        if not claims:
            self._suspects.clear()
            return healed
        depth = backlog(self.redis)
        if depth < len(claims) or (depth <= SMALL_BACKLOG and now - self._last_look >= RECHECK_SECONDS):
            self._last_look = now
            self._republish(claims, held_task_ids(self.redis), healed, confirmed=False)
        return healed

    def _requeue_handed_over(self, healed: Healed) -> None:
        recovered = requeue_handed_over(self.repository, grace=self.settings.wake_grace)
        summary = self.launcher.continue_executions(continuations(recovered))
        healed.continuations_requeued = summary.enqueued
        healed.errors.extend(summary.errors)

    def _republish(self, claims: list[Unstarted], held: set[str], healed: Healed, *, confirmed: bool) -> None:
        """Publish again the claims whose message the broker no longer holds: at once after a data
        loss, otherwise when a claim was missing at the previous look too (a message is briefly in
        neither place while a worker moves it from its queue to the unacknowledged set)."""
        missing = {(c.state_machine_id, c.name, c.task_id) for c in claims if c.task_id not in held}
        due = missing if confirmed else missing & self._suspects
        self._suspects = missing - due
        if not due:
            return
        client = QueueClient(self.repository)
        for claim in claims:
            if (claim.state_machine_id, claim.name, claim.task_id) not in due:
                continue
            try:
                client.republish(claim)
                healed.claims_republished += 1
            except Exception as exc:
                healed.errors.append(f"{claim.state_machine_id}/{claim.name}: {type(exc).__name__}: {exc}")
        if healed.claims_republished:
            log.warning(
                "published again %d claimed execution(s) the broker no longer held", healed.claims_republished
            )
