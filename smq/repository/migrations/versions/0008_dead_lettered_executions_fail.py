"""executions held for the dead letters end FAILED with error smq.DeadLettered

Before this, an execution whose task went to the dead letters stayed RUNNING with a lease until the
year 9999 ("held for the operator"), invisible as a failure and held even after its dead letter was
purged. Now it is FAILED with error `smq.DeadLettered` (the dead letter's reason as cause), its cursor
left at the last checkpoint so `smq dead retry` or `smq redrive` goes on from there. This moves the
executions held the old way.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE smq_executions SET status = 'FAILED', error = 'smq.DeadLettered', "
            "cause = 'held for the dead letters before smq recorded them as failures', "
            "stop_time = updated_at, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE status = 'RUNNING' AND lease_owner LIKE 'dead-letter:%'"
        )
    )


def downgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE smq_executions SET status = 'RUNNING', error = NULL, cause = NULL, stop_time = NULL, "
            "duration_ms = NULL, lease_owner = 'dead-letter:migrated', lease_expires_at = '9999-01-01 00:00:00+00' "
            "WHERE status = 'FAILED' AND error = 'smq.DeadLettered'"
        )
    )
