"""Remote support commands and their audit trail; owner surveys and follow-up tasks.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_IN_FLIGHT = "state IN ('requested', 'sent', 'acknowledged')"


def upgrade() -> None:
    op.create_table(
        "remote_commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vin", sa.String(17), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("alert_id", sa.String(36), sa.ForeignKey("alerts.id"), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_key_id", sa.String(16), nullable=True),
        sa.Column("requested_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("issued_event_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_event_ms", sa.BigInteger, nullable=False),
        sa.Column("sent_wall_ms", sa.BigInteger, nullable=True),
        sa.Column("updated_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("result_event_ms", sa.BigInteger, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
    )
    op.create_index("ix_remote_commands_vin", "remote_commands", ["vin", "requested_wall_ms"])
    op.create_index("ix_remote_commands_key", "remote_commands",
                    ["requested_key_id", "requested_wall_ms"])
    op.create_index("ix_remote_commands_state", "remote_commands", ["state"])
    op.create_index("ix_remote_commands_case", "remote_commands", ["case_id"])
    op.create_index("ux_remote_commands_in_flight", "remote_commands", ["vin", "kind"],
                    unique=True, sqlite_where=sa.text(_IN_FLIGHT),
                    postgresql_where=sa.text(_IN_FLIGHT))
    op.create_table(
        "remote_command_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("command_id", sa.String(36), sa.ForeignKey("remote_commands.id"),
                  nullable=False),
        sa.Column("at_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("at_event_ms", sa.BigInteger, nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_remote_command_events_command_id", "remote_command_events",
                    ["command_id"])
    op.create_table(
        "survey_secrets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_wall_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "surveys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False,
                  unique=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("issued_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("answered_wall_ms", sa.BigInteger, nullable=True),
        sa.Column("score", sa.Integer, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_table(
        "follow_up_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("survey_id", sa.String(36), sa.ForeignKey("surveys.id"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("for_role", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_wall_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_wall_ms", sa.BigInteger, nullable=True),
        sa.Column("closed_by", sa.String(128), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_follow_up_tasks_case_id", "follow_up_tasks", ["case_id"])
    op.create_index("ix_follow_up_tasks_state", "follow_up_tasks", ["state", "id"])


def downgrade() -> None:
    op.drop_table("follow_up_tasks")
    op.drop_table("surveys")
    op.drop_table("survey_secrets")
    op.drop_table("remote_command_events")
    op.drop_table("remote_commands")
