"""What an execution runs with besides its definition: handlers, clock, sleeping, limits.

Injecting the clock and the sleep lets tests and the conformance corpus run Wait states and retry
back-offs without real waiting, and lets the distributed driver replace sleeping with durable timers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from smq.engine.handlers import HandlerRegistry, default_registry

AWS_PAYLOAD_LIMIT = 256 * 1024
DEFAULT_PAYLOAD_LIMIT = 1024 * 1024
DEFAULT_MAX_TRANSITIONS = 100_000
DEFAULT_MAX_WORKERS = 64


class ExecutionTimedOut(Exception):
    """The execution-level TimeoutSeconds passed. Not an ASL error: no Catch can intercept it."""


class ExecutionAborted(Exception):
    """Someone asked the execution to stop."""


class VirtualClock:
    """A clock that only moves when slept on: Wait states and back-offs complete instantly."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds


@dataclass
class Runtime:
    handlers: HandlerRegistry = field(default_factory=lambda: default_registry)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT
    deadline: float | None = None  # epoch seconds: execution TimeoutSeconds
    max_transitions: int = DEFAULT_MAX_TRANSITIONS
    max_workers: int = DEFAULT_MAX_WORKERS
    abort: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def virtual(cls, start: float | None = None, **kwargs: object) -> Runtime:
        clock = VirtualClock(start)
        return cls(clock=clock.now, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]

    def wait_until(self, moment: float) -> None:
        """Sleep until `moment`, waking for the execution deadline or an abort."""
        while True:
            if self.abort.is_set():
                raise ExecutionAborted("the execution was stopped")
            now = self.clock()
            if self.deadline is not None and now >= self.deadline:
                raise ExecutionTimedOut("the execution exceeded its TimeoutSeconds")
            if now >= moment:
                return
            target = moment if self.deadline is None else min(moment, self.deadline)
            self.sleep(min(target - now, 1.0) if self.sleep is time.sleep else target - now)
