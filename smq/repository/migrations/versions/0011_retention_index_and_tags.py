"""executions: an index for retention, and the payload's `index` and user `tags` kept

- `ix_smq_executions_status_stop` (status, stop_time, id): `smq executions prune --older-than` and
  the scheduler's automatic prune take the oldest finished executions of a status a batch at a time, as
  a range of it, instead of scanning the table for every batch.
- `ix_smq_chain_links_target` (target_execution_id): deleting an execution deletes the links that
  name it as target (its foreign key cascades there); without this index every deleted execution
  scanned the whole table (20,000 executions took 17 s on PostgreSQL, bench/retention.py).
- `execution_index`: the payload's `index` (the position of an execution in its batch), shown.
- `tags`: user keys and values (the payload's `tags`, and user keys of its `options`), shown and
  filterable (`--filter tag.KEY=VALUE`).

Revision ID: 0011
Revises: 0009 (the lead re-chains it after 0010 at merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None

# JSONB on PostgreSQL; TEXT on SQLite, as every JSON column of smq (see 0001).
JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("smq_executions") as batch_op:
        batch_op.add_column(sa.Column("execution_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("tags", JSON_TYPE, nullable=True))
    op.create_index("ix_smq_executions_status_stop", "smq_executions", ["status", "stop_time", "id"])
    op.create_index("ix_smq_chain_links_target", "smq_chain_links", ["target_execution_id"])


def downgrade() -> None:
    op.drop_index("ix_smq_chain_links_target", table_name="smq_chain_links")
    op.drop_index("ix_smq_executions_status_stop", table_name="smq_executions")
    with op.batch_alter_table("smq_executions") as batch_op:
        batch_op.drop_column("tags")
        batch_op.drop_column("execution_index")
