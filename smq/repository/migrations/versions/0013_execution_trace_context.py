"""executions keep the trace context of their last run, so the next one (resume, redrive) links to it

Revision ID: 0013
Revises: 0012 (assigned after 0009; chained after main's 0011 and 0012 when main was merged in)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("smq_executions") as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smq_executions") as batch_op:
        batch_op.drop_column("trace_context")
