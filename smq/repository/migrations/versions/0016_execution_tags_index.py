"""a GIN index on executions' tags (PostgreSQL): `tag.KEY=VALUE` filters stop scanning every execution

Revision ID: 0016
Revises: 0015

Building it reads the whole table once and holds off writes to it meanwhile (about a second per
million executions on a small server); nothing to do on SQLite, which has no such index.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_smq_executions_tags",
            "smq_executions",
            ["tags"],
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_smq_executions_tags", table_name="smq_executions")
