"""OTA safety records: rollback approvals and the refusals cars report.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ota_rollback_approvals",
        sa.Column("release_id", sa.String(36),
                  sa.ForeignKey("ota_releases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_key_id", sa.String(16), nullable=True),
        sa.Column("requested_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("approved_key_id", sa.String(16), nullable=True),
        sa.Column("approved_wall_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "ota_refusals",
        sa.Column("vin", sa.String(17), primary_key=True),
        sa.Column("ts_event_ms", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("campaign_id", sa.String(64), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("claimed_campaign_id", sa.String(64), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
    )
    op.create_index("ix_ota_refusals_campaign", "ota_refusals", ["campaign_id", "vin"])
    op.create_index("ix_ota_refusals_claimed", "ota_refusals", ["claimed_campaign_id", "vin"])


def downgrade() -> None:
    op.drop_index("ix_ota_refusals_claimed", table_name="ota_refusals")
    op.drop_index("ix_ota_refusals_campaign", table_name="ota_refusals")
    op.drop_table("ota_refusals")
    op.drop_table("ota_rollback_approvals")
