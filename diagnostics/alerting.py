"""Alarm hygiene: turns a detector's assessments about one (asset, alert type) into alert upserts.

Care staff must see one alert per problem, not one per message, and never the same problem
twice. So, per (asset, alert type):

* The first active assessment opens an alert; its id is uuid5 of (asset kind, asset id, type,
  first_seen), all event-time values, so a replay or a restarted worker produces the same ids
  and the store's upsert by id makes redelivery harmless.
* While the alert is open, further active assessments update the *same* alert: severity may
  escalate and de-escalate, evidence and ``last_seen`` refresh. An update is emitted only when
  the severity or the evidence changed, so an unchanged condition produces no traffic.
* An inactive assessment while open resolves the alert (same id, ``status: "resolved"``; the
  severity it reached is kept so the history reads "critical, resolved"). A later active
  assessment opens a *new* alert with its own first_seen and id.
* Abstaining assessments (``abstain_reason`` set) change nothing: "I cannot tell" is neither a
  recurrence nor a recovery.
* An assessment older than the last emitted ``last_seen`` is a replay of data already acted
  on and emits nothing.

The per-(asset, type) state is a small JSON dict owned by the caller (see ``new_alert_state``).
Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from diagnostics.base import Assessment

ALERT_NAMESPACE = uuid.UUID("6f1c1c2e-8d53-4b0e-9a43-0c0a9e4a7d11")

ALERT_KEYS = ("id", "asset_kind", "asset_id", "type", "severity", "status", "first_seen",
              "last_seen", "title", "evidence", "predicted_failure_ts", "recommended_action",
              "detector", "detector_version")


def alert_id(asset_kind: str, asset_id: str, alert_type: str, first_seen_ms: int) -> str:
    """The deterministic id of the alert of this (asset, type) first seen at ``first_seen_ms``."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{asset_kind}/{asset_id}/{alert_type}/{first_seen_ms}"))


def new_alert_state() -> dict[str, Any]:
    return {
        "open": None,  # id of the open alert, None when none is open
        "first_seen": None,  # first_seen of the open alert
        "severity": None,  # severity last emitted (kept after resolution)
        "last_seen": None,  # last_seen last emitted: anything older is a replay
        "digest": None,  # fingerprint of the severity and evidence last emitted
        "last_first_seen": None,  # first_seen of the most recent alert, open or resolved
    }


def _digest(severity: str, evidence: dict[str, Any]) -> str:
    # Sorted keys and compact separators make the fingerprint independent of dict order;
    # default=str keeps a detector bug (a non-JSON value) from crashing the worker here.
    text = json.dumps([severity, evidence], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


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
    """Update ``state`` with ``assessment``; return the alert upsert, or None if nothing changed.

    The upsert has exactly the keys of ``ALERT_KEYS``; ``first_seen`` and ``last_seen`` are
    event-time epoch ms.
    """
    if assessment.abstain_reason is not None:
        return None
    last_seen = state.get("last_seen")
    if last_seen is not None and ts_ms < last_seen:
        return None  # older than what we already reported: a replay
    open_id = state.get("open")
    if open_id is None:
        if not assessment.active:
            return None  # nothing open, nothing to resolve
        if ts_ms == state.get("last_first_seen"):
            # The previous alert was opened (and resolved) in this very millisecond; a new one
            # now would get the same id. The next assessment will open it.
            return None
        open_id = alert_id(asset_kind, asset_id, alert_type, ts_ms)
        state["open"], state["first_seen"], state["last_first_seen"] = open_id, ts_ms, ts_ms
        state["digest"] = None
    if assessment.active:
        status, severity = "open", assessment.severity
        digest = _digest(severity, assessment.evidence)
        if digest == state.get("digest"):
            return None  # same severity, same evidence: nothing new for care staff
    else:
        # Resolution keeps the severity the alert reached; the evidence says why it cleared.
        status, severity = "resolved", state.get("severity") or assessment.severity
        digest = None
    alert = {
        "id": open_id,
        "asset_kind": asset_kind,
        "asset_id": asset_id,
        "type": alert_type,
        "severity": severity,
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
    state["severity"], state["last_seen"], state["digest"] = severity, ts_ms, digest
    if status == "resolved":
        state["open"], state["first_seen"] = None, None
    return alert
