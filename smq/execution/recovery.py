"""The recovery scanner: RUNNING executions whose lease expired are taken over, once each.

A process running an execution renews its lease (`smq.execution.leases`); an expired lease means that
process is gone. The scanner claims such an execution with one conditional update (so two scanners
never both take it), counts the attempt, and applies its state machine's strategy:

- `retry` (default): resume from the last checkpoint (the crashed state runs again);
- `skip`: move past the crashed state (its input becomes its output) and resume; a state without a
  `Next` cannot be skipped and fails instead;
- `fail`: end the execution FAILED with `smq.WorkerLost`;
- `pause`: hold it PAUSED for an operator (`smq executions resume EID`).

After `max_attempts` recoveries the execution fails with `smq.RecoveryExhausted`.

An execution handed to the queue but not yet taken by any worker (woken by a message or a timer, or
already recovered once) has a lease with no worker as its owner. When that runs out, its continuation
is only slow or lost, nothing crashed: it is `requeue`d (its continuation published again) without
counting an attempt or applying the strategy, so a long backlog never fails or pauses executions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smq.engine.cursor import Cursor
from smq.engine.errors import SmqError
from smq.execution.continuation import Continuation
from smq.logs import execution_context, log_end
from smq.repository.branches import restore_inputs
from smq.repository.models import FAILED, PAUSED, RECOVERY_OWNER
from smq.repository.recovery_queries import (
    expired_executions,
    extend_handed_over,
    handed_over_executions,
    put_policy,
    read_policy,
    recover_expired,
    requeue_expired,
)
from smq.repository.repository import Repository

STRATEGIES = ("retry", "skip", "fail", "pause")
WORKER_LOST = "smq.WorkerLost"
RECOVERY_EXHAUSTED = "smq.RecoveryExhausted"


class PolicyError(SmqError, ValueError):
    """A recovery policy smq cannot apply (unknown strategy, attempts below 1)."""


log = logging.getLogger("smq.recovery")


@dataclass(frozen=True)
class Recovered:
    execution_id: str
    state_machine_id: str
    name: str
    state: str | None
    action: str  # resume | skip | requeue | fail | pause | exhausted | (dry run) would-recover
    attempt: int
    queue: str = "default"  # where its continuation goes: the queue recorded with the execution

    @property
    def needs_continuation(self) -> bool:
        return self.action in ("resume", "skip", "requeue")

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "state_machine_id": self.state_machine_id,
            "name": self.name,
            "state": self.state,
            "action": self.action,
            "attempt": self.attempt,
            "queue": self.queue,
        }


def _recovered(row: Any, action: str, attempt: int) -> Recovered:
    """What a scan did with the execution in `row` (a candidate read by `scan`)."""
    return Recovered(
        row.id, row.state_machine_id, row.name, row.current_state, action, attempt, row.queue or "default"
    )


def continuations(recovered: list[Recovered]) -> list[Continuation]:
    """What must be continued after a scan, each on the queue its execution runs from."""
    return [Continuation(r.state_machine_id, r.name, r.queue) for r in recovered if r.needs_continuation]


def set_policy(repository: Repository, state_machine_id: str, strategy: str, max_attempts: int) -> None:
    if strategy not in STRATEGIES:
        raise PolicyError(f"unknown recovery strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if max_attempts < 1:
        raise PolicyError(f"max_attempts must be at least 1, got {max_attempts}")
    put_policy(repository.engine, state_machine_id, strategy, max_attempts)


def get_policy(repository: Repository, state_machine_id: str, default_attempts: int = 3) -> tuple[str, int]:
    row = read_policy(repository.engine, state_machine_id)
    return ("retry", default_attempts) if row is None else (row.strategy, row.max_attempts)


def scan(
    repository: Repository,
    *,
    lease_seconds: float,
    default_attempts: int = 3,
    grace: float = 300.0,
    dry_run: bool = False,
    limit: int = 500,
) -> list[Recovered]:
    """One pass: take over every RUNNING execution with an expired lease (at most `limit`)."""
    now = datetime.now(UTC)
    candidates = expired_executions(repository.engine, now, lease_seconds, limit)
    if dry_run:
        return [_recovered(row, "would-recover", row.recovery_attempts + 1) for row in candidates]
    recovered = []
    for row in candidates:
        outcome = _recover_one(repository, row, now, lease_seconds, default_attempts, grace)
        if outcome is not None:
            recovered.append(outcome)
    return recovered


def _recover_one(
    repository: Repository, row: Any, now: datetime, lease_seconds: float, default_attempts: int, grace: float
) -> Recovered | None:
    if row.lease_owner in (None, RECOVERY_OWNER) and row.lease_expires_at is not None:
        return _requeue(repository, row, now, lease_seconds, grace)
    strategy, max_attempts = get_policy(repository, row.state_machine_id, default_attempts)
    attempt = row.recovery_attempts + 1
    settled: dict[str, Any] = {}

    def settle(current: Any) -> tuple[str, dict[str, Any]]:
        action = "exhausted" if attempt > max_attempts else {"retry": "resume"}.get(strategy, strategy)
        values: dict[str, Any] = {}
        if action == "skip":
            skipped = _skip(repository, current)
            if skipped is None:
                action = "fail"
            else:
                values = {"cursor": skipped, "current_state": skipped["state"]}
        if action in ("fail", "exhausted"):
            error = RECOVERY_EXHAUSTED if action == "exhausted" else WORKER_LOST
            cause = (
                f"recovered {max_attempts} time(s) and lost again in state {current.current_state!r}"
                if action == "exhausted"
                else f"the process running state {current.current_state!r} was lost"
            )
            values = {
                "status": FAILED,
                "error": error,
                "cause": cause,
                "stop_time": now,
                "duration_ms": max(0, round((now - current.start_time).total_seconds() * 1000)),
                "lease_owner": None,
                "lease_expires_at": None,
            }
        elif action == "pause":
            values = {"status": PAUSED, "lease_owner": None, "lease_expires_at": None}
        settled.clear()
        settled.update(values, state=current.current_state)
        return action, values

    action = recover_expired(
        repository.engine, row, now=now, lease_seconds=lease_seconds, grace=grace, settle=settle
    )
    if action is None:
        return None  # another scanner took it, or its worker came back
    _log_recovery(row, action, attempt, settled)
    return _recovered(row, action, attempt)


def _log_recovery(row: Any, action: str, attempt: int, settled: dict[str, Any]) -> None:
    """One line naming the execution: how it was recovered, or (failed) the line of its end."""
    fields = {
        "execution_id": row.id,
        "execution_name": row.name,
        "state_machine_id": row.state_machine_id,
        "state": settled.get("state", row.current_state),
        "queue": row.queue,
    }
    if settled.get("status") == FAILED:
        log_end(log, {**fields, **settled})
        return
    with execution_context(**fields):
        log.warning("execution lost by %s recovered (%s, recovery %d)", row.lease_owner, action, attempt)


def requeue_handed_over(repository: Repository, *, grace: float, limit: int = 5000) -> list[Recovered]:
    """The broker lost its data: every RUNNING execution handed to the queue that no worker has taken
    yet (woken, redriven, recovered; lease with no owner) lost its message with it. Publish their
    continuations now instead of when their wake grace runs out. Executions a live worker holds are left
    alone: their worker goes on running them."""
    now = datetime.now(UTC)
    return [
        _recovered(row, "requeue", row.recovery_attempts)
        for row in handed_over_executions(repository.engine, limit)
        if extend_handed_over(repository.engine, row.id, now=now, grace=grace)
    ]


def _requeue(
    repository: Repository, row: Any, now: datetime, lease_seconds: float, grace: float
) -> Recovered | None:
    """No worker took this execution since it was handed to the queue: publish its continuation again
    (a duplicate is harmless: the first to run takes it) and wait another grace period."""
    if not requeue_expired(repository.engine, row, now=now, lease_seconds=lease_seconds, grace=grace):
        return None
    return _recovered(row, "requeue", row.recovery_attempts)


def _skip(repository: Repository, current: Any) -> dict[str, Any] | None:
    """The cursor moved past its state (input passed through), or None when the state has no Next."""
    if current.cursor is None:
        return None
    cursor = Cursor.from_dict(restore_inputs(repository.engine, current.cursor, current.input))
    machine, _ = repository.state_machine(current.state_machine_id, current.version)
    state = machine.machine.states.get(cursor.state)
    if state is None or not getattr(state, "next", None):
        return None
    moved = cursor.moved(
        state=state.next,
        pending=None,
        not_before=None,
        attempt=1,
        retry_counts=(),
        entered_at=None,
        transitions=cursor.transitions + 1,
    )
    return moved.to_dict()
