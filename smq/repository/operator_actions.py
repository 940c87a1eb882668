"""The operator actions recorded with an execution's history: what a person did, by whom, when.

Stop, redrive and resume write theirs in the transaction of the change (`smq.repository.transitions`);
answers to waits and dead-letter actions right after theirs succeeded.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from smq.repository.tables import OPERATOR_ACTIONS


def default_actor() -> str:
    """Who runs this process (`user@host`): the CLI's operator, when nobody else is named."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:200]


@dataclass(frozen=True)
class OperatorAction:
    execution_id: str
    action: str  # stop, redrive, resume, dead_letter_retry, dead_letter_purge, message, task_success, ...
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "action": self.action,
            "actor": self.actor,
            "detail": self.detail,
            "created_at": self.created_at.isoformat(),
        }


def insert_action(connection: Connection, action: OperatorAction) -> None:
    connection.execute(
        insert(OPERATOR_ACTIONS).values(
            execution_id=action.execution_id,
            action=action.action,
            actor=action.actor[:200],
            detail=action.detail or None,
            created_at=action.created_at,
        )
    )


def record_actions(engine: Engine, actions: Iterable[OperatorAction]) -> None:
    with engine.begin() as connection:
        for action in actions:
            insert_action(connection, action)


def actions_of(engine: Engine, execution_id: str) -> list[OperatorAction]:
    """Oldest first."""
    table = OPERATOR_ACTIONS
    with engine.connect() as connection:
        rows = connection.execute(
            select(table).where(table.c.execution_id == execution_id).order_by(table.c.created_at, table.c.id)
        ).all()
    return [
        OperatorAction(row.execution_id, row.action, row.actor, row.detail or {}, row.created_at)
        for row in rows
    ]
