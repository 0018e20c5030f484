"""Daily trends of every numeric signal: an indicator may be a VSS path.

The vehicle view's daily trends cover every numeric signal a car reports, keyed by its full
VSS path (up to 160 characters, as ``latest_signals.path``), next to the named health
indicators; ``daily_indicators.indicator`` was 64 characters.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("daily_indicators") as batch:
        batch.alter_column("indicator", existing_type=sa.String(64), type_=sa.String(160),
                           existing_nullable=False)


def downgrade() -> None:
    # A path longer than 64 characters would not fit the old column: its trend goes.
    op.execute(sa.text("DELETE FROM daily_indicators WHERE LENGTH(indicator) > 64"))
    with op.batch_alter_table("daily_indicators") as batch:
        batch.alter_column("indicator", existing_type=sa.String(160), type_=sa.String(64),
                           existing_nullable=False)
