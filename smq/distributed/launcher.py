"""Continuations go on on the workers: each is published by name on its execution's queue."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from smq.distributed.client import QueueClient
from smq.execution.continuation import Continuation, ContinuationSummary
from smq.repository.repository import Repository


class QueueLauncher:
    """The `Launcher` of a deployment with a broker (see smq.execution.continuation.Launcher)."""

    enqueues = True

    def __init__(self, repository: Repository, client: QueueClient | None = None):
        self.client = client or QueueClient(repository)

    def continue_executions(self, items: Iterable[Continuation]) -> ContinuationSummary:
        summary = ContinuationSummary()
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            by_queue.setdefault(item.queue, []).append(
                {"state_machine_id": item.state_machine_id, "name": item.name, "options": {"unique": False}}
            )
        for queue, payloads in by_queue.items():
            sent = self.client.enqueue_many(payloads, queue)
            summary.enqueued += sent.enqueued
            summary.failed += sent.failed
            summary.errors.extend(sent.errors)
        return summary
