"""history rows no longer reference their execution by a foreign key

Every history row is written by the same statement that moves its execution (the insert that creates
it, or the checkpoint guarded by the execution's history length), so the key enforced nothing smq can
break, while costing a referential-integrity check and a lock on the execution row for every row
written: about a tenth of PostgreSQL's time per execution of a short machine. Nothing in smq deletes
executions; an operator who deletes some by SQL deletes their history (`DELETE FROM smq_history WHERE
execution_id = ...`) in the same transaction.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_smq_history_execution_id_smq_executions"


def upgrade() -> None:
    with op.batch_alter_table("smq_history") as batch_op:
        batch_op.drop_constraint(FOREIGN_KEY, type_="foreignkey")


def downgrade() -> None:
    # Fails if history rows of deleted executions remain: delete those first.
    with op.batch_alter_table("smq_history") as batch_op:
        batch_op.create_foreign_key(
            FOREIGN_KEY, "smq_executions", ["execution_id"], ["id"], ondelete="CASCADE"
        )
