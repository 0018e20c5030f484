"""Relational schema (SQLAlchemy Core), shared by the worker's sinks and the API.

Times are event-time epoch milliseconds (BigInteger), as in the messages they come from.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(36), primary_key=True),  # deterministic uuid5 from the detector
    Column("asset_kind", String(16), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("predicted_failure_ts", BigInteger, nullable=True),
    Column("recommended_action", Text, nullable=False),
    Column("detector", String(64), nullable=False),
    Column("detector_version", String(32), nullable=False),
    # The open alert of the same asset this one is a consequence of (diagnostics.rootcause).
    Column("root_cause_id", String(36), nullable=True),
    Index("ix_alerts_asset", "asset_kind", "asset_id"),
    Index("ix_alerts_root_cause", "root_cause_id"),  # ?root_cause_id= and a cause's effects
    Index("ix_alerts_order", "last_seen", "id"),
    Index("ix_alerts_first_seen", "first_seen", "id"),  # for ?sort=first_seen
    # One open alert per (asset, type): the database enforces what the detector promises.
    Index(
        "ux_alerts_one_open",
        "asset_kind",
        "asset_id",
        "type",
        unique=True,
        sqlite_where=text("status = 'open'"),
        postgresql_where=text("status = 'open'"),
    ),
)

# Append-only log of alert changes; its id is the SSE event id, so a client resumes exactly.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), nullable=False, index=True),
    Column("change", String(16), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("snapshot", JSON, nullable=False),
)

assets = Table(
    "assets",
    metadata,
    Column("asset_kind", String(16), primary_key=True),
    Column("asset_id", String(64), primary_key=True),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    # fleet_now_ms() is MAX(last_seen): an index answers it without scanning the fleet.
    Index("ix_assets_last_seen", "last_seen"),
)

latest_signals = Table(
    "latest_signals",
    metadata,
    Column("asset_kind", String(16), primary_key=True),
    Column("asset_id", String(64), primary_key=True),
    Column("path", String(160), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("ts", BigInteger, nullable=False),
)

# ---------------------------------------------------------------------------- API keys
# A key is shown once at creation as "oc_<id>_<secret>"; only SHA-256(secret) is kept. The
# secret is 256 random bits, so a fast hash is enough (no password stretching needed).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # wall clock, epoch ms
    Column("revoked_at", BigInteger, nullable=True),
)

# ---------------------------------------------------------------------------------------------
# Health-card trends and charging sessions (behind the vehicle, charger and fleet views).
# Written by the worker (diagnostics/daily.py, diagnostics/charging.py via storage/store.py).

# One mergeable aggregate per (asset, UTC day of the event time, indicator); the worker's
# upsert merges each flush into it (n and sum add up, min/max widen, last follows last_ts).
daily_indicators = Table(
    "daily_indicators",
    metadata,
    Column("asset_kind", String(16), primary_key=True),
    Column("asset_id", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # ISO YYYY-MM-DD: sorts as it reads
    Column("indicator", String(64), primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    Column("sum", Float, nullable=False),
    Column("last", Float, nullable=False),
    Column("last_ts", BigInteger, nullable=False),
)

charging_sessions = Table(
    "charging_sessions",
    metadata,
    Column("session_id", String(100), primary_key=True),  # <charger>:<connector>:<start ts>
    Column("charger_id", String(64), nullable=False),
    Column("connector", Integer, nullable=False),
    Column("transaction_id", BigInteger, nullable=True),
    Column("vin", String(17), nullable=True),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=True),
    Column("last_ts", BigInteger, nullable=False),  # the last record applied (redelivery)
    Column("last_seq", BigInteger, nullable=False),
    Column("end_status", String(20), nullable=True),
    Column("error_code", String(30), nullable=True),
    Column("abnormal", Boolean, nullable=False),
    Column("meter_start_wh", Float, nullable=True),
    Column("energy_wh", Float, nullable=True),
    Column("max_power_w", Float, nullable=True),
    Column("offered_w", Float, nullable=True),
    Column("startup_ms", BigInteger, nullable=True),  # Preparing -> Charging (0010)
    # The worker loads each connector's newest session; the detail page lists recent ones.
    Index("ix_charging_sessions_connector", "charger_id", "connector", "start_ts"),
    # Fault attribution looks up the same car's sessions elsewhere around a date.
    Index("ix_charging_sessions_vin", "vin", "start_ts"),
)


# ---------------------------------------------------------------------------- care cases
# Every alert belongs to exactly one case of its asset (``case_alerts``). Staff work a case
# through the workflow in ``care.casework``; ``case_events`` is its audit trail and
# ``alert_outcomes`` the per-alert label (confirmed / false positive) behind GET /quality.
# Times from the detection side (opened_at, due_at, system audit entries) are event time;
# times of staff actions (closed_at, labelled_at, their audit entries) are wall-clock ms.

_CASE_OPEN = "state NOT IN ('resolved', 'false_positive', 'no_action_needed')"

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset_kind", String(16), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("state", String(24), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("assignee", String(128), nullable=True),
    Column("opened_at", BigInteger, nullable=False),  # first_seen of the alert that opened it
    Column("due_at", BigInteger, nullable=False),  # opened_at + SLA of its severity
    Column("closed_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),  # +1 per change: optimistic concurrency
    Index("ix_cases_asset", "asset_kind", "asset_id"),
    Index("ix_cases_due", "due_at", "id"),
    Index("ix_cases_state", "state"),
    # One open case per asset: a new alert joins it; the database enforces that too.
    Index(
        "ux_cases_one_open",
        "asset_kind",
        "asset_id",
        unique=True,
        sqlite_where=text(_CASE_OPEN),
        postgresql_where=text(_CASE_OPEN),
    ),
)

case_alerts = Table(
    "case_alerts",
    metadata,
    Column("alert_id", String(36), ForeignKey("alerts.id"), primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
)

case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),  # "system" or the API key's name
    # opened | alert_linked | severity_changed | transitioned | assigned | note
    Column("action", String(24), nullable=False),
    Column("from_state", String(24), nullable=True),
    Column("to_state", String(24), nullable=True),
    Column("detail", JSON, nullable=False),
)

alert_outcomes = Table(
    "alert_outcomes",
    metadata,
    Column("alert_id", String(36), ForeignKey("alerts.id"), primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    # The alert's type and detector as they were when it was labelled.
    Column("alert_type", String(64), nullable=False),
    Column("detector", String(64), nullable=False),
    Column("detector_version", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # confirmed | false_positive
    Column("labelled_at", BigInteger, nullable=False),
    Column("labelled_by", String(128), nullable=False),
    Index("ix_alert_outcomes_detector", "alert_type", "detector", "detector_version"),
)


# ---------------------------------------------------------------------------- webhooks
# Staff-registered receivers of alert and case events (care.webhooks, storage.outbox).
# Times here are epoch ms: created_at of a webhook is wall clock (a staff action); a
# delivery's created_at is the time of its event (event time for alert events).

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    # The HMAC key. Stored as is (signing needs it), shown to staff only at creation.
    Column("secret", String(128), nullable=False),
    Column("events", JSON, nullable=False),  # filter: event types, "family.*" or "*"
    Column("state", String(16), nullable=False),  # active | paused
    Column("description", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
)

# The transactional outbox: one row per (event, webhook), written in the transaction that
# makes the change, sent by the dispatcher; state pending -> delivered, or dead after the
# last try (the dead-letter list).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("webhook_id", String(36), ForeignKey("webhooks.id", ondelete="CASCADE"),
           nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),  # wall clock, epoch ms
    # A dispatcher owns the delivery until then (wall clock, epoch ms); null = unclaimed.
    Column("lease_until", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_list", "webhook_id", "state", "created_at"),
)


# ---------------------------------------------------------------------------- OTA
# Releases, campaigns and per-vehicle actions (ota/). Statuses are stored by name; campaign
# and action timestamps are event time (the fleet's clock, which the engine runs on); the
# created_at of a release or campaign is wall clock (a staff action).

ota_releases = Table(
    "ota_releases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("component", String(64), nullable=False),
    Column("artifact_url", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("notes", Text, nullable=False),
    Column("rollback", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Index("ux_ota_releases_version", "component", "version", unique=True),
)

ota_campaigns = Table(
    "ota_campaigns",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("release_id", String(36), ForeignKey("ota_releases.id"), nullable=False),
    Column("status", String(16), nullable=False),
    # Waves, window, gate policy, soak, retries, targets: the campaign as created (JSON).
    Column("config", JSON, nullable=False),
    Column("current_wave", Integer, nullable=False),
    Column("wave_succeeded_at", BigInteger, nullable=True),
    Column("pause_reason", String(64), nullable=True),
    Column("pause_evidence", JSON, nullable=False),
    Column("events", JSON, nullable=False),  # the campaign's own log (started, paused, ...)
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

ota_actions = Table(
    "ota_actions",
    metadata,
    Column("campaign_id", String(36), ForeignKey("ota_campaigns.id", ondelete="CASCADE"),
           primary_key=True),
    Column("vin", String(17), primary_key=True),
    Column("wave", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("history", JSON, nullable=False),
    # Why the car was not offered the update at the last engine step (null: not waiting).
    Column("waiting", JSON(none_as_null=True), nullable=True),
    Index("ix_ota_actions_vin", "vin"),
)

# Operator-defined regions for campaign targeting (ota/regions.py): a name and its areas in
# WGS84 (boxes and polygons, validated before they are stored). created_at is wall clock.
ota_regions = Table(
    "ota_regions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("areas", JSON, nullable=False),  # {"boxes": [...], "polygons": [[[lat, lon]...]]}
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
)
