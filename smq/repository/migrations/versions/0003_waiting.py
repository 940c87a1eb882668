"""waiting and recovering: waits (messages, callbacks, durable timers), messages, leases, recovery

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("smq_executions") as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("recovery_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_smq_executions_status_lease", ["status", "lease_expires_at"], unique=False)
    op.create_table(
        "smq_waits",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("history_length", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("correlation_key", sa.String(length=200), nullable=True),
        sa.Column("correlation_value", sa.Text(), nullable=True),
        sa.Column("token", sa.String(length=200), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timeout_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(length=50), nullable=False),
        sa.Column("resolution", sa.String(length=30), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["smq_executions.id"],
            name=op.f("fk_smq_waits_execution_id_smq_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smq_waits")),
        sa.UniqueConstraint("token", name=op.f("uq_smq_waits_token")),
    )
    with op.batch_alter_table("smq_waits") as batch_op:
        batch_op.create_index(
            "ix_smq_waits_correlation", ["status", "correlation_key", "correlation_value"], unique=False
        )
        batch_op.create_index("ix_smq_waits_due", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_smq_waits_execution", ["execution_id", "status"], unique=False)
    op.create_table(
        "smq_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("correlation_key", sa.String(length=200), nullable=False),
        sa.Column("correlation_value", sa.Text(), nullable=False),
        sa.Column("data", JSON_TYPE, nullable=True),
        sa.Column("resumed", JSON_TYPE, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smq_messages")),
    )
    with op.batch_alter_table("smq_messages") as batch_op:
        batch_op.create_index(
            "ix_smq_messages_correlation", ["correlation_key", "correlation_value"], unique=False
        )
    op.create_table(
        "smq_recovery_policies",
        sa.Column("state_machine_id", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=20), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("state_machine_id", name=op.f("pk_smq_recovery_policies")),
    )


def downgrade() -> None:
    op.drop_table("smq_recovery_policies")
    with op.batch_alter_table("smq_messages") as batch_op:
        batch_op.drop_index("ix_smq_messages_correlation")
    op.drop_table("smq_messages")
    with op.batch_alter_table("smq_waits") as batch_op:
        batch_op.drop_index("ix_smq_waits_execution")
        batch_op.drop_index("ix_smq_waits_due")
        batch_op.drop_index("ix_smq_waits_correlation")
    op.drop_table("smq_waits")
    with op.batch_alter_table("smq_executions") as batch_op:
        batch_op.drop_index("ix_smq_executions_status_lease")
        batch_op.drop_column("recovery_attempts")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
