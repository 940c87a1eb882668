"""the enqueue ledger keeps each payload until its execution starts

A claimed name whose message the broker lost (Redis emptied, `celery purge`, a leader or `smq start`
killed between its claim and its publish) can then be published again by the scheduler, without the
operator and without the original input file. Payloads of names that started are cleared by the
scheduler; the partial index finds the few that have not.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# JSONB on PostgreSQL; TEXT on SQLite, as every JSON column of smq (see 0001).
JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("smq_enqueued") as batch_op:
        batch_op.add_column(sa.Column("payload", JSON_TYPE, nullable=True))
    op.create_index(
        "ix_smq_enqueued_unstarted",
        "smq_enqueued",
        ["enqueued_at"],
        postgresql_where=sa.text("payload IS NOT NULL"),
        sqlite_where=sa.text("payload IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_smq_enqueued_unstarted", table_name="smq_enqueued")
    with op.batch_alter_table("smq_enqueued") as batch_op:
        batch_op.drop_column("payload")
