"""The recovery scanner's statements: recovery policies, the executions whose runner is gone, and the
conditional updates that take one over (so two scanners never both take it).

What the scanner does with an execution it took (its strategy, when to fail or pause it) is decided in
`smq.execution.recovery`; the lease rule is `smq.repository.leases`'.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from smq.repository.leases import handed_over, lease_expired
from smq.repository.models import RECOVERY_OWNER
from smq.repository.tables import EXECUTIONS, RECOVERY_POLICIES

__all__ = [
    "expired_executions",
    "handed_over_executions",
    "put_policy",
    "read_policy",
    "recover_expired",
    "requeue_expired",
    "extend_handed_over",
]

Outcome = TypeVar("Outcome")


def put_policy(engine: Engine, state_machine_id: str, strategy: str, max_attempts: int) -> None:
    """Store (or replace) the recovery policy of a state machine."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RECOVERY_POLICIES).values(
        state_machine_id=state_machine_id, strategy=strategy, max_attempts=max_attempts
    )
    statement = statement.on_conflict_do_update(
        index_elements=["state_machine_id"],
        set_={"strategy": strategy, "max_attempts": max_attempts},
    )
    with engine.begin() as connection:
        connection.execute(statement)


def read_policy(engine: Engine, state_machine_id: str) -> Any:
    """The stored policy row of a state machine (strategy, max_attempts), or None."""
    with engine.connect() as connection:
        return connection.execute(
            select(RECOVERY_POLICIES).where(RECOVERY_POLICIES.c.state_machine_id == state_machine_id)
        ).first()


def expired_executions(engine: Engine, now: datetime, lease_seconds: float, limit: int) -> list[Any]:
    """Up to `limit` RUNNING executions whose runner is gone (`lease_expired`), least recently written
    first: id, state_machine_id, name, current_state, recovery_attempts, lease_owner,
    lease_expires_at, queue."""
    c = EXECUTIONS.c
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(
                    c.id,
                    c.state_machine_id,
                    c.name,
                    c.current_state,
                    c.recovery_attempts,
                    c.lease_owner,
                    c.lease_expires_at,
                    c.queue,
                )
                .where(lease_expired(now, lease_seconds))
                .order_by(c.updated_at)
                .limit(limit)
            ).all()
        )


def _still_expired(candidate: Any, now: datetime, lease_seconds: float) -> tuple[Any, ...]:
    """SQL: `candidate` (from `expired_executions`) is as the scan read it: no other scanner counted an
    attempt since, and its runner has not come back."""
    c = EXECUTIONS.c
    return (
        c.id == candidate.id,
        c.recovery_attempts == candidate.recovery_attempts,
        lease_expired(now, lease_seconds),
    )


def recover_expired(
    engine: Engine,
    candidate: Any,
    *,
    now: datetime,
    lease_seconds: float,
    grace: float,
    settle: Callable[[Any], tuple[Outcome, dict[str, Any]]],
) -> Outcome | None:
    """Take `candidate` over for the recovery scanner with one conditional update: count the attempt
    and hold it (`RECOVERY_OWNER`) for `grace` seconds. Then, in the same transaction, `settle` is
    given the execution's whole row and says what becomes of it: (its outcome, the columns to write;
    none to leave it RUNNING). Returns that outcome, or None when another scanner took it or its worker
    came back."""
    c = EXECUTIONS.c
    with engine.begin() as connection:
        claimed = connection.execute(
            update(EXECUTIONS)
            .where(*_still_expired(candidate, now, lease_seconds))
            .values(
                recovery_attempts=candidate.recovery_attempts + 1,
                lease_owner=RECOVERY_OWNER,
                lease_expires_at=now + timedelta(seconds=grace),
                updated_at=now,
            )
        ).rowcount
        if claimed != 1:
            return None
        current = connection.execute(select(EXECUTIONS).where(c.id == candidate.id)).one()
        outcome, values = settle(current)
        if values:
            connection.execute(update(EXECUTIONS).where(c.id == candidate.id).values(**values))
    return outcome


def requeue_expired(
    engine: Engine, candidate: Any, *, now: datetime, lease_seconds: float, grace: float
) -> bool:
    """Give `candidate` (handed to the queue, never taken) another `grace` seconds, unless another
    scanner or a worker got to it first; whether it did."""
    with engine.begin() as connection:
        moved = connection.execute(
            update(EXECUTIONS)
            .where(*_still_expired(candidate, now, lease_seconds))
            .values(lease_expires_at=now + timedelta(seconds=grace), updated_at=now)
        ).rowcount
    return bool(moved == 1)


def handed_over_executions(engine: Engine, limit: int) -> list[Any]:
    """Up to `limit` executions handed to the queue and not taken by a worker yet (`handed_over`),
    least recently written first: id, state_machine_id, name, current_state, recovery_attempts, queue."""
    c = EXECUTIONS.c
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(c.id, c.state_machine_id, c.name, c.current_state, c.recovery_attempts, c.queue)
                .where(handed_over())
                .order_by(c.updated_at)
                .limit(limit)
            ).all()
        )


def extend_handed_over(engine: Engine, execution_id: str, *, now: datetime, grace: float) -> bool:
    """Give a handed-over execution another `grace` seconds, if it is still handed over; whether it
    was."""
    with engine.begin() as connection:
        moved = connection.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == execution_id, handed_over())
            .values(lease_expires_at=now + timedelta(seconds=grace), updated_at=now)
        ).rowcount
    return bool(moved == 1)
