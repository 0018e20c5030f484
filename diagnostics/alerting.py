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
  severity it reached is kept so the history reads "critical, resolved").
* Hold-off: a condition that comes back within ``AlarmPolicy.hold_off_ms`` of that resolution
  *reopens the same alert* (same id and first_seen). Later than that, it opens a new alert
  with its own first_seen and id.
* Flapping: an alert opened or reopened ``flap_opens`` times within ``flap_window_ms`` is
  marked ``evidence.flapping`` and, from then on, resolves only after the condition has stayed
  clear for ``flap_recovery_ms`` (the inactive assessment starts a pending clearance; an
  active one cancels it; ``due`` resolves it on the asset's first message after the period).
* Minimum persistence (off unless a detector's policy sets ``min_persistence_ms``): the
  first active assessment starts a pending opening; the alert opens (``first_seen`` = that
  first assessment) once the condition is still active ``min_persistence_ms`` later, on the
  next assessment or message; an inactive assessment in between cancels it.
* Root cause: an alert that opens while an alert it is a consequence of is open on the same
  asset carries that cause's id as ``root_cause_id`` (``diagnostics.rootcause``).
* Abstaining assessments (``abstain_reason`` set) change nothing: "I cannot tell" is neither a
  recurrence nor a recovery.
* An assessment older than the newest one already applied is a replay of data already acted
  on: it emits and changes nothing.

The per-(asset, type) state is a small JSON dict owned by the caller (see ``new_alert_state``);
states written before a key existed read it as its default. Everything here is pure: no
clock, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from diagnostics import rootcause
from diagnostics.base import DEFAULT_ALARM_POLICY, AlarmPolicy, Assessment

ALERT_NAMESPACE = uuid.UUID("6f1c1c2e-8d53-4b0e-9a43-0c0a9e4a7d11")

ALERT_KEYS = ("id", "asset_kind", "asset_id", "type", "severity", "status", "first_seen",
              "last_seen", "title", "evidence", "predicted_failure_ts", "recommended_action",
              "detector", "detector_version", "root_cause_id")

# Policy without hold-off, flapping or persistence: every clear resolves, every return opens
# a new alert (the behaviour before these rules existed; tests use it as the baseline).
NO_HYGIENE = AlarmPolicy(hold_off_ms=0, flap_opens=0, flap_recovery_ms=0, min_persistence_ms=0)


def alert_id(asset_kind: str, asset_id: str, alert_type: str, first_seen_ms: int) -> str:
    """The deterministic id of the alert of this (asset, type) first seen at ``first_seen_ms``."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{asset_kind}/{asset_id}/{alert_type}/{first_seen_ms}"))


def new_alert_state() -> dict[str, Any]:
    return {
        "open": None,  # id of the open alert, None when none is open
        "first_seen": None,  # first_seen of the open alert
        "severity": None,  # severity last emitted (kept after resolution)
        "last_seen": None,  # last_seen last emitted
        "seen": None,  # event time of the newest assessment applied: anything older is a replay
        "digest": None,  # fingerprint of the severity and evidence last emitted
        "last_first_seen": None,  # first_seen of the most recent alert, open or resolved
        "root_cause": None,  # root_cause_id of the open (or last resolved) alert
        "resolved": None,  # [id, first_seen, resolved at] of the last resolved alert (hold-off)
        "opens": [],  # event times of the latest opens and reopens (flapping), bounded
        "flapping": False,
        # A pending opening (nothing open: minimum persistence) or clearance (open and
        # flapping): {"since": event ms, "assessment": the latest one, packed}.
        "pending": None,
    }


def _digest(severity: str, evidence: dict[str, Any]) -> str:
    # Sorted keys and compact separators make the fingerprint independent of dict order;
    # default=str keeps a detector bug (a non-JSON value) from crashing the worker here.
    text = json.dumps([severity, evidence], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _pack(assessment: Assessment) -> dict[str, Any]:
    return {"active": assessment.active, "severity": assessment.severity,
            "title": assessment.title, "evidence": assessment.evidence,
            "predicted_failure_ts": assessment.predicted_failure_ts,
            "recommended_action": assessment.recommended_action}


def _unpack(packed: Mapping[str, Any]) -> Assessment:
    return Assessment(**packed)


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
    policy: AlarmPolicy = DEFAULT_ALARM_POLICY,
    related: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Update ``state`` with ``assessment``; return the alert upsert, or None if nothing changed.

    The upsert has exactly the keys of ``ALERT_KEYS``; ``first_seen`` and ``last_seen`` are
    event-time epoch ms. ``related`` is the asset's alert states by type (this one included),
    for root-cause links; without it no alert is linked.
    """
    if assessment.abstain_reason is not None:
        return None
    seen = _seen(state)
    if seen is not None and ts_ms < seen:
        return None  # older than an assessment we already acted on: a replay
    state["seen"] = ts_ms
    pending = state.get("pending")
    emit = _Emitter(state, asset_kind, asset_id, alert_type, detector, detector_version,
                    policy)
    if state.get("open") is None:
        if not assessment.active:
            state["pending"] = None  # nothing open; a pending opening did not persist
            return None
        return _raise(state, emit, assessment, ts_ms, related)
    if assessment.active:
        state["pending"] = None  # back before a flapping alert's clearance completed
        return emit.update(assessment, ts_ms)
    if state.get("flapping") and policy.flap_recovery_ms > 0:
        if pending is None:
            state["pending"] = pending = {"since": ts_ms, "assessment": None}
        pending["assessment"] = _pack(assessment)
        if ts_ms - pending["since"] < policy.flap_recovery_ms:
            return None
    return emit.resolve(assessment, ts_ms)


def due(
    state: dict[str, Any],
    *,
    asset_kind: str,
    asset_id: str,
    alert_type: str,
    detector: str,
    detector_version: str,
    ts_ms: int,
    policy: AlarmPolicy = DEFAULT_ALARM_POLICY,
    related: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The upsert a pending opening or clearance owes at event time ``ts_ms``, or None.

    Detectors speak only when they have something new, so a condition that simply stays
    active (or clear) sends no assessment: the caller calls this on each message of the asset
    while ``state["pending"]`` is set.
    """
    pending = state.get("pending")
    if pending is None or pending["assessment"] is None:
        return None
    seen = _seen(state)
    if seen is not None and ts_ms < seen:
        return None
    # Not due yet: leave the state untouched (the caller persists it only on a change).
    if state.get("open") is not None:
        wait = policy.flap_recovery_ms
    else:
        resolved = state.get("resolved")
        reopening = (resolved is not None and policy.hold_off_ms > 0
                     and ts_ms - resolved[2] <= policy.hold_off_ms)
        wait = 1 if reopening else policy.min_persistence_ms
    if ts_ms - pending["since"] < wait:
        return None
    return apply(state, asset_kind=asset_kind, asset_id=asset_id, alert_type=alert_type,
                 detector=detector, detector_version=detector_version,
                 assessment=_unpack(pending["assessment"]), ts_ms=ts_ms, policy=policy,
                 related=related)


def _seen(state: Mapping[str, Any]) -> int | None:
    # States from before "seen" existed: the last emitted last_seen is the best we know.
    seen = state.get("seen")
    return state.get("last_seen") if seen is None else int(seen)


def _raise(state: dict[str, Any], emit: _Emitter, assessment: Assessment, ts_ms: int,
           related: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """An active assessment while nothing is open: reopen, wait for persistence, or open."""
    policy = emit.policy
    resolved = state.get("resolved")
    if resolved is not None and policy.hold_off_ms > 0 and \
            ts_ms - resolved[2] <= policy.hold_off_ms:
        if ts_ms == resolved[2]:
            # Resolved in this very millisecond: the store takes an "open" at the resolution's
            # own last_seen for a replay. The next assessment or message reopens it.
            state["pending"] = {"since": ts_ms, "assessment": _pack(assessment)}
            return None
        state["open"], state["first_seen"] = resolved[0], resolved[1]
        state["resolved"], state["pending"], state["digest"] = None, None, None
        _note_open(state, policy, ts_ms)
        return emit.update(assessment, ts_ms)
    first_seen = ts_ms
    if policy.min_persistence_ms > 0:
        pending = state.get("pending")
        if pending is None:
            state["pending"] = pending = {"since": ts_ms, "assessment": None}
        pending["assessment"] = _pack(assessment)
        if ts_ms - pending["since"] < policy.min_persistence_ms:
            return None
        first_seen = pending["since"]
    if first_seen == state.get("last_first_seen"):
        # The previous alert was opened (and resolved) in this very millisecond; a new one
        # now would get the same id. The next assessment will open it.
        return None
    state["open"] = alert_id(emit.asset_kind, emit.asset_id, emit.alert_type, first_seen)
    state["first_seen"] = state["last_first_seen"] = first_seen
    state["resolved"], state["pending"], state["digest"] = None, None, None
    state["root_cause"] = (None if related is None else rootcause.root_cause_id(
        emit.alert_type, assessment.evidence, rootcause.open_alerts_of(related)))
    _note_open(state, policy, ts_ms)
    return emit.update(assessment, ts_ms)


def _note_open(state: dict[str, Any], policy: AlarmPolicy, ts_ms: int) -> None:
    """Count an open or reopen; ``flap_opens`` of them within the window mean flapping."""
    if policy.flap_opens == 0:
        return
    opens = [t for t in state.get("opens") or [] if ts_ms - t < policy.flap_window_ms]
    opens.append(ts_ms)
    state["opens"] = opens[-policy.flap_opens:]  # bounded: older ones can no longer count
    if len(state["opens"]) >= policy.flap_opens:
        state["flapping"] = True


class _Emitter:
    """Builds the upserts of one (asset, type) and records what was emitted in ``state``."""

    def __init__(self, state: dict[str, Any], asset_kind: str, asset_id: str, alert_type: str,
                 detector: str, detector_version: str, policy: AlarmPolicy) -> None:
        self.state, self.policy = state, policy
        self.asset_kind, self.asset_id, self.alert_type = asset_kind, asset_id, alert_type
        self.detector, self.detector_version = detector, detector_version

    def update(self, assessment: Assessment, ts_ms: int) -> dict[str, Any] | None:
        evidence = self._evidence(assessment.evidence, None)
        digest = _digest(assessment.severity, evidence)
        if digest == self.state.get("digest"):
            return None  # same severity, same evidence: nothing new for care staff
        return self._emit("open", assessment.severity, evidence, assessment, ts_ms, digest)

    def resolve(self, assessment: Assessment, ts_ms: int) -> dict[str, Any]:
        state = self.state
        pending = state.get("pending")
        evidence = self._evidence(assessment.evidence,
                                  None if pending is None else pending["since"])
        # Resolution keeps the severity the alert reached; the evidence says why it cleared.
        alert = self._emit("resolved", state.get("severity") or assessment.severity, evidence,
                           assessment, ts_ms, None)
        state["resolved"] = [state["open"], state["first_seen"], ts_ms]
        state["open"], state["first_seen"], state["pending"] = None, None, None
        if state.get("flapping"):
            state["flapping"], state["opens"] = False, []  # recovered: start afresh
        return alert

    def _evidence(self, evidence: dict[str, Any], clear_since: int | None) -> dict[str, Any]:
        if not self.state.get("flapping"):
            return evidence
        policy = self.policy
        flapping: dict[str, Any] = {
            "opens": len(self.state.get("opens") or []), "window_ms": policy.flap_window_ms,
            "recovery_ms": policy.flap_recovery_ms}
        if clear_since is not None:
            flapping["clear_since"] = clear_since
        return {**evidence, "flapping": flapping}

    def _emit(self, status: str, severity: str, evidence: dict[str, Any],
              assessment: Assessment, ts_ms: int, digest: str | None) -> dict[str, Any]:
        state = self.state
        alert = {
            "id": state["open"],
            "asset_kind": self.asset_kind,
            "asset_id": self.asset_id,
            "type": self.alert_type,
            "severity": severity,
            "status": status,
            "first_seen": state["first_seen"],
            "last_seen": ts_ms,
            "title": assessment.title,
            "evidence": evidence,
            "predicted_failure_ts": assessment.predicted_failure_ts,
            "recommended_action": assessment.recommended_action,
            "detector": self.detector,
            "detector_version": self.detector_version,
            "root_cause_id": state.get("root_cause"),
        }
        state["severity"], state["last_seen"], state["digest"] = severity, ts_ms, digest
        return alert
