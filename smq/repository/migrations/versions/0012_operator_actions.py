"""operator actions: what a person did to an execution (redrive, stop, resume, dead letter retry or
purge, a message or callback answer), by whom and when, shown with its history

Revision ID: 0012
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "smq_operator_actions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("detail", JSON_TYPE, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smq_operator_actions")),
    )
    op.create_index(
        op.f("ix_smq_operator_actions_execution_id_created_at"),
        "smq_operator_actions",
        ["execution_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_smq_operator_actions_execution_id_created_at", table_name="smq_operator_actions")
    op.drop_table("smq_operator_actions")
