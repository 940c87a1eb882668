"""SQLAlchemy models: definitions (versioned), executions, per-state history, chain links.

JSON columns are JSONB on PostgreSQL and JSON text on SQLite. Times are timezone-aware UTC. The schema
itself is owned by the Alembic migrations in `smq/repository/migrations`; a test checks that these
models and the migrated schema agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from smq.engine.jsontext import compact
from smq.engine.status import FINAL_STATUSES as FINAL_STATUSES  # re-exported for the queries
from smq.engine.status import Status


class SQLiteJSON(TypeDecorator[Any]):
    """JSON as TEXT on SQLite. A column declared JSON gets NUMERIC affinity there, which turns a bare
    number such as 2**70 + 1 into a float; TEXT affinity keeps the exact JSON text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else compact(value)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


JSONType = (
    JSON(none_as_null=True)
    .with_variant(JSONB(none_as_null=True), "postgresql")
    .with_variant(SQLiteJSON(), "sqlite")
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone: store UTC, read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: smq stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Execution statuses, as the queries name them (smq.engine.status.Status).
RUNNING, WAITING, PAUSED = Status.RUNNING, Status.WAITING, Status.PAUSED
SUCCEEDED, FAILED, TIMED_OUT, ABORTED = Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED
STATUSES = tuple(Status)

# Lease owners that are no process (see smq.execution.leases): the recovery scanner's hand-over to the
# queue, and the dead letters' hold for the operator. A worker handed such an execution takes it.
RECOVERY_OWNER = "smq-recovery"
DEAD_LETTER_OWNER_PREFIX = "dead-letter:"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DefinitionRow(Base):
    """One version of a state machine definition. Putting a changed definition adds a version."""

    __tablename__ = "smq_definitions"

    state_machine_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[Any] = mapped_column(JSONType, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ExecutionRow(Base):
    __tablename__ = "smq_executions"
    __table_args__ = (
        UniqueConstraint("state_machine_id", "name"),
        # Keyset pagination walks (start_time, id) inside each filter's leading columns.
        Index("ix_smq_executions_sm_start", "state_machine_id", "start_time", "id"),
        Index("ix_smq_executions_sm_status_start", "state_machine_id", "status", "start_time", "id"),
        Index("ix_smq_executions_status_start", "status", "start_time", "id"),
        Index("ix_smq_executions_source", "source_execution_id"),
        Index("ix_smq_executions_start_id", "start_time", "id"),
        Index("ix_smq_executions_sm_status_duration", "state_machine_id", "status", "duration_ms"),
        Index("ix_smq_executions_status_lease", "status", "lease_expires_at"),
        # Retention takes the oldest finished executions a batch at a time (migration 0011).
        Index("ix_smq_executions_status_stop", "status", "stop_time", "id"),
        # `tag.KEY=VALUE` filters are one JSONB containment (tags @> {...}) on PostgreSQL, served by
        # this GIN index (migration 0016); SQLite reads the tag of each row it walks.
        Index(
            "ix_smq_executions_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    state_machine_id: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    input: Mapped[Any] = mapped_column(JSONType, nullable=True)
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    current_state: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cursor: Mapped[Any] = mapped_column(JSONType, nullable=True)
    history_length: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    stop_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    source_execution_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_state_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    transformer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Crash recovery: the process running the execution renews its lease; an expired lease on a RUNNING
    # execution means that process is gone (the lease decides, never the start time).
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recovery_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # The queue its worker took it from: recovery, redrive and resume continue it on the same queue
    # (None: started in-process, or before smq recorded it; continued on "default").
    queue: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # The payload's `index` (its position in a batch) and user tags (KEY -> VALUE), shown and filterable
    # (migration 0011).
    execution_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tags: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # OpenTelemetry (SMQ_TRACING): the W3C traceparent of its last run's span, which the next run
    # (after a park, a crash, a redrive) links to. NULL when not traced.
    trace_context: Mapped[str | None] = mapped_column(String(100), nullable=True)


class HistoryRow(Base):
    __tablename__ = "smq_history"
    __table_args__ = (
        UniqueConstraint("execution_id", "sequence"),
        Index("ix_smq_history_execution_state", "execution_id", "state_name", "sequence"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # No foreign key: written only together with its execution (see migration 0007).
    execution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    state_name: Mapped[str] = mapped_column(String(200), nullable=False)
    state_type: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    scope: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    input: Mapped[Any] = mapped_column(JSONType, nullable=True)
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    exited_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ChainLinkRow(Base):
    """Execution `target` was started from the output of `source` (chained executions, batches)."""

    __tablename__ = "smq_chain_links"
    __table_args__ = (
        UniqueConstraint("source_execution_id", "target_state_machine_id", "target_execution_id"),
        Index("ix_smq_chain_links_target_sm_source", "target_state_machine_id", "source_execution_id"),
        # Deleting an execution finds the links naming it as target through this (migration 0011).
        Index("ix_smq_chain_links_target", "target_execution_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    source_execution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    target_execution_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("smq_executions.id", ondelete="CASCADE"), nullable=False
    )
    target_state_machine_id: Mapped[str] = mapped_column(String(200), nullable=False)
    source_state_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ChildLinkRow(Base):
    """Execution `child` was started by a Task of `parent` (`states:startExecution`, smq.engine.nested)."""

    __tablename__ = "smq_child_links"
    __table_args__ = (Index("ix_smq_child_links_parent", "parent_execution_id", "created_at"),)

    child_execution_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_execution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    parent_state_name: Mapped[str] = mapped_column(String(200), nullable=False)
    mode: Mapped[str] = mapped_column(String(20), nullable=False)  # async, sync, sync:2, token
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DeadLetterRow(Base):
    """A task smq gave up on (retries exhausted, time limit, malformed payload), keyed by Celery task id.

    The payload is the exact JSON the task received, so `smq dead retry` can replay it unchanged.
    """

    __tablename__ = "smq_dead_letters"
    __table_args__ = (
        Index("ix_smq_dead_letters_queue_failed", "queue", "failed_at"),
        Index("ix_smq_dead_letters_failed", "failed_at", "task_id"),
    )

    task_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(200), nullable=False)
    queue: Mapped[str] = mapped_column(String(50), nullable=False)
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    state_machine_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    execution_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class EnqueuedRow(Base):
    """The ledger of named executions handed to the queue, so a re-run leader or bulk start enqueues
    nothing twice (Celery does not deduplicate by task id; the database does, by name)."""

    __tablename__ = "smq_enqueued"

    state_machine_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(255), nullable=False)
    queue: Mapped[str] = mapped_column(String(50), nullable=False)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The task payload, kept until the execution starts: what the scheduler publishes again when the
    # broker lost the message (migration 0009).
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)

    __table_args__ = (
        Index(
            "ix_smq_enqueued_unstarted",
            "enqueued_at",
            postgresql_where=text("payload IS NOT NULL"),
            sqlite_where=text("payload IS NOT NULL"),
        ),
    )


class WaitRow(Base):
    """What a parked execution waits for: a message (key, value), a callback token, or a time.

    Resolving a wait is one conditional update (WAITING -> RESOLVED), so a message and its timeout
    racing each other have exactly one winner. `due_at` makes it a durable timer (a Wait state, a
    Message or callback timeout, a heartbeat deadline) that the dispatcher fires when it is due.
    """

    __tablename__ = "smq_waits"
    __table_args__ = (
        Index("ix_smq_waits_correlation", "status", "correlation_key", "correlation_value"),
        Index("ix_smq_waits_due", "status", "due_at"),
        # An answer in rows mode re-parks one branch: its open row is found by branch (migration 0017).
        Index("ix_smq_waits_execution", "execution_id", "status", "branch"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    execution_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("smq_executions.id", ondelete="CASCADE"), nullable=False
    )
    history_length: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    correlation_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    correlation_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    token: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # TimeoutSeconds
    queue: Mapped[str] = mapped_column(String(50), nullable=False)
    resolution: Mapped[str | None] = mapped_column(String(30), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A branch of a parked Parallel/Map (its path, see smq.engine.cursor.branch_waits); NULL: the
    # execution's own wait.
    branch: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # A branch's delivery that came while its execution was running (status HELD): applied when the
    # execution next parks.
    delivery: Mapped[Any] = mapped_column(JSONType, nullable=True)


class BranchRow(Base):
    """One iteration (or branch) of a parked top-level Map (or Parallel) whose iterations wait for
    messages or task tokens: its own cursor while it waits, the answer it got (READY) until a run of
    its execution applies it, and its result once it has ended. The execution's cursor keeps only the
    fan-out's counts, so an answer reads and writes this row, not every iteration's progress
    (smq.engine.branch_rows)."""

    __tablename__ = "smq_branches"
    __table_args__ = (Index("ix_smq_branches_execution_status", "execution_id", "status"),)

    execution_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)  # WAITING, READY, SUCCEEDED, FAILED
    cursor: Mapped[Any] = mapped_column(JSONType, nullable=True)  # WAITING/READY: without execution info
    delivery: Mapped[Any] = mapped_column(JSONType, nullable=True)  # READY: the answer to apply
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)  # SUCCEEDED
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # FAILED (a failure a Map tolerates)
    cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class MessageRow(Base):
    """Every message sent, matched or not: a message that matched nothing is recorded, never dropped."""

    __tablename__ = "smq_messages"
    __table_args__ = (Index("ix_smq_messages_correlation", "correlation_key", "correlation_value"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    correlation_key: Mapped[str] = mapped_column(String(200), nullable=False)
    correlation_value: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[Any] = mapped_column(JSONType, nullable=True)
    resumed: Mapped[Any] = mapped_column(JSONType, nullable=False)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class RecoveryPolicyRow(Base):
    """Per state machine: what the recovery scanner does with a crashed execution."""

    __tablename__ = "smq_recovery_policies"

    state_machine_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(20), nullable=False)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False)


class OperatorActionRow(Base):
    """What a person did to an execution (redrive, stop, resume, a dead letter retried or purged, a
    message or callback answer), by whom and when: shown with its history. Written in the transaction
    of the change itself where smq makes one (stop, redrive, resume)."""

    __tablename__ = "smq_operator_actions"
    __table_args__ = (Index("ix_smq_operator_actions_execution_id_created_at", "execution_id", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    execution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    detail: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
