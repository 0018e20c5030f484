"""Daily health indicators and charging sessions (vehicle, charger and fleet views).

Revision ID: 0004
Revises: 0003

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_indicators",
        sa.Column("asset_kind", sa.String(16), primary_key=True),
        sa.Column("asset_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("indicator", sa.String(64), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("min", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
        sa.Column("sum", sa.Float, nullable=False),
        sa.Column("last", sa.Float, nullable=False),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "charging_sessions",
        sa.Column("session_id", sa.String(100), primary_key=True),
        sa.Column("charger_id", sa.String(64), nullable=False),
        sa.Column("connector", sa.Integer, nullable=False),
        sa.Column("transaction_id", sa.BigInteger, nullable=True),
        sa.Column("vin", sa.String(17), nullable=True),
        sa.Column("start_ts", sa.BigInteger, nullable=False),
        sa.Column("end_ts", sa.BigInteger, nullable=True),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("end_status", sa.String(20), nullable=True),
        sa.Column("error_code", sa.String(30), nullable=True),
        sa.Column("abnormal", sa.Boolean, nullable=False),
        sa.Column("meter_start_wh", sa.Float, nullable=True),
        sa.Column("energy_wh", sa.Float, nullable=True),
        sa.Column("max_power_w", sa.Float, nullable=True),
        sa.Column("offered_w", sa.Float, nullable=True),
    )
    op.create_index("ix_charging_sessions_connector", "charging_sessions",
                    ["charger_id", "connector", "start_ts"])
    op.create_index("ix_charging_sessions_vin", "charging_sessions", ["vin", "start_ts"])


def downgrade() -> None:
    op.drop_index("ix_charging_sessions_vin", table_name="charging_sessions")
    op.drop_index("ix_charging_sessions_connector", table_name="charging_sessions")
    op.drop_table("charging_sessions")
    op.drop_table("daily_indicators")
