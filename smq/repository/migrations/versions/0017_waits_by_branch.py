"""an execution's open waits are found by branch through the index: re-parking one iteration of a Map of
thousands no longer reads every open wait of the execution

Revision ID: 0017
Revises: 0016

`ix_smq_waits_execution` (execution_id, status) gains `branch` as its third column; every query that
used the two columns still does.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("smq_waits") as batch_op:
        batch_op.drop_index("ix_smq_waits_execution")
        batch_op.create_index("ix_smq_waits_execution", ["execution_id", "status", "branch"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("smq_waits") as batch_op:
        batch_op.drop_index("ix_smq_waits_execution")
        batch_op.create_index("ix_smq_waits_execution", ["execution_id", "status"], unique=False)
