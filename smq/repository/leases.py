"""The lease statements: taking, renewing and letting go of an execution's lease, and the one rule
that says when a lease holds.

The rule. A RUNNING execution's lease holds while `lease_expires_at` is in the future and its
`lease_owner` is a live process. It holds nobody when:

- it has expired (`lease_expires_at` < now): its process stopped renewing it;
- it has no owner (handed to the queue), or the owner is the recovery scanner's or the dead letters'
  hold: no process runs it (for taking it to run; the scanner re-enqueues such executions instead);
- `lease_expires_at` is null: no lease was ever taken (a runner with leases off, an execution written
  by `Repository.create_execution`), or a dead process's lease was let go of.

A null expiry is no lease, so a runner may take it at once (`lease_is_free`). The recovery scanner,
which asks a different question (is whoever runs it gone?), cannot tell a lease-less runner from a
dead one: it judges a null expiry by the execution's last write instead, and recovers it only once
that is one lease period old (`lease_expired`). Both expressions are built here, from this rule.

Policy (who takes a lease when, what a dead process is, what recovery does) stays in
`smq.execution.leases` and `smq.execution.recovery`; this module only holds the statements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update

from smq.repository.models import DEAD_LETTER_OWNER_PREFIX, RECOVERY_OWNER, RUNNING
from smq.repository.tables import EXECUTIONS

__all__ = [
    "LeaseAttempt",
    "handed_over",
    "lease_expired",
    "lease_is_free",
    "let_go_of_lease",
    "renew_leases",
    "take_lease",
]


def lease_is_free(now: datetime, *also_free: str) -> Any:
    """SQL: the execution's lease holds no live process (see the module's rule): nobody's (handed to
    the queue), the recovery scanner's or the dead letters' hold, expired, never taken, or one of the
    owners in `also_free`."""
    c = EXECUTIONS.c
    return or_(
        c.lease_owner.is_(None),
        c.lease_owner.in_((RECOVERY_OWNER, *also_free)),
        c.lease_owner.startswith(DEAD_LETTER_OWNER_PREFIX, autoescape=True),
        c.lease_expires_at.is_(None),
        c.lease_expires_at < now,
    )


def lease_expired(now: datetime, lease_seconds: float) -> Any:
    """SQL: a RUNNING execution whose runner is gone, for the recovery scanner (see the module's
    rule): its lease expired, or it has none and its last write is older than `lease_seconds`."""
    c = EXECUTIONS.c
    return and_(
        c.status == RUNNING,
        or_(
            c.lease_expires_at < now,
            # Never leased (a process died between creating and running it): judged by its last write.
            and_(c.lease_expires_at.is_(None), c.updated_at < now - timedelta(seconds=lease_seconds)),
        ),
    )


def handed_over() -> Any:
    """SQL: a RUNNING execution handed to the queue that no worker has taken yet (woken, redriven,
    recovered): its lease has no owner, or the recovery scanner's."""
    c = EXECUTIONS.c
    return and_(c.status == RUNNING, or_(c.lease_owner.is_(None), c.lease_owner == RECOVERY_OWNER))


@dataclass(frozen=True)
class LeaseAttempt:
    """What `take_lease` found: taken, or who holds the execution (status None: no such execution)."""

    taken: bool
    status: str | None = None
    owner: str | None = None
    expires_at: datetime | None = None


def take_lease(
    engine: Engine, execution_id: str, owner: str, *, now: datetime, until: datetime
) -> LeaseAttempt:
    """Lease the RUNNING execution `execution_id` to `owner` until `until` if its lease is free (or
    already `owner`'s); otherwise read, in the same transaction, who holds it."""
    c = EXECUTIONS.c
    with engine.begin() as connection:
        taken = connection.execute(
            update(EXECUTIONS)
            .where(c.id == execution_id, c.status == RUNNING, lease_is_free(now, owner))
            .values(lease_owner=owner, lease_expires_at=until)
        ).rowcount
        if taken:
            return LeaseAttempt(True)
        row = connection.execute(
            select(c.status, c.lease_owner, c.lease_expires_at).where(c.id == execution_id)
        ).one_or_none()
    if row is None:
        return LeaseAttempt(False)
    return LeaseAttempt(False, row.status, row.lease_owner, row.lease_expires_at)


def let_go_of_lease(engine: Engine, execution_id: str, owner: str) -> None:
    """End `owner`'s lease on the execution (unless someone else has taken it since): its expiry
    becomes null, so it holds nobody."""
    c = EXECUTIONS.c
    with engine.begin() as connection:
        connection.execute(
            update(EXECUTIONS)
            .where(c.id == execution_id, c.lease_owner == owner)
            .values(lease_expires_at=None)
        )


def renew_leases(engine: Engine, execution_ids: Iterable[str], owner: str, until: datetime) -> None:
    """Extend to `until` the leases `owner` holds on these RUNNING executions; one that lapsed and was
    taken over stays with its new owner."""
    c = EXECUTIONS.c
    with engine.begin() as connection:
        connection.execute(
            update(EXECUTIONS)
            .where(c.id.in_(list(execution_ids)), c.status == RUNNING, c.lease_owner == owner)
            .values(lease_expires_at=until)
        )
