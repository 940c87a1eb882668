"""Continuations: making executions that became RUNNING again (woken, recovered, redriven) go on.

A `Launcher` decides where: with a broker they are enqueued for the workers (by name, not unique: the
enqueue ledger already knows the name); without one they run here, one after another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from smq.engine.handlers import HandlerRegistry
from smq.execution.observer import Observer
from smq.execution.runner import resume_execution
from smq.repository.repository import Repository
from smq.repository.waits import Woken
from smq.settings import Settings


@dataclass(frozen=True)
class Continuation:
    state_machine_id: str
    name: str
    queue: str = "default"


def woken_continuations(woken: Iterable[Woken]) -> list[Continuation]:
    """The continuations of woken executions; an answer held for a running execution has none (the
    execution takes it when it parks again)."""
    return [Continuation(w.state_machine_id, w.name, w.queue) for w in woken if not (w.held or w.undelivered)]


@dataclass
class ContinuationSummary:
    enqueued: int = 0
    ran: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, other: ContinuationSummary) -> None:
        """Fold another batch's counts into this one."""
        self.enqueued += other.enqueued
        self.ran += other.ran
        self.failed += other.failed
        self.errors.extend(other.errors)
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return {
            "enqueued": self.enqueued,
            "ran": self.ran,
            "failed": self.failed,
            "errors": self.errors,
            "statuses": self.statuses,
        }


class Launcher(Protocol):
    """Where executions that became RUNNING again go on: here (`LocalLauncher`) or on the workers
    (`smq.distributed.launcher.QueueLauncher`). Chosen once, from the settings, by
    `smq.launching.launcher_for`; everything that wakes, recovers or redrives executions is given one."""

    enqueues: bool

    def continue_executions(self, items: Iterable[Continuation]) -> ContinuationSummary: ...


class LocalLauncher:
    """Continuations run in this process, one after another (no broker, or `--local`)."""

    enqueues = False

    def __init__(
        self,
        repository: Repository,
        settings: Settings,
        handlers: HandlerRegistry | None = None,
        *,
        observer: Observer | None = None,
    ):
        self.repository = repository
        self.settings = settings
        self.handlers = handlers
        self.observer = observer

    def continue_executions(self, items: Iterable[Continuation]) -> ContinuationSummary:
        summary = ContinuationSummary()
        settings = self.settings
        for item in items:
            record = self.repository.find_execution(item.state_machine_id, item.name)
            if record is None:
                summary.failed += 1
                summary.errors.append(f"{item.state_machine_id}/{item.name}: no such execution")
                continue
            # Like a worker, a long Wait after the answer parks on a durable timer instead of holding
            # this process (`smq message send`, `smq task success`, the scheduler) until it ends.
            record = resume_execution(
                self.repository,
                record,
                handlers=self.handlers,
                payload_limit=settings.payload_limit,
                park_after=settings.park_after,
                lease_seconds=settings.lease_seconds,
                checkpoints=settings.checkpoints,
                observer=self.observer,
                state_machine_arns=settings.state_machine_arns,
            )
            summary.ran += 1
            summary.statuses[record.status] = summary.statuses.get(record.status, 0) + 1
        return summary
