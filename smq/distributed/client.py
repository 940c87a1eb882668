"""Enqueueing executions for the workers: one, later, or many (streamed, in bounded `group()` chunks).

Every named execution is claimed in the enqueue ledger before it is published (and released if the
publish fails), so enqueueing the same name twice, from a re-run leader or bulk start, publishes it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import redis
from celery import Celery, group

from smq.distributed.broker_contents import held_task_ids
from smq.distributed.payload import ExecutionPayload, parse_payload
from smq.distributed.queues import check_queue
from smq.distributed.task_names import TASK_NAME
from smq.engine.errors import SmqError
from smq.repository.queue_records import EnqueueLedger, Unstarted
from smq.repository.repository import Repository


class EnqueueError(SmqError):
    """The broker refused or could not be reached; nothing was enqueued for the names concerned."""


@dataclass(frozen=True)
class Enqueued:
    """One enqueue: the Celery task id, or skipped because that name was enqueued or run before."""

    name: str
    task_id: str | None
    queue: str
    skipped: bool = False


@dataclass
class EnqueueSummary:
    enqueued: int = 0
    skipped: int = 0
    failed: int = 0
    # of `enqueued`: names claimed before that had not started and that the broker did not hold (never
    # published, or lost), or any that had not started with `requeue_unstarted`
    requeued: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "enqueued": self.enqueued,
            "skipped": self.skipped,
            "failed": self.failed,
            "requeued": self.requeued,
            "errors": self.errors,
        }


def default_app() -> Celery:
    from smq.distributed.app import app

    return app


class QueueClient:
    """Publishes `execute_state_machine` tasks; the repository holds the enqueue ledger."""

    def __init__(self, repository: Repository, app: Celery | None = None):
        self.repository = repository
        self.app = app or default_app()
        self.ledger = EnqueueLedger(repository.engine)
        self._held: set[str] | None = None

    # ------------------------------------------------------------------ one

    def enqueue(
        self,
        payload: ExecutionPayload | dict[str, Any],
        queue: str = "default",
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        **celery_options: Any,
    ) -> Enqueued:
        """Validate and publish one execution. With `unique` (the default) a name already enqueued or
        run is skipped. `celery_options` go to `apply_async` (e.g. `time_limit`, `soft_time_limit`)."""
        parsed = self._prepared(payload, queue)
        if eta is not None or countdown is not None:
            self._check_delay(eta, countdown)
        task_id = str(uuid.uuid4())
        if parsed.options.get("unique", True):
            claimed = self.ledger.claim(
                parsed.state_machine_id, {parsed.name: task_id}, queue, {parsed.name: parsed.to_dict()}
            )
            if not claimed:
                return Enqueued(parsed.name, None, queue, skipped=True)
        try:
            self._signature(
                parsed, queue, task_id, countdown=countdown, eta=eta, **celery_options
            ).apply_async()
        except Exception as exc:
            self.ledger.release(parsed.state_machine_id, [parsed.name])
            raise EnqueueError(
                f"cannot enqueue {parsed.name!r} on {queue!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return Enqueued(parsed.name, task_id, queue)

    def schedule(
        self, payload: ExecutionPayload | dict[str, Any], when: datetime | timedelta, queue: str = "default"
    ) -> Enqueued:
        """Enqueue to start at `when` (a moment, or a delay from now)."""
        eta = datetime.now(UTC) + when if isinstance(when, timedelta) else when
        if eta.tzinfo is None:
            raise ValueError("schedule: `when` must be timezone-aware")
        return self.enqueue(payload, queue, eta=eta)

    def _check_delay(self, eta: datetime | None, countdown: float | None) -> None:
        """A Celery ETA is held unacknowledged by a worker; past the visibility timeout Redis would hand
        it to a second worker. Longer delays need durable timers, not a countdown."""
        delay = (
            countdown
            if countdown is not None
            else ((eta or datetime.now(UTC)) - datetime.now(UTC)).total_seconds()
        )
        limit = float(self.app.conf.broker_transport_options.get("visibility_timeout", 3600)) - 60
        if delay > limit:
            raise ValueError(
                f"a delay of {delay:.0f}s is above what a Celery ETA can hold safely ({limit:.0f}s, the "
                "visibility timeout less a minute): raise SMQ_VISIBILITY_TIMEOUT or schedule closer to the time"
            )

    # ------------------------------------------------------------------ many

    def enqueue_many(
        self,
        payloads: Iterable[ExecutionPayload | dict[str, Any]],
        queue: str = "default",
        *,
        chunk_size: int = 500,
        on_chunk: Callable[[int, EnqueueSummary], None] | None = None,
        requeue_unstarted: bool = False,
    ) -> EnqueueSummary:
        """Publish many executions in `group()`s of at most `chunk_size`, streaming `payloads`: memory is
        bounded by one chunk whatever the total. Names enqueued or run before are skipped.

        `requeue_unstarted` publishes again the names enqueued before that have no execution yet: the
        operator's repair after a broker lost messages (a Redis crash between a worker's pop and its
        unacked record). A name whose first message is still queued then has two; the first to run
        creates the execution and the other finds it, so the execution still runs once."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        check_queue(queue)
        self._held = None  # read from the broker once per call, if a claimed name has not started
        summary = EnqueueSummary()
        iterator = iter(payloads)
        while chunk := list(islice(iterator, chunk_size)):
            before = summary.enqueued + summary.skipped + summary.failed
            prepared = [self._prepared(item, queue) for item in chunk]
            self._publish_chunk(prepared, queue, summary, requeue_unstarted=requeue_unstarted)
            if on_chunk is not None:
                on_chunk(summary.enqueued + summary.skipped + summary.failed - before, summary)
        return summary

    def _publish_chunk(
        self,
        chunk: list[ExecutionPayload],
        queue: str,
        summary: EnqueueSummary,
        *,
        requeue_unstarted: bool = False,
    ) -> None:
        wanted: dict[str, dict[str, str]] = {}  # machine -> {name: task id}, names that must be unique
        kept: dict[str, dict[str, Any]] = {}  # machine -> {name: payload}, kept until the execution starts
        pending: list[tuple[ExecutionPayload, str]] = []
        for parsed in chunk:
            task_id = str(uuid.uuid4())
            if parsed.options.get("unique", True):
                names = wanted.setdefault(parsed.state_machine_id, {})
                if parsed.name in names:
                    summary.skipped += 1  # the same name twice in one chunk
                    continue
                names[parsed.name] = task_id
                kept.setdefault(parsed.state_machine_id, {})[parsed.name] = parsed.to_dict()
            pending.append((parsed, task_id))
        claimed = {
            machine: self.ledger.claim(machine, names, queue, kept[machine])
            for machine, names in wanted.items()
        }
        # Names claimed before with no execution yet: still queued, or never published (their publisher
        # died after claiming) or lost by the broker. The latter are published again; with
        # `requeue_unstarted`, all of them.
        unstarted = {
            machine: self.ledger.unstarted(machine, set(names) - claimed[machine])
            for machine, names in wanted.items()
            if len(claimed[machine]) < len(names)
        }
        if not requeue_unstarted and any(unstarted.values()):
            held = self._held_by_broker()
            unstarted = {
                machine: {name: task_id for name, task_id in names.items() if task_id not in held}
                for machine, names in unstarted.items()
            }
        to_send: list[tuple[ExecutionPayload, str]] = []
        requeued = 0
        for parsed, task_id in pending:
            if not parsed.options.get("unique", True) or parsed.name in claimed[parsed.state_machine_id]:
                to_send.append((parsed, task_id))
            elif parsed.name in unstarted.get(parsed.state_machine_id, {}):
                to_send.append((parsed, unstarted[parsed.state_machine_id][parsed.name]))
                requeued += 1
        summary.skipped += len(pending) - len(to_send)
        if not to_send:
            return
        try:
            group([self._signature(parsed, queue, task_id) for parsed, task_id in to_send]).apply_async()
        except Exception as exc:
            for machine, claimed_names in claimed.items():
                self.ledger.release(machine, claimed_names)
            summary.failed += len(to_send)
            summary.errors.append(f"{type(exc).__name__}: {exc}")
            return
        summary.enqueued += len(to_send)
        summary.requeued += requeued

    def _held_by_broker(self) -> set[str]:
        """Task ids the broker holds (queued or unacknowledged), read once per `enqueue_many`."""
        if self._held is None:
            client = redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=10)
            try:
                self._held = held_task_ids(client)
            finally:
                client.close()
        return self._held

    def republish(self, item: Unstarted) -> str:
        """Publish again the kept payload of a claim whose message the broker lost (or that was never
        published: its publisher died after claiming); returns the new task id."""
        parsed = parse_payload(item.payload)
        task_id = str(uuid.uuid4())
        self._signature(parsed, item.queue, task_id).apply_async()
        self.ledger.republished(item, task_id)
        return task_id

    # ------------------------------------------------------------------ pieces

    def _prepared(self, payload: ExecutionPayload | dict[str, Any], queue: str) -> ExecutionPayload:
        check_queue(queue)
        raw = payload.to_dict() if isinstance(payload, ExecutionPayload) else payload
        if isinstance(raw, dict) and raw.get("name") is None:
            raw = {**raw, "name": str(uuid.uuid4())}  # an unnamed execution gets a fresh name, as AWS does
        parsed = parse_payload(raw)
        return replace(parsed, options={**parsed.options, "queue": queue})

    def _signature(self, parsed: ExecutionPayload, queue: str, task_id: str, **options: Any) -> Any:
        return self.app.signature(
            TASK_NAME,
            args=(parsed.to_dict(),),
            queue=queue,
            task_id=task_id,
            # What Flower's task list and the worker's log show for the arguments: the execution.
            argsrepr=f"{parsed.state_machine_id}/{parsed.name}",
            **{key: value for key, value in options.items() if value is not None},
        )


def enqueue_execution(
    payload: ExecutionPayload | dict[str, Any],
    queue: str = "default",
    *,
    repository: Repository | None = None,
    **options: Any,
) -> Enqueued:
    """Enqueue one execution with the configured broker and database (SMQ_BROKER_URL, SMQ_DATABASE_URL)."""
    from smq.settings import Settings

    owned = repository is None
    repo = repository or Repository.open(Settings.from_env().database_url)
    try:
        return QueueClient(repo).enqueue(payload, queue, **options)
    finally:
        if owned:
            repo.close()
