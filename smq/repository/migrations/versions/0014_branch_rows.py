"""branch rows: each iteration of a parked Map (or branch of a Parallel) waiting for a message or a
task token keeps its progress in a row of its own, so an answer costs the same at 10 and at 10,000
waiting iterations; an answer that can no longer be delivered stays on its wait row (UNDELIVERED)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "smq_branches",
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cursor", JSON_TYPE, nullable=True),
        sa.Column("delivery", JSON_TYPE, nullable=True),
        sa.Column("output", JSON_TYPE, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", "idx", name=op.f("pk_smq_branches")),
    )
    op.create_index("ix_smq_branches_execution_status", "smq_branches", ["execution_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_smq_branches_execution_status", table_name="smq_branches")
    op.drop_table("smq_branches")
