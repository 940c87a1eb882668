"""What an execution runs with besides its definition: handlers, clock, sleeping, limits.

Injecting the clock and the sleep lets tests and the conformance corpus run Wait states and retry
back-offs without real waiting, and lets the distributed driver replace sleeping with durable timers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from smq.engine.errors import PASS_THROUGH
from smq.engine.handlers import HandlerRegistry, default_registry

if TYPE_CHECKING:
    from smq.engine.branch_rows import BranchRows

AWS_PAYLOAD_LIMIT = 256 * 1024
DEFAULT_PAYLOAD_LIMIT = 1024 * 1024
DEFAULT_MAX_TRANSITIONS = 100_000
DEFAULT_MAX_WORKERS = 64


class ExecutionTimedOut(Exception):
    """The execution-level TimeoutSeconds passed. Not an ASL error: no Catch can intercept it."""


class ExecutionAborted(Exception):
    """Someone asked the execution to stop."""


class VirtualClock:
    """A clock that only moves when slept on: Wait states and back-offs complete instantly.

    Time is per thread during fan-out: a Parallel branch or Map iteration starts at its parent's time
    and sleeps on its own timeline, and the parent resumes at the latest child's time. So concurrent
    waits overlap as they would in real time, and sequential ones add up.
    """

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self._local = threading.local()

    def now(self) -> float:
        local = getattr(self._local, "now", None)
        return self._now if local is None else local

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep_until(self.now() + seconds)

    def sleep_until(self, moment: float) -> None:
        """Move this thread's time to `moment` (never backwards); the shared time follows the latest."""
        with self._lock:
            if getattr(self._local, "now", None) is not None:
                self._local.now = max(self._local.now, moment)
            self._now = max(self._now, moment)

    def start_thread_at(self, moment: float) -> None:
        """A fan-out child thread begins at its parent's time."""
        self._local.now = moment

    def end_thread(self) -> float:
        """Leave the child timeline; returns where it ended."""
        end = self.now()
        self._local.now = None
        return end


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
    parent: Runtime | None = None  # set on the runtime of a Parallel branch / Map iteration
    virtual: VirtualClock | None = None  # set when clock/sleep are a VirtualClock's
    # Seconds: a pause (Wait, retry back-off) ending more than this after now is not slept on; the
    # driver returns WAITING with the cursor and a durable timer resumes it. None: always sleep.
    park_after: float | None = None
    # Exceptions a handler raises that are not the workflow's failure (never ASL errors): they leave the
    # engine as they are, the execution at its last checkpoint. A Celery worker adds its soft time limit.
    pass_through: tuple[type[BaseException], ...] = PASS_THROUGH
    # Where nested executions (`states:startExecution`) start: the execution layer's (a repository,
    # the workers); None when the machine runs on its own (`StateMachine.run`).
    host: Any = None
    # The execution's branch rows (smq.engine.branch_rows), where a top-level Parallel or Map keeps its
    # waiting branches' progress; None: in the cursor. Never handed to a branch's own runtime.
    branch_rows: BranchRows | None = None

    def __post_init__(self) -> None:
        owner = getattr(self.sleep, "__self__", None)
        if self.virtual is None and isinstance(owner, VirtualClock):
            self.virtual = owner

    def cancelled(self) -> bool:
        """True once this execution is stopped, or this branch's siblings have failed."""
        runtime: Runtime | None = self
        while runtime is not None:
            if runtime.abort.is_set():
                return True
            runtime = runtime.parent
        return False

    def child(self) -> Runtime:
        """A runtime for sub-machines that can be cancelled together without stopping the execution.

        They park like the execution does (`park_after`): a branch or iteration paused for longer
        returns WAITING, and once none runs any more the Parallel or Map state parks with every one's
        progress (`smq.engine.fanout`)."""
        return replace(self, abort=threading.Event(), parent=self, branch_rows=None)

    def wait_until(self, moment: float) -> None:
        """Sleep until `moment`, waking for the execution deadline or an abort."""
        sleep_until = self.virtual.sleep_until if self.virtual is not None else None
        while True:
            if self.cancelled():
                raise ExecutionAborted("the execution was stopped")
            now = self.clock()
            if self.deadline is not None and now >= self.deadline:
                raise ExecutionTimedOut("the execution exceeded its TimeoutSeconds")
            if now >= moment:
                return
            target = moment if self.deadline is None else min(moment, self.deadline)
            if sleep_until is not None:
                sleep_until(target)
            else:
                self.sleep(min(target - now, 1.0) if self.sleep is time.sleep else target - now)
