"""Alarm hygiene: turns a detector's assessments about one (asset, alert type) into alert upserts.

One open alert per (asset, type): while the condition persists the same alert is updated
(severity escalates and de-escalates, evidence and last_seen refresh); when the detector says
the condition is gone the alert is resolved; a later recurrence opens a new alert. Alert ids
are uuid5 of (asset, type, first_seen), all event-time values, so a replay or a restarted
worker produces the same ids and the store's upsert makes redelivery harmless.
"""

from __future__ import annotations

import uuid
from typing import Any

from diagnostics.base import Assessment

ALERT_NAMESPACE = uuid.UUID("6f1c1c2e-8d53-4b0e-9a43-0c0a9e4a7d11")


def alert_id(asset_kind: str, asset_id: str, alert_type: str, first_seen_ms: int) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{asset_kind}/{asset_id}/{alert_type}/{first_seen_ms}"))


def new_alert_state() -> dict[str, Any]:
    return {"open": None, "first_seen": None, "severity": None, "last_seen": None}


def apply(
    state: dict[str, Any],
    *,
    asset_kind: str,
    asset_id: str,
    alert_type: str,
    detector: str,
    detector_version: str,
    assessment: Assessment,
    ts_ms: int,
) -> dict[str, Any] | None:
    """Update ``state`` with ``assessment``; return the alert upsert, or None if nothing changed."""
    if assessment.abstain_reason is not None:
        return None
    if state["last_seen"] is not None and ts_ms < state["last_seen"]:
        return None  # older than what we already reported: a replay
    is_open = state["open"] is not None
    if not assessment.active and not is_open:
        return None
    if assessment.active and not is_open and ts_ms == state["last_seen"]:
        return None  # reopening in the instant it was resolved would reuse the resolved id
    if assessment.active and not is_open:
        state["open"] = alert_id(asset_kind, asset_id, alert_type, ts_ms)
        state["first_seen"] = ts_ms
    status = "open" if assessment.active else "resolved"
    alert = {
        "id": state["open"],
        "asset_kind": asset_kind,
        "asset_id": asset_id,
        "type": alert_type,
        "severity": assessment.severity,
        "status": status,
        "first_seen": state["first_seen"],
        "last_seen": ts_ms,
        "title": assessment.title,
        "evidence": assessment.evidence,
        "predicted_failure_ts": assessment.predicted_failure_ts,
        "recommended_action": assessment.recommended_action,
        "detector": detector,
        "detector_version": detector_version,
    }
    state["severity"] = assessment.severity
    state["last_seen"] = ts_ms
    if status == "resolved":
        state["open"] = None
        state["first_seen"] = None
    return alert
