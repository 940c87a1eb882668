"""Retry and purge dead letters: what `smq dead retry|purge` and the console's buttons both do.

A retry publishes the stored payload again, unchanged (marked not unique, on the queue asked for or
the one it died on), after reopening its execution (FAILED with smq.DeadLettered) from its last
checkpoint; the dead letter is removed once published. Each is recorded with the execution's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from smq.distributed.client import EnqueueError, QueueClient
from smq.distributed.intake import BAD_MESSAGE_REASONS
from smq.execution.control import NotAllowed, reopen_dead_lettered
from smq.repository.operator_actions import OperatorAction, default_actor, record_actions
from smq.repository.queue_records import DeadLetter, DeadLetters
from smq.repository.repository import Repository
from smq.settings import QUEUES, redact


@dataclass
class RetryReport:
    retried: list[dict[str, Any]] = field(default_factory=list)  # task_id, new_task_id, queue
    failed: list[dict[str, Any]] = field(default_factory=list)  # task_id, error

    def to_dict(self) -> dict[str, Any]:
        return {"retried": self.retried, "failed": self.failed}


def replayable(payload: Any) -> dict[str, Any]:
    """The stored payload, minus its old queue, marked not unique; enqueue validates the rest."""
    if not isinstance(payload, dict):
        raise ValueError(
            f"the stored payload is not a JSON object ({type(payload).__name__}): fix it or purge it"
        )
    options = payload.get("options")
    kept = {k: v for k, v in options.items() if k != "queue"} if isinstance(options, dict) else {}
    return {**payload, "options": {**kept, "unique": False}}


def retry_dead_letters(
    repository: Repository,
    store: DeadLetters,
    letters: Iterable[DeadLetter],
    *,
    queue: str | None = None,
    client: QueueClient | None = None,
    actor: str | None = None,
) -> RetryReport:
    """Publish each letter again (on `queue`, default the queue it died on); a bad message (never a
    valid task) or a payload enqueue refuses is reported in `failed` and kept."""
    client = client or QueueClient(repository)
    actor = actor or default_actor()
    report = RetryReport()
    for letter in letters:
        target = queue or (letter.queue if letter.queue in QUEUES else "default")
        if letter.reason in BAD_MESSAGE_REASONS:
            error = (
                f"a bad message ({letter.reason}), never a valid task: nothing to replay (its raw text is "
                f"in `smq dead show {letter.task_id}`; remove it with `smq dead purge`)"
            )
            report.failed.append({"task_id": letter.task_id, "error": error})
            continue
        try:
            replay = replayable(letter.payload)
            # Its execution (FAILED with smq.DeadLettered) becomes RUNNING from its last checkpoint, so
            # the worker resumes it; if the publish below fails, the recovery scanner enqueues it later.
            if letter.state_machine_id and letter.execution_name:
                reopen_dead_lettered(
                    repository,
                    letter.state_machine_id,
                    letter.execution_name,
                    actor=actor,
                    task_id=letter.task_id,
                )
            # Published again whatever the enqueue ledger says: this name was enqueued once already.
            sent = client.enqueue(replay, target)
        except (EnqueueError, NotAllowed, ValueError) as exc:
            report.failed.append({"task_id": letter.task_id, "error": redact(str(exc))})
            continue
        store.delete([letter.task_id])
        report.retried.append({"task_id": letter.task_id, "new_task_id": sent.task_id, "queue": target})
    return report


def purge_dead_letters(
    repository: Repository, store: DeadLetters, letters: Iterable[DeadLetter], *, actor: str | None = None
) -> int:
    """Delete the letters for good; each one's execution (if any) records who purged it."""
    letters = list(letters)
    deleted = store.delete(letter.task_id for letter in letters)
    actions = []
    for letter in letters:
        if letter.state_machine_id and letter.execution_name:
            found = repository.find_execution(letter.state_machine_id, letter.execution_name)
            if found is not None:
                detail = {"task_id": letter.task_id, "reason": letter.reason}
                actions.append(
                    OperatorAction(found.execution_id, "dead_letter_purge", actor or default_actor(), detail)
                )
    record_actions(repository.engine, actions)
    return deleted
