"""Care cases: cases, their alerts, their audit trail, and per-alert outcome labels.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CASE_OPEN = "state NOT IN ('resolved', 'false_positive', 'no_action_needed')"


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asset_kind", sa.String(16), nullable=False),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("closed_at", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_cases_asset", "cases", ["asset_kind", "asset_id"])
    op.create_index("ix_cases_due", "cases", ["due_at", "id"])
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_index("ux_cases_one_open", "cases", ["asset_kind", "asset_id"], unique=True,
                    sqlite_where=sa.text(_CASE_OPEN), postgresql_where=sa.text(_CASE_OPEN))
    op.create_table(
        "case_alerts",
        sa.Column("alert_id", sa.String(36), sa.ForeignKey("alerts.id"), primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    )
    op.create_index("ix_case_alerts_case_id", "case_alerts", ["case_id"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_case_events_case_id", "case_events", ["case_id"])
    op.create_table(
        "alert_outcomes",
        sa.Column("alert_id", sa.String(36), sa.ForeignKey("alerts.id"), primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("alert_type", sa.String(64), nullable=False),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("detector_version", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("labelled_at", sa.BigInteger, nullable=False),
        sa.Column("labelled_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_alert_outcomes_detector", "alert_outcomes",
                    ["alert_type", "detector", "detector_version"])


def downgrade() -> None:
    op.drop_table("alert_outcomes")
    op.drop_table("case_events")
    op.drop_table("case_alerts")
    op.drop_index("ux_cases_one_open", table_name="cases")
    op.drop_table("cases")
