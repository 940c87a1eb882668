"""The table handles every statement is built on: one name each, for SQLAlchemy Core.

`Row.__table__` is typed as a FromClause; these are the same objects, typed as the Tables they are.
Every module that writes SQL imports them from here (never `cast(Table, ...)` again elsewhere).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from smq.repository.models import (
    BranchRow,
    ChainLinkRow,
    ChildLinkRow,
    DeadLetterRow,
    DefinitionRow,
    EnqueuedRow,
    ExecutionRow,
    HistoryRow,
    MessageRow,
    OperatorActionRow,
    RecoveryPolicyRow,
    WaitRow,
)

__all__ = [
    "BRANCHES",
    "CHAIN_LINKS",
    "CHILD_LINKS",
    "DEAD_LETTERS",
    "DEFINITIONS",
    "ENQUEUED",
    "EXECUTIONS",
    "HISTORY",
    "MESSAGES",
    "OPERATOR_ACTIONS",
    "RECOVERY_POLICIES",
    "WAITS",
]

DEFINITIONS = cast(Table, DefinitionRow.__table__)
EXECUTIONS = cast(Table, ExecutionRow.__table__)
HISTORY = cast(Table, HistoryRow.__table__)
CHAIN_LINKS = cast(Table, ChainLinkRow.__table__)
DEAD_LETTERS = cast(Table, DeadLetterRow.__table__)
ENQUEUED = cast(Table, EnqueuedRow.__table__)  # the enqueue ledger
WAITS = cast(Table, WaitRow.__table__)
MESSAGES = cast(Table, MessageRow.__table__)
RECOVERY_POLICIES = cast(Table, RecoveryPolicyRow.__table__)
OPERATOR_ACTIONS = cast(Table, OperatorActionRow.__table__)
CHILD_LINKS = cast(Table, ChildLinkRow.__table__)
BRANCHES = cast(Table, BranchRow.__table__)  # per-iteration progress of a parked fan-out
