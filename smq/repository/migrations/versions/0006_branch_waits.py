"""waits of Parallel/Map branches: the branch each waits for, and a delivery held for a running execution

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("smq_waits") as batch_op:
        batch_op.add_column(sa.Column("branch", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("delivery", JSON_TYPE, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smq_waits") as batch_op:
        batch_op.drop_column("delivery")
        batch_op.drop_column("branch")
