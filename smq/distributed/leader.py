"""The distributed leader: chain a target machine over every execution a filter matches, on the workers.

Sources are streamed by keyset page (ids and names only, no payloads) and published in bounded
`group()` chunks, so memory does not grow with the number of sources. Chained names are the local
batch's (`chained_name`), and the enqueue ledger skips names already enqueued or run: re-running the
same leader publishes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smq.distributed.client import Enqueued, EnqueueSummary, QueueClient
from smq.execution.batch import chained_name
from smq.repository.filters import ExecutionFilter


def fan_out(
    client: QueueClient,
    target_state_machine_id: str,
    source_filter: ExecutionFilter,
    *,
    source_state_name: str | None = None,
    transformer: str | None = None,
    name_prefix: str = "",
    queue: str = "default",
    chunk_size: int = 500,
    on_chunk: Callable[[int, EnqueueSummary], None] | None = None,
    requeue_unstarted: bool = False,
    names: list[str] | None = None,
) -> EnqueueSummary:
    """Enqueue one chained execution of the target per matching source; returns the counts.
    `requeue_unstarted`: see `QueueClient.enqueue_many`. `names`, if given, receives every chained
    name (enqueued or skipped), e.g. to wait for them."""
    client.repository.state_machine(target_state_machine_id)  # NotFound before anything is published
    sources = client.repository.stream_execution_keys(source_filter, page_size=chunk_size)
    payloads = (
        {
            "state_machine_id": target_state_machine_id,
            "name": chained_name(name_prefix, source),
            "source_execution_id": source.execution_id,
            "source_state_name": source_state_name,
            "transformer": transformer,
        }
        for source in sources
    )
    if names is not None:
        payloads = (_noting(payload, names) for payload in payloads)
    return client.enqueue_many(
        payloads, queue, chunk_size=chunk_size, on_chunk=on_chunk, requeue_unstarted=requeue_unstarted
    )


def _noting(payload: dict[str, Any], names: list[str]) -> dict[str, Any]:
    names.append(payload["name"])
    return payload


class QueuedStateMachine:
    """A stored state machine whose starts and batches go to the workers (the local batch's API)."""

    def __init__(self, client: QueueClient, state_machine_id: str, *, version: int | None = None):
        self.client = client
        self.state_machine_id = state_machine_id
        self.version = version

    def start(self, input: Any = None, *, name: str, queue: str = "default") -> Enqueued:
        payload: dict[str, Any] = {"state_machine_id": self.state_machine_id, "name": name, "input": input}
        if self.version is not None:
            payload["version"] = self.version
        return self.client.enqueue(payload, queue)

    def run_batch(
        self,
        source_filter: ExecutionFilter,
        *,
        source_state_name: str | None = None,
        transformer: str | None = None,
        name_prefix: str = "",
        queue: str = "default",
        chunk_size: int = 500,
        on_chunk: Callable[[int, EnqueueSummary], None] | None = None,
        requeue_unstarted: bool = False,
    ) -> EnqueueSummary:
        return fan_out(
            self.client,
            self.state_machine_id,
            source_filter,
            source_state_name=source_state_name,
            transformer=transformer,
            name_prefix=name_prefix,
            queue=queue,
            chunk_size=chunk_size,
            on_chunk=on_chunk,
            requeue_unstarted=requeue_unstarted,
        )
