"""distributed execution: dead letters and the enqueue ledger

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smq_dead_letters",
        sa.Column("task_id", sa.String(length=255), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=50), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("state_machine_id", sa.String(length=200), nullable=True),
        sa.Column("execution_name", sa.String(length=200), nullable=True),
        sa.Column("payload", JSON_TYPE, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_smq_dead_letters")),
    )
    with op.batch_alter_table("smq_dead_letters") as batch_op:
        batch_op.create_index("ix_smq_dead_letters_queue_failed", ["queue", "failed_at"], unique=False)
        batch_op.create_index("ix_smq_dead_letters_failed", ["failed_at", "task_id"], unique=False)
    op.create_table(
        "smq_enqueued",
        sa.Column("state_machine_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=255), nullable=False),
        sa.Column("queue", sa.String(length=50), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_machine_id", "name", name=op.f("pk_smq_enqueued")),
    )


def downgrade() -> None:
    op.drop_table("smq_enqueued")
    with op.batch_alter_table("smq_dead_letters") as batch_op:
        batch_op.drop_index("ix_smq_dead_letters_failed")
        batch_op.drop_index("ix_smq_dead_letters_queue_failed")
    op.drop_table("smq_dead_letters")
