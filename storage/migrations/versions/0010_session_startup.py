"""Charging sessions: the start-up time (plug-in to energy flowing).

A session that takes long to start on several chargers that start other cars quickly points at
the car's inlet (``diagnostics.attribution``); care staff see it on the session list.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charging_sessions") as batch:
        batch.add_column(sa.Column("startup_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charging_sessions") as batch:
        batch.drop_column("startup_ms")
