"""OTA releases, campaigns and per-vehicle actions.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ota_releases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("component", sa.String(64), nullable=False),
        sa.Column("artifact_url", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("rollback", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_index("ux_ota_releases_version", "ota_releases", ["component", "version"],
                    unique=True)
    op.create_table(
        "ota_campaigns",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("release_id", sa.String(36), sa.ForeignKey("ota_releases.id"),
                  nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("current_wave", sa.Integer, nullable=False),
        sa.Column("wave_succeeded_at", sa.BigInteger, nullable=True),
        sa.Column("pause_reason", sa.String(64), nullable=True),
        sa.Column("pause_evidence", sa.JSON, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ota_actions",
        sa.Column("campaign_id", sa.String(36),
                  sa.ForeignKey("ota_campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("vin", sa.String(17), primary_key=True),
        sa.Column("wave", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("waiting", sa.JSON, nullable=True),
    )
    op.create_index("ix_ota_actions_vin", "ota_actions", ["vin"])


def downgrade() -> None:
    op.drop_index("ix_ota_actions_vin", table_name="ota_actions")
    op.drop_table("ota_actions")
    op.drop_table("ota_campaigns")
    op.drop_index("ux_ota_releases_version", table_name="ota_releases")
    op.drop_table("ota_releases")
