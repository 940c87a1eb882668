"""nested executions: which Task of which execution started each child (states:startExecution)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smq_child_links",
        sa.Column("child_execution_id", sa.String(64), primary_key=True),
        sa.Column("parent_execution_id", sa.String(64), nullable=False),
        sa.Column("parent_state_name", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_smq_child_links_parent", "smq_child_links", ["parent_execution_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_smq_child_links_parent", table_name="smq_child_links")
    op.drop_table("smq_child_links")
