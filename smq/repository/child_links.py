"""Parent and child executions (`states:startExecution`): who started whom, read both ways.

A link is written when a Task starts a child, before the child runs; `smq executions show` and the
console read it to show a parent's children and a child's parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from smq.repository.tables import CHILD_LINKS, EXECUTIONS


@dataclass(frozen=True)
class ChildLink:
    """One link, with what a listing shows of the execution at its other end."""

    child_execution_id: str
    parent_execution_id: str
    parent_state_name: str
    mode: str  # async, sync, sync:2, token
    created_at: datetime
    state_machine_id: str  # of the execution at the other end
    name: str
    status: str

    def to_dict(self) -> dict[str, object]:
        return {
            "child_execution_id": self.child_execution_id,
            "parent_execution_id": self.parent_execution_id,
            "parent_state_name": self.parent_state_name,
            "mode": self.mode,
            "created_at": self.created_at.isoformat(),
            "state_machine_id": self.state_machine_id,
            "name": self.name,
            "status": self.status,
        }


def link_child(engine: Engine, child_id: str, parent_id: str, parent_state: str, mode: str) -> None:
    """Record that `parent_id`'s state `parent_state` started `child_id` (once: a second start of the
    same named child keeps the first link)."""
    row = {
        "child_execution_id": child_id,
        "parent_execution_id": parent_id,
        "parent_state_name": parent_state,
        "mode": mode,
        "created_at": datetime.now(UTC),
    }
    try:
        with engine.begin() as connection:
            connection.execute(insert(CHILD_LINKS).values(**row))
    except IntegrityError:
        return  # linked already (the same named child started again)


def children_of(engine: Engine, parent_id: str, limit: int = 100) -> list[ChildLink]:
    """The executions `parent_id` started, oldest first (at most `limit`)."""
    link, ex = CHILD_LINKS.c, EXECUTIONS.c
    query = (
        select(CHILD_LINKS, ex.state_machine_id, ex.name, ex.status)
        .join(EXECUTIONS, ex.id == link.child_execution_id)
        .where(link.parent_execution_id == parent_id)
        .order_by(link.created_at, link.child_execution_id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [ChildLink(**row._asdict()) for row in connection.execute(query)]


def parent_of(engine: Engine, child_id: str) -> ChildLink | None:
    """The link to the execution that started `child_id`, or None."""
    link, ex = CHILD_LINKS.c, EXECUTIONS.c
    query = (
        select(CHILD_LINKS, ex.state_machine_id, ex.name, ex.status)
        .join(EXECUTIONS, ex.id == link.parent_execution_id)
        .where(link.child_execution_id == child_id)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else ChildLink(**row._asdict())
