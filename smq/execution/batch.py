"""Local batches: run machine B over every execution a filter matches, chaining from each.

Sources are streamed page by page (keyset), at most `concurrency` run at once and at most twice that
wait in memory. Execution names are derived from the source (see `chained_name`), so re-running a batch
finds the executions it already made instead of creating duplicates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from smq.engine.cursor import AwsIdentity
from smq.engine.errors import SmqError
from smq.engine.handlers import HandlerRegistry
from smq.engine.runtime import DEFAULT_PAYLOAD_LIMIT
from smq.execution.runner import (
    DEFAULT_LEASE_SECONDS,
    StartRequest,
    held_here,
    prepare_execution,
    resume_execution,
)
from smq.repository.filters import ExecutionFilter
from smq.repository.models import SUCCEEDED
from smq.repository.repository import ExecutionKey, ExecutionRecord, Repository


@dataclass(frozen=True)
class BatchItem:
    """What happened to one source."""

    source_execution_id: str
    name: str
    execution_id: str | None
    status: str  # the chained execution's status, or "ERROR" when it could not be started
    error: str | None = None
    cause: str | None = None
    already_existed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_execution_id": self.source_execution_id,
            "name": self.name,
            "execution_id": self.execution_id,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "already_existed": self.already_existed,
        }


@dataclass
class BatchResult:
    items: list[BatchItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False
    already_existed: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


MAX_NAME = 200


def chained_name(name_prefix: str, source: ExecutionRecord | ExecutionKey) -> str:
    """`PREFIX + source machine id + ':' + source name`: readable, deterministic and unique (machine
    ids cannot contain ':'); the source execution id when that would be too long."""
    name = f"{name_prefix}{source.state_machine_id}:{source.name}"
    return name if len(name) <= MAX_NAME else f"{name_prefix}{source.execution_id}"


def run_batch(
    repository: Repository,
    target_state_machine_id: str,
    source_filter: ExecutionFilter,
    *,
    source_state_name: str | None = None,
    transformer: str | None = None,
    name_prefix: str = "",
    concurrency: int = 4,
    stop_on_error: bool = False,
    on_start: Callable[[ExecutionRecord, str], None] | None = None,
    on_complete: Callable[[BatchItem], None] | None = None,
    handlers: HandlerRegistry | None = None,
    keep_items: bool = True,
    page_size: int = 500,
    identity: AwsIdentity | None = None,
    **runtime_options: Any,
) -> BatchResult:
    """Chain `target_state_machine_id` from every matching source; return a result per item."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    repository.state_machine(target_state_machine_id)  # NotFound before anything runs
    result = BatchResult()
    lock = threading.Lock()
    stop = threading.Event()

    given = runtime_options.get("lease_seconds")
    lease_seconds = DEFAULT_LEASE_SECONDS if given is None else given

    def one(source: ExecutionRecord) -> BatchItem:
        name = chained_name(name_prefix, source)
        if on_start is not None:
            on_start(source, name)
        request = StartRequest(
            target_state_machine_id,
            name=name,
            source_execution_id=source.execution_id,
            source_state_name=source_state_name,
            transformer=transformer,
        )
        try:
            record, machine, created = prepare_execution(
                repository,
                request,
                handlers=handlers,
                lease_seconds=lease_seconds,
                payload_limit=runtime_options.get("payload_limit", DEFAULT_PAYLOAD_LIMIT),
                identity=identity,
            )
            existed = not created
            record = resume_execution(
                repository,
                record,
                machine=machine,
                handlers=handlers,
                claimed=bool(created) or held_here(record),
                **runtime_options,
            )
            item = BatchItem(
                source.execution_id,
                name,
                record.execution_id,
                record.status,
                record.error,
                record.cause,
                existed,
            )
        except SmqError as exc:
            item = BatchItem(source.execution_id, name, None, "ERROR", type(exc).__name__, str(exc))
        return item

    def record(item: BatchItem) -> None:
        with lock:
            result.counts[item.status] = result.counts.get(item.status, 0) + 1
            result.already_existed += item.already_existed
            if keep_items:
                result.items.append(item)
        if on_complete is not None:
            on_complete(item)
        if stop_on_error and item.status != SUCCEEDED:
            stop.set()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="smq-batch") as pool:
        pending: set[Future[BatchItem]] = set()
        for source in repository.stream_executions(source_filter, page_size=page_size):
            if stop.is_set():
                break
            pending.add(pool.submit(one, source))
            if len(pending) >= concurrency * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    record(future.result())
        for future in pending:
            record(future.result())
    result.stopped_early = stop.is_set()
    if keep_items:
        result.items.sort(key=lambda item: item.name)
    return result
