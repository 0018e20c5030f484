"""Per-charger diagnostics over canonical charger records (no I/O, event time only).

The charger counterpart of ``diagnostics.pipeline.VehiclePipeline``: one small JSON state per
charger id (the worker keeps it in its own changelogged table, with the same source positions
and catch-up as the vehicles' table, see ``diagnostics/pipeline.py``). For each record it

* drops redeliveries (``seq`` / ``ts`` as for vehicles),
* runs the charger detectors of ``diagnostics.registry`` that do not sweep (the sweeping one,
  silence, runs in ``diagnostics.charger_silence.ChargerSilencePipeline``): meter values go to
  ``update`` (the record's ``data``: ``connectorId``, ``transactionId``, ``measurands``),
  status notifications to ``on_event`` (``connectorId``, ``status``, ``errorCode``), and their
  assessments through alarm hygiene (``alerting.apply`` with ``asset_kind="charger"``);
* rebuilds the charging sessions (``diagnostics.charging.track``, the latest session of each
  connector kept in the state) and returns every session that finished as an *outcome* for the
  fleet attributor (``diagnostics.attribution``), which needs all chargers and cars at once to
  tell a charger fault from a car's inlet fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from diagnostics import alerting, charging, registry
from diagnostics.base import Detector
from diagnostics.pipeline import states_in, table_writes

ChargerState = dict[str, Any]


def new_charger_state(detectors: Mapping[str, Detector]) -> ChargerState:
    return {
        "seq": -1,
        "ts": 0,
        "det": {alert_type: d.new_state() for alert_type, d in detectors.items()},
        "alerts": {alert_type: alerting.new_alert_state() for alert_type in detectors},
        "sessions": {},  # connector -> the latest session's row (charging.Session)
    }


def outcome_of(session: charging.Session) -> dict[str, Any]:
    """What the attributor needs of a finished session."""
    return {"session_id": session.session_id, "charger_id": session.charger_id,
            "vin": session.vin, "abnormal": session.abnormal,
            "end_status": session.end_status, "error_code": session.error_code,
            "start_ts": session.start_ts, "startup_ms": session.startup_ms,
            "ts": session.end_ts}


class ChargerPipeline:
    """Runs the charger detectors and the session tracker, one state per charger id."""

    def __init__(self, detectors: Mapping[str, Detector] | None = None) -> None:
        self.detectors: dict[str, Detector] = (
            dict(detectors) if detectors is not None
            else registry.build("charger", sweeps=False))
        self.duplicates = 0

    def process(
        self, records: Iterable[Mapping[str, Any]], states: MutableMapping[str, ChargerState]
    ) -> tuple[list[dict[str, Any]], set[str], list[dict[str, Any]]]:
        """Return (alert upserts, charger ids whose state changed, finished session outcomes)."""
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        outcomes: list[dict[str, Any]] = []
        for record in records:
            kind = record["kind"]
            if kind not in ("charger_status", "charger_meter"):
                continue
            charger = record["id"]
            state = states.get(charger)
            if state is None:
                state = states[charger] = new_charger_state(self.detectors)
                changed.add(charger)
            ts, seq = int(record["ts"]), int(record["seq"])
            if seq <= state["seq"] and ts <= state["ts"]:
                self.duplicates += 1
                continue
            state["seq"], state["ts"] = seq, max(ts, state["ts"])
            changed.add(charger)  # seq/ts moved
            outcomes += self._track(state, record)
            data = record["data"]
            for alert_type, detector in self.detectors.items():
                det_state = state["det"].setdefault(alert_type, detector.new_state())
                if kind == "charger_meter":
                    _, assessment = detector.update(det_state, ts, data)
                else:
                    _, assessment = detector.on_event(det_state, ts, data)
                alert_state = state["alerts"].setdefault(alert_type, alerting.new_alert_state())
                if assessment is None:
                    # A pending opening or clearance (e.g. a flapping alert's recovery) falls
                    # due with time: any later record of the charger, a heartbeat too.
                    alert = self._due(alert_state, charger, alert_type, detector, ts)
                else:
                    alert = alerting.apply(
                        alert_state, asset_kind="charger", asset_id=charger,
                        alert_type=alert_type, detector=detector.name,
                        detector_version=detector.version, assessment=assessment, ts_ms=ts,
                        policy=detector.alarm_policy)
                if alert is not None:
                    alerts.append(alert)
        return alerts, changed, outcomes

    def due(self, states: Mapping[str, ChargerState], ts_ms: int) -> list[dict[str, Any]]:
        """Alerts whose pending opening or clearance is due at event time ``ts_ms`` (the end
        of a recorded stream: no later record of the charger will bring them)."""
        alerts = []
        for charger, state in states.items():
            if charger.startswith("#"):  # the table's positions
                continue
            for alert_type, detector in self.detectors.items():
                alert_state = state["alerts"].get(alert_type)
                alert = (self._due(alert_state, charger, alert_type, detector, ts_ms)
                         if alert_state is not None else None)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    @staticmethod
    def _due(alert_state: dict[str, Any], charger: str, alert_type: str, detector: Detector,
             ts_ms: int) -> dict[str, Any] | None:
        if alert_state.get("pending") is None:
            return None
        return alerting.due(alert_state, asset_kind="charger", asset_id=charger,
                            alert_type=alert_type, detector=detector.name,
                            detector_version=detector.version, ts_ms=ts_ms,
                            policy=detector.alarm_policy)

    @staticmethod
    def _track(state: ChargerState, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        latest: dict[charging.ConnectorKey, charging.Session] = {
            (record["id"], int(c)): charging.Session(**row)
            for c, row in state["sessions"].items()}
        touched = charging.track(latest, [record])
        state["sessions"] = {str(c): s.row() for (_, c), s in latest.items()}
        return [outcome_of(s) for s in touched if not s.is_open]

    def process_source(
        self,
        states: Mapping[str, Any],
        partition: int,
        offset: int,
        records: Iterable[Mapping[str, Any]],
    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """As ``VehiclePipeline.process_source``, plus the finished session outcomes (to be
        sent to the attributor before the writes, like the alerts)."""
        batch = list(records)
        local = states_in(states, batch)
        alerts, changed, outcomes = self.process(batch, local)
        return alerts, table_writes(states, local, changed, partition, offset), outcomes
