"""What smq tells observers about the executions it runs: metrics and traces hook in here.

The runner, the dispatcher and the workers call an `Observer` at the few points that matter (a run
begins, a step is taken, an execution is created, ends or parks, timers fire, crashed executions are
taken over). The base class does nothing, so code that observes nothing pays one call per event;
`smq.observability` has the Prometheus and OpenTelemetry observers, chosen at the edges (worker boot,
`smq scheduler`, the CLI) from `Settings` and passed down. Nothing here imports prometheus-client or
OpenTelemetry: the engine and the execution layer stay free of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from smq.engine.cursor import Step
    from smq.execution.recovery import Recovered
    from smq.repository.records import ExecutionRecord
    from smq.repository.waits import Woken


class Observer:
    """Every hook, doing nothing. Hooks are called after what they report is committed, and must not
    raise (an observer's failure must never fail an execution)."""

    def run(self, record: ExecutionRecord, *, written: bool = True) -> AbstractContextManager[Any]:
        """Around one run of `record` in this process (from its checkpoint to its end or park).
        `written` False: the record is not in the database yet, and is only this run's if its first
        write inserts it (`started`); another delivery may have created the execution first."""
        return nullcontext()

    def started(self, record: ExecutionRecord) -> None:
        """`record` was created (its first write committed)."""

    def step(self, record: ExecutionRecord, step: Step) -> None:
        """A step of `record` (one or more history entries) was taken and handed to its checkpoint."""

    def ended(self, record: ExecutionRecord, waiting_for: str | None = None) -> None:
        """A run left `record` finished, or parked (`waiting_for` says on what)."""

    def timers_fired(self, woken: Sequence[Woken], now: datetime) -> None:
        """The dispatcher resolved these waits because they were due (timers, timeouts)."""

    def recovered(self, recovered: Sequence[Recovered]) -> None:
        """The recovery scanner took these executions over (their leases had expired)."""

    def taken_over(self, record: ExecutionRecord, dead_owner: str) -> None:
        """This process took `record`'s lease from `dead_owner`, a process of this host that died."""


NOOP = Observer()


class Observers(Observer):
    """Several observers as one, called in order."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = list(observers)

    @contextmanager
    def run(self, record: ExecutionRecord, *, written: bool = True) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self.observers:
                stack.enter_context(observer.run(record, written=written))
            yield

    def started(self, record: ExecutionRecord) -> None:
        for observer in self.observers:
            observer.started(record)

    def step(self, record: ExecutionRecord, step: Step) -> None:
        for observer in self.observers:
            observer.step(record, step)

    def ended(self, record: ExecutionRecord, waiting_for: str | None = None) -> None:
        for observer in self.observers:
            observer.ended(record, waiting_for)

    def timers_fired(self, woken: Sequence[Woken], now: datetime) -> None:
        for observer in self.observers:
            observer.timers_fired(woken, now)

    def recovered(self, recovered: Sequence[Recovered]) -> None:
        for observer in self.observers:
            observer.recovered(recovered)

    def taken_over(self, record: ExecutionRecord, dead_owner: str) -> None:
        for observer in self.observers:
            observer.taken_over(record, dead_owner)


def combine(*observers: Observer | None) -> Observer:
    """One observer for those given (None and no-op ones left out): NOOP, the one, or Observers."""
    real = [observer for observer in observers if observer is not None and observer is not NOOP]
    if not real:
        return NOOP
    return real[0] if len(real) == 1 else Observers(real)
