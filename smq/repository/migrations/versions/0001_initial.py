"""initial schema: definitions, executions, history, chain links

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL; TEXT on SQLite, whose JSON columns would get NUMERIC affinity and mangle numbers.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smq_definitions",
        sa.Column("state_machine_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", JSON_TYPE, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_machine_id", "version", name=op.f("pk_smq_definitions")),
    )
    op.create_table(
        "smq_executions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state_machine_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("input", JSON_TYPE, nullable=True),
        sa.Column("output", JSON_TYPE, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("current_state", sa.String(length=200), nullable=True),
        sa.Column("cursor", JSON_TYPE, nullable=True),
        sa.Column("history_length", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stop_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_execution_id", sa.String(length=64), nullable=True),
        sa.Column("source_state_name", sa.String(length=200), nullable=True),
        sa.Column("transformer", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smq_executions")),
        sa.UniqueConstraint("state_machine_id", "name", name=op.f("uq_smq_executions_state_machine_id_name")),
    )
    with op.batch_alter_table("smq_executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_smq_executions_sm_start", ["state_machine_id", "start_time", "id"], unique=False
        )
        batch_op.create_index(
            "ix_smq_executions_sm_status_start",
            ["state_machine_id", "status", "start_time", "id"],
            unique=False,
        )
        batch_op.create_index("ix_smq_executions_source", ["source_execution_id"], unique=False)
        batch_op.create_index("ix_smq_executions_start_id", ["start_time", "id"], unique=False)
        batch_op.create_index("ix_smq_executions_status_start", ["status", "start_time", "id"], unique=False)
        batch_op.create_index(
            "ix_smq_executions_sm_status_duration",
            ["state_machine_id", "status", "duration_ms"],
            unique=False,
        )

    op.create_table(
        "smq_chain_links",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("source_execution_id", sa.String(length=64), nullable=False),
        sa.Column("target_execution_id", sa.String(length=64), nullable=False),
        sa.Column("target_state_machine_id", sa.String(length=200), nullable=False),
        sa.Column("source_state_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_execution_id"],
            ["smq_executions.id"],
            name=op.f("fk_smq_chain_links_target_execution_id_smq_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smq_chain_links")),
        sa.UniqueConstraint(
            "source_execution_id",
            "target_state_machine_id",
            "target_execution_id",
            name=op.f("uq_smq_chain_links_source_execution_id_target_state_machine_id_target_execution_id"),
        ),
    )
    with op.batch_alter_table("smq_chain_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_smq_chain_links_target_sm_source",
            ["target_state_machine_id", "source_execution_id"],
            unique=False,
        )

    op.create_table(
        "smq_history",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("state_name", sa.String(length=200), nullable=False),
        sa.Column("state_type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("input", JSON_TYPE, nullable=True),
        sa.Column("output", JSON_TYPE, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exited_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["smq_executions.id"],
            name=op.f("fk_smq_history_execution_id_smq_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smq_history")),
        sa.UniqueConstraint("execution_id", "sequence", name=op.f("uq_smq_history_execution_id_sequence")),
    )
    with op.batch_alter_table("smq_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_smq_history_execution_state", ["execution_id", "state_name", "sequence"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("smq_history", schema=None) as batch_op:
        batch_op.drop_index("ix_smq_history_execution_state")

    op.drop_table("smq_history")
    with op.batch_alter_table("smq_chain_links", schema=None) as batch_op:
        batch_op.drop_index("ix_smq_chain_links_target_sm_source")

    op.drop_table("smq_chain_links")
    with op.batch_alter_table("smq_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_smq_executions_sm_status_duration")
        batch_op.drop_index("ix_smq_executions_status_start")
        batch_op.drop_index("ix_smq_executions_start_id")
        batch_op.drop_index("ix_smq_executions_source")
        batch_op.drop_index("ix_smq_executions_sm_status_start")
        batch_op.drop_index("ix_smq_executions_sm_start")

    op.drop_table("smq_executions")
    op.drop_table("smq_definitions")
