"""Baseline: alerts, their change log, assets and latest signal values.

The schema before migrations existed; a database created by that version is stamped at this
revision instead of running it (see ``storage.store.Store._migrate``).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("asset_kind", sa.String(16), nullable=False),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("predicted_failure_ts", sa.BigInteger, nullable=True),
        sa.Column("recommended_action", sa.Text, nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("detector_version", sa.String(32), nullable=False),
    )
    op.create_index("ix_alerts_asset", "alerts", ["asset_kind", "asset_id"])
    op.create_index("ix_alerts_order", "alerts", ["last_seen", "id"])
    op.create_index("ux_alerts_one_open", "alerts", ["asset_kind", "asset_id", "type"],
                    unique=True, sqlite_where=sa.text("status = 'open'"),
                    postgresql_where=sa.text("status = 'open'"))
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
    )
    op.create_index("ix_alert_events_alert_id", "alert_events", ["alert_id"])
    op.create_table(
        "assets",
        sa.Column("asset_kind", sa.String(16), primary_key=True),
        sa.Column("asset_id", sa.String(64), primary_key=True),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_assets_last_seen", "assets", ["last_seen"])
    op.create_table(
        "latest_signals",
        sa.Column("asset_kind", sa.String(16), primary_key=True),
        sa.Column("asset_id", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(160), primary_key=True),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("latest_signals", "assets", "alert_events", "alerts"):
        op.drop_table(table)
