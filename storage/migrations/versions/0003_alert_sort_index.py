"""An index for listing alerts by first_seen (``GET /alerts?sort=first_seen``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_first_seen", "alerts", ["first_seen", "id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_first_seen", table_name="alerts")
