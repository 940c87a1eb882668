"""The dispatcher (`smq scheduler`): fires durable timers when due and runs the recovery scanner.

One loop: every `interval` seconds it resolves the timers due by now (Wait states, Message and
callback timeouts, heartbeat deadlines; oldest first, so it catches up after downtime) and hands the
woken executions to their continuation; every `lease_seconds / 2` it scans for executions whose lease
expired. Several dispatchers may run at once: every resolution and every claim is one conditional
update, so nothing fires or recovers twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smq.engine.handlers import HandlerRegistry
from smq.execution.continuation import ContinuationSummary, continue_executions, woken_continuations
from smq.execution.recovery import Recovered, continuations, scan
from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.repository.waits import WaitStore, Woken
from smq.settings import Settings

log = logging.getLogger("smq.dispatcher")
# Seconds between the dispatcher's looks at the broker: spooled dead letters, lost data, lost messages.
BROKER_CHECK_SECONDS = 2.0


@dataclass
class Tick:
    woken: list[Woken] = field(default_factory=list)
    recovered: list[Recovered] = field(default_factory=list)
    continued: ContinuationSummary = field(default_factory=ContinuationSummary)
    dead_letters_moved: int = 0
    healed: dict[str, Any] | None = None  # what the broker watch put back (smq.distributed.healing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timers_fired": len(self.woken),
            "recovered": [item.to_dict() for item in self.recovered],
            "continuations": self.continued.to_dict(),
            "dead_letters_moved": self.dead_letters_moved,
            "healed": self.healed,
        }


class Dispatcher:
    def __init__(
        self,
        repository: Repository,
        settings: Settings,
        *,
        handlers: HandlerRegistry | None = None,
        health_file: str | None = None,
    ):
        self.health_file = Path(health_file) if health_file else None
        self.repository = repository
        self.settings = settings
        self.handlers = handlers
        self.waits = WaitStore(repository.engine, wake_grace_seconds=settings.wake_grace)
        self._last_scan = 0.0
        self._last_broker_check = 0.0
        self._watch: Any = None  # smq.distributed.healing.BrokerWatch, made on first use (needs a broker)

    def tick(self, *, recover: bool | None = None, batch: int = 200) -> Tick:
        """Fire what is due in batches of `batch`, publishing each batch's continuations before firing
        the next (a backlog of due timers starts moving at once, and a crash mid-tick leaves at most
        one batch woken without its continuation, which the wake grace covers); then scan for crashes
        if it is time."""
        result = Tick()
        while True:
            woken = self.waits.fire_due(limit=batch)
            result.woken.extend(woken)
            items = woken_continuations(woken)
            result.continued.add(
                continue_executions(self.repository, items, self.settings, handlers=self.handlers)
            )
            if len(woken) < batch:
                break
        now = time.monotonic()
        if recover or (recover is None and now - self._last_scan >= self.settings.lease_seconds / 2):
            self._last_scan = now
            result.recovered = scan(
                self.repository,
                lease_seconds=self.settings.lease_seconds,
                default_attempts=self.settings.recovery_max_attempts,
                grace=self.settings.wake_grace,
            )
            result.continued.add(
                continue_executions(
                    self.repository, continuations(result.recovered), self.settings, handlers=self.handlers
                )
            )
        if self.settings.broker_url and now - self._last_broker_check >= BROKER_CHECK_SECONDS:
            self._last_broker_check = now
            result.dead_letters_moved = self._move_spooled_dead_letters(self.settings.broker_url)
            result.healed = self._broker_watch().check().to_dict()
        if result.woken or result.recovered or (result.healed and result.healed["claims_republished"]):
            log.info(
                "fired %d timer(s), recovered %d execution(s), %d continuation(s) enqueued",
                len(result.woken),
                len(result.recovered),
                result.continued.enqueued,
            )
        return result

    def _broker_watch(self) -> Any:
        if self._watch is None:
            from smq.distributed.healing import BrokerWatch

            self._watch = BrokerWatch(
                self.repository,
                self.settings,
                handlers=self.handlers,
                stale_after=self.settings.stranded_after,
            )
        return self._watch

    def _move_spooled_dead_letters(self, broker_url: str) -> int:
        """Dead letters workers spooled in Redis while the database was down (smq.distributed)."""
        from smq.distributed.dead_letter_spool import drain_spool

        return drain_spool(DeadLetters(self.repository.engine), broker_url)

    def run(self, stop: threading.Event | None = None) -> None:
        """Tick until `stop` is set; a failing tick (database or broker down) is logged and retried."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.tick()
                if self.health_file is not None:
                    self.health_file.touch()
            except Exception:
                log.exception("dispatcher tick failed; retrying")
                stop.wait(1.0)
            stop.wait(self.settings.scheduler_interval)
