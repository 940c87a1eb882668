"""The dispatcher (`smq scheduler`): fires durable timers when due and runs the recovery scanner.

One loop: every `interval` seconds it resolves the timers due by now (Wait states, Message and
callback timeouts, heartbeat deadlines; oldest first, so it catches up after downtime) and hands the
woken executions to its launcher; every `lease_seconds / 2` it scans for executions whose lease
expired; and it runs the chores it was given each at its own pace (with a broker, `smq scheduler`
gives it smq.distributed.healing's: spooled dead letters, broker data loss, stranded claims). Several
dispatchers may run at once: every resolution and every claim is one conditional update, so nothing
fires or recovers twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from smq.execution.continuation import ContinuationSummary, Launcher, woken_continuations
from smq.execution.observer import NOOP, Observer
from smq.execution.recovery import Recovered, continuations, scan
from smq.repository.repository import Repository
from smq.repository.waits import WaitStore, Woken
from smq.settings import Settings

log = logging.getLogger("smq.dispatcher")


class Chore(Protocol):
    """Something the dispatcher does every `every` seconds besides timers and recovery; what `run`
    returns is reported in the tick under `name`."""

    name: str
    every: float

    def run(self) -> dict[str, Any]: ...


@dataclass
class Tick:
    woken: list[Woken] = field(default_factory=list)
    recovered: list[Recovered] = field(default_factory=list)
    continued: ContinuationSummary = field(default_factory=ContinuationSummary)
    chores: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each chore that ran did

    def to_dict(self) -> dict[str, Any]:
        return {
            "timers_fired": len(self.woken),
            "recovered": [item.to_dict() for item in self.recovered],
            "continuations": self.continued.to_dict(),
            **self.chores,
        }


class Dispatcher:
    def __init__(
        self,
        repository: Repository,
        settings: Settings,
        *,
        launcher: Launcher,
        chores: Sequence[Chore] = (),
        health_file: str | None = None,
        observer: Observer = NOOP,
    ):
        self.health_file = Path(health_file) if health_file else None
        self.repository = repository
        self.settings = settings
        self.launcher = launcher
        self.chores = list(chores)
        self.observer = observer  # hears of the timers fired and the executions taken over
        self.waits = WaitStore(repository.engine, wake_grace_seconds=settings.wake_grace)
        self._last_scan = 0.0
        self._last_run: dict[str, float] = {}

    def tick(self, *, recover: bool | None = None, batch: int = 200) -> Tick:
        """Fire what is due in batches of `batch`, publishing each batch's continuations before firing
        the next (a backlog of due timers starts moving at once, and a crash mid-tick leaves at most
        one batch woken without its continuation, which the wake grace covers); then scan for crashes
        if it is time."""
        result = Tick()
        while True:
            woken = self.waits.fire_due(limit=batch)
            result.woken.extend(woken)
            self.observer.timers_fired(woken, datetime.now(UTC))
            items = woken_continuations(woken)
            result.continued.add(self.launcher.continue_executions(items))
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
            self.observer.recovered(result.recovered)
            result.continued.add(self.launcher.continue_executions(continuations(result.recovered)))
        for chore in self.chores:
            if now - self._last_run.get(chore.name, float("-inf")) >= chore.every:
                self._last_run[chore.name] = now
                result.chores[chore.name] = chore.run()
        if result.woken or result.recovered:
            log.info(
                "fired %d timer(s), recovered %d execution(s), %d continuation(s) enqueued",
                len(result.woken),
                len(result.recovered),
                result.continued.enqueued,
            )
        return result

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
