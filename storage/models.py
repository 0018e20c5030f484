"""Relational schema (SQLAlchemy Core), shared by the worker's sinks and the API.

Every time is epoch milliseconds (BigInteger) and its name says its clock: ``*_event_ms`` is
event time, taken from the vehicles' and chargers' messages; ``*_wall_ms`` is the server's
wall clock when it processed something (a staff action, a write, a delivery attempt).
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
    Column("first_seen_event_ms", BigInteger, nullable=False),
    Column("last_seen_event_ms", BigInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("predicted_failure_event_ms", BigInteger, nullable=True),
    Column("recommended_action", Text, nullable=False),
    Column("detector", String(64), nullable=False),
    Column("detector_version", String(32), nullable=False),
    # The open alert of the same asset this one is a consequence of (diagnostics.rootcause).
    Column("root_cause_id", String(36), nullable=True),
    Index("ix_alerts_asset", "asset_kind", "asset_id"),
    Index("ix_alerts_root_cause", "root_cause_id"),  # ?root_cause_id= and a cause's effects
    Index("ix_alerts_order", "last_seen_event_ms", "id"),
    Index("ix_alerts_first_seen", "first_seen_event_ms", "id"),  # ?sort=first_seen_event_ms
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
    Column("at_event_ms", BigInteger, nullable=False),  # the alert's last_seen_event_ms
    Column("snapshot", JSON, nullable=False),
)

assets = Table(
    "assets",
    metadata,
    Column("asset_kind", String(16), primary_key=True),
    Column("asset_id", String(64), primary_key=True),
    Column("first_seen_event_ms", BigInteger, nullable=False),
    Column("last_seen_event_ms", BigInteger, nullable=False),
    # fleet_now_event_ms() is MAX(last_seen_event_ms): an index answers it without a scan.
    Index("ix_assets_last_seen", "last_seen_event_ms"),
)

latest_signals = Table(
    "latest_signals",
    metadata,
    Column("asset_kind", String(16), primary_key=True),
    Column("asset_id", String(64), primary_key=True),
    Column("path", String(160), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("ts_event_ms", BigInteger, nullable=False),
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
    Column("created_wall_ms", BigInteger, nullable=False),
    Column("revoked_wall_ms", BigInteger, nullable=True),
)

# ---------------------------------------------------------------------------------------------
# Health-card trends and charging sessions (behind the vehicle, charger and fleet views).
# Written by the worker (diagnostics/daily.py, diagnostics/charging.py via storage/store.py).

# One mergeable aggregate per (asset, UTC day of the event time, indicator); the worker's
# upsert merges each flush into it (n and sum add up, min/max widen, last follows
# last_event_ms).
daily_indicators = Table(
    "daily_indicators",
    metadata,
    Column("asset_kind", String(16), primary_key=True),
    Column("asset_id", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # ISO YYYY-MM-DD: sorts as it reads
    Column("indicator", String(160), primary_key=True),  # a name, or a VSS path
    Column("n", BigInteger, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    Column("sum", Float, nullable=False),
    Column("last", Float, nullable=False),
    Column("last_event_ms", BigInteger, nullable=False),
)

charging_sessions = Table(
    "charging_sessions",
    metadata,
    Column("session_id", String(100), primary_key=True),  # <charger>:<connector>:<start ts>
    Column("charger_id", String(64), nullable=False),
    Column("connector", Integer, nullable=False),
    Column("transaction_id", BigInteger, nullable=True),
    Column("vin", String(17), nullable=True),
    Column("start_event_ms", BigInteger, nullable=False),
    Column("end_event_ms", BigInteger, nullable=True),
    Column("last_event_ms", BigInteger, nullable=False),  # the last record applied
    Column("last_seq", BigInteger, nullable=False),
    Column("end_status", String(20), nullable=True),
    Column("error_code", String(30), nullable=True),
    Column("abnormal", Boolean, nullable=False),
    Column("meter_start_wh", Float, nullable=True),
    Column("energy_wh", Float, nullable=True),
    Column("max_power_w", Float, nullable=True),
    Column("offered_w", Float, nullable=True),
    Column("startup_ms", BigInteger, nullable=True),  # a duration: Preparing -> Charging
    # The worker loads each connector's newest session; the detail page lists recent ones.
    Index("ix_charging_sessions_connector", "charger_id", "connector", "start_event_ms"),
    # Fault attribution looks up the same car's sessions elsewhere around a date.
    Index("ix_charging_sessions_vin", "vin", "start_event_ms"),
)


# ---------------------------------------------------------------------------- care cases
# Every alert belongs to exactly one case of its asset (``case_alerts``). Staff work a case
# through the workflow in ``care.casework``; ``case_events`` is its audit trail and
# ``alert_outcomes`` the per-alert label (confirmed / false positive) behind GET /quality.
# The detection side's times (opened, due, what an alert did) are event time; when ownercare
# wrote a change (a staff action, or an alert's change filed by the sink) is wall clock.

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
    # first_seen_event_ms of the alert that opened it
    Column("opened_event_ms", BigInteger, nullable=False),
    Column("due_event_ms", BigInteger, nullable=False),  # opened + the SLA of its severity
    Column("closed_wall_ms", BigInteger, nullable=True),
    Column("updated_wall_ms", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),  # +1 per change: optimistic concurrency
    Index("ix_cases_asset", "asset_kind", "asset_id"),
    Index("ix_cases_due", "due_event_ms", "id"),
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
    # An alert's change ("system" entries): the event time of that change.
    Column("at_event_ms", BigInteger, nullable=True),
    # When ownercare wrote the entry; null only on system entries migrated from a schema
    # that kept one time per entry (its event time).
    Column("at_wall_ms", BigInteger, nullable=True),
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
    Column("labelled_wall_ms", BigInteger, nullable=False),
    Column("labelled_by", String(128), nullable=False),
    Index("ix_alert_outcomes_detector", "alert_type", "detector", "detector_version"),
)


# ---------------------------------------------------------------------------- webhooks
# Staff-registered receivers of alert and case events (care.webhooks, storage.outbox).
# Every time here is wall clock: when staff registered it, when a delivery was queued, tried,
# delivered.

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    # "whsec_<base64 key>" (Standard Webhooks). Stored as is (signing needs it), shown to
    # staff only at creation.
    Column("secret", String(128), nullable=False),
    Column("events", JSON, nullable=False),  # filter: event types, "family.*" or "*"
    Column("state", String(16), nullable=False),  # active | paused
    Column("description", Text, nullable=False),
    Column("created_wall_ms", BigInteger, nullable=False),
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
    Column("next_attempt_wall_ms", BigInteger, nullable=False),
    # A dispatcher owns the delivery until then; null = unclaimed.
    Column("lease_until_wall_ms", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_wall_ms", BigInteger, nullable=False),  # the event's body says it too
    Column("delivered_wall_ms", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_wall_ms"),
    Index("ix_webhook_deliveries_list", "webhook_id", "state", "created_wall_ms"),
)


# ---------------------------------------------------------------------------- OTA
# Releases, campaigns and per-vehicle actions (ota/). States are stored by name; campaign
# and action times are event time (the fleet's clock, which the engine runs on); when staff
# created a release, campaign or region is wall clock.

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
    Column("created_wall_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Index("ux_ota_releases_version", "component", "version", unique=True),
)

ota_campaigns = Table(
    "ota_campaigns",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("release_id", String(36), ForeignKey("ota_releases.id"), nullable=False),
    Column("status", String(16), nullable=False),  # ota.model.CampaignStatus; API: state
    # Waves, window, gate policy, soak, retries, targets: the campaign as created (JSON).
    Column("config", JSON, nullable=False),
    Column("current_wave", Integer, nullable=False),
    Column("wave_succeeded_event_ms", BigInteger, nullable=True),
    Column("pause_reason", String(64), nullable=True),
    Column("pause_evidence", JSON, nullable=False),
    Column("events", JSON, nullable=False),  # the campaign's own log (started, paused, ...)
    Column("created_wall_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    # The last change by the engine or an operator, on the fleet's clock; null for a draft
    # nobody started yet.
    Column("updated_event_ms", BigInteger, nullable=True),
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
    Column("next_attempt_event_ms", BigInteger, nullable=False),
    Column("updated_event_ms", BigInteger, nullable=False),
    Column("history", JSON, nullable=False),
    # Why the car was not offered the update at the last engine step (null: not waiting).
    Column("waiting", JSON(none_as_null=True), nullable=True),
    Index("ix_ota_actions_vin", "vin"),
)

# Operator-defined regions for campaign targeting (ota/regions.py): a name and its areas in
# WGS84 (boxes and polygons, validated before they are stored).
ota_regions = Table(
    "ota_regions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("areas", JSON, nullable=False),  # {"boxes": [...], "polygons": [[[lat, lon]...]]}
    Column("created_wall_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
)

# ---------------------------------------------------------------------------- OTA safety
# A rollback release waits for a second key, of role admin, to approve it before any campaign
# may use it (storage/ota.py); the row is the audit: who asked, who approved, when (wall
# clock, at the API). No row for a rollback release means nobody approved it yet.
ota_rollback_approvals = Table(
    "ota_rollback_approvals",
    metadata,
    Column("release_id", String(36), ForeignKey("ota_releases.id", ondelete="CASCADE"),
           primary_key=True),
    Column("requested_by", String(128), nullable=False),
    Column("requested_key_id", String(16), nullable=True),  # null: not through an API key
    Column("requested_wall_ms", BigInteger, nullable=False),
    Column("approved_by", String(128), nullable=True),
    Column("approved_key_id", String(16), nullable=True),
    Column("approved_wall_ms", BigInteger, nullable=True),
)

# Offers the cars refused, per vehicle, with their reason, including refusals that name no
# campaign (a command the car could not authenticate): these change no action, but they are
# what tells an operator that every offer fails a signature check. Keyed by the report's own
# identity, so a redelivered report is stored once.
ota_refusals = Table(
    "ota_refusals",
    metadata,
    Column("vin", String(17), primary_key=True),
    Column("ts_event_ms", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("campaign_id", String(64), nullable=True),  # named by an authentic refusal
    Column("attempt", Integer, nullable=True),
    # What an unauthenticated command claimed to be (the car's detail says); never acted on.
    Column("claimed_campaign_id", String(64), nullable=True),
    Column("version", String(64), nullable=True),
    Index("ix_ota_refusals_campaign", "campaign_id", "vin"),
    Index("ix_ota_refusals_claimed", "claimed_campaign_id", "vin"),
)

# ---------------------------------------------------------------------------- remote support
# Commands staff send to a car (care.commands): snapshot, battery_test, wake, clear_dtc. The
# car's expiry is event time (the fleet's clock when the request was made, plus the TTL);
# when staff asked and when the row changed are wall clock. remote_command_events is each
# command's own audit trail (every step, with or without a case).

_COMMAND_IN_FLIGHT = "state IN ('requested', 'sent', 'acknowledged')"

remote_commands = Table(
    "remote_commands",
    metadata,
    Column("id", String(36), primary_key=True),  # the client's idempotency key, or a uuid4
    Column("vin", String(17), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=True),
    Column("alert_id", String(36), ForeignKey("alerts.id"), nullable=True),
    Column("params", JSON, nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("requested_key_id", String(16), nullable=True),
    Column("requested_wall_ms", BigInteger, nullable=False),
    Column("issued_event_ms", BigInteger, nullable=False),
    Column("expires_event_ms", BigInteger, nullable=False),
    Column("sent_wall_ms", BigInteger, nullable=True),
    Column("updated_wall_ms", BigInteger, nullable=False),
    Column("result_event_ms", BigInteger, nullable=True),  # the car's ts of its last report
    Column("result", JSON, nullable=True),
    Column("reason", String(64), nullable=True),  # why the car refused or failed
    Column("detail", Text, nullable=True),
    Column("verdict", String(16), nullable=True),  # confirmed | false_positive, on alert_id
    Index("ix_remote_commands_vin", "vin", "requested_wall_ms"),
    Index("ix_remote_commands_key", "requested_key_id", "requested_wall_ms"),
    Index("ix_remote_commands_state", "state"),
    Index("ix_remote_commands_case", "case_id"),
    # One command of a kind in flight per car: the database enforces it too.
    Index(
        "ux_remote_commands_in_flight",
        "vin",
        "kind",
        unique=True,
        sqlite_where=text(_COMMAND_IN_FLIGHT),
        postgresql_where=text(_COMMAND_IN_FLIGHT),
    ),
)

remote_command_events = Table(
    "remote_command_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command_id", String(36), ForeignKey("remote_commands.id"), nullable=False,
           index=True),
    Column("at_wall_ms", BigInteger, nullable=False),
    Column("at_event_ms", BigInteger, nullable=True),  # the car's ts, for its reports
    Column("actor", String(128), nullable=False),  # the key's name, "system" or "vehicle"
    Column("state", String(16), nullable=False),  # the state after this step
    Column("detail", JSON, nullable=False),
)

# ---------------------------------------------------------------------------- owner surveys
# One survey per resolved case (care.survey): the link's token is signed with the secret in
# survey_secrets (one row, made on first use); the row makes the link one-time. Times are
# wall clock: surveys go to people. A low score opens a follow-up task for a supervisor.

survey_secrets = Table(
    "survey_secrets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("secret", String(128), nullable=False),  # base64 of 32 random bytes
    Column("created_wall_ms", BigInteger, nullable=False),
)

surveys = Table(
    "surveys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, unique=True),
    Column("agent", String(128), nullable=True),  # the case's assignee, else who resolved it
    Column("issued_wall_ms", BigInteger, nullable=False),
    Column("expires_wall_ms", BigInteger, nullable=False),
    Column("answered_wall_ms", BigInteger, nullable=True),
    Column("score", Integer, nullable=True),
    Column("comment", Text, nullable=True),
)

follow_up_tasks = Table(
    "follow_up_tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("survey_id", String(36), ForeignKey("surveys.id"), nullable=True),
    Column("kind", String(32), nullable=False),  # low_satisfaction
    Column("for_role", String(32), nullable=False),  # supervisor
    Column("state", String(16), nullable=False),  # open | done
    Column("created_wall_ms", BigInteger, nullable=False),
    Column("closed_wall_ms", BigInteger, nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("detail", JSON, nullable=False),
    Index("ix_follow_up_tasks_state", "state", "id"),
)
