"""Root-cause links: ``alerts.root_cause_id`` (the alert this one is a consequence of).

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
    # Nullable, no default: existing alerts have no known cause, and adding such a column is
    # a metadata-only change on both databases (no table rewrite under the alert writers).
    op.add_column("alerts", sa.Column("root_cause_id", sa.String(36), nullable=True))
    op.create_index("ix_alerts_root_cause", "alerts", ["root_cause_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_root_cause", table_name="alerts")
    # SQLite >= 3.35 drops an unindexed column in place (no batch copy of the table, which
    # would have to recreate the partial unique index by hand).
    op.drop_column("alerts", "root_cause_id")
