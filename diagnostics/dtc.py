"""Diagnostic trouble codes (``vehicles/{vin}/events`` with ``type: dtc``) as one alert per car.

A DTC is the vehicle's own diagnosis, so it needs no trend: an active code raises the
``dtc`` alert at once, with a severity from its SAE J2012 system and group; further codes join
the same alert (evidence lists every active code, severity is the worst of them); a
``cleared`` report removes a code, and the alert resolves when no code is active.

Default severities (``severity_by_prefix``, longest matching prefix wins):

* ``P0A``: hybrid / EV propulsion system (traction battery, inverter, HV isolation): critical.
* ``C``: chassis (brakes, steering, stability control): critical, safety-relevant.
* ``P``: other powertrain codes: warning.
* ``U``: network and communication: warning.
* ``B``: body (lights, doors, comfort): info.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from diagnostics.base import Assessment, Detector, Outcome
from vocab.severity import SEVERITIES

DEFAULT_SEVERITY_BY_PREFIX: dict[str, str] = {
    "P0A": "critical",
    "C": "critical",
    "P": "warning",
    "U": "warning",
    "B": "info",
}
MAX_ACTIVE_CODES = 50  # bounds the state; a car reporting more has bigger problems

ACTIONS = {
    "critical": "Call the owner today: the car reports a fault in a safety-relevant or "
                "high-voltage system. Advise them to stop driving if a warning light is on "
                "and book an urgent service appointment or roadside assistance.",
    "warning": "Contact the owner: the car reports a fault that needs a workshop visit soon. "
               "Offer a service appointment in the coming days.",
    "info": "No call needed now: the car reports a minor body or comfort fault. Mention it at "
            "the next contact or service.",
}


class DiagnosticTroubleCodes(Detector):
    name: ClassVar[str] = "dtc"
    version: ClassVar[str] = "1.0.0"

    def __init__(self, severity_by_prefix: Mapping[str, str] | None = None) -> None:
        table = dict(DEFAULT_SEVERITY_BY_PREFIX if severity_by_prefix is None
                     else severity_by_prefix)
        bad = {k: v for k, v in table.items() if v not in SEVERITIES}
        if bad:
            raise ValueError(f"unknown severities {bad}; use {SEVERITIES}")
        self.severity_by_prefix = table

    def new_state(self) -> dict[str, Any]:
        return {"active": {}}  # code -> first seen (event ms)

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]) -> Outcome:
        return False, None  # codes arrive as events, not telemetry

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        if event.get("type") != "dtc" or not isinstance(event.get("code"), str):
            return False, None
        code, active = event["code"], state["active"]
        if event.get("state", "active") == "cleared":
            if code not in active:
                return False, None
            del active[code]
        elif code not in active:
            if len(active) >= MAX_ACTIVE_CODES:
                return False, None
            active[code] = ts_ms
        else:
            return False, None  # repeated report of a code we already know
        return True, self._assess(active)

    def severity(self, code: str) -> str:
        matches = [p for p in self.severity_by_prefix if code.startswith(p)]
        return self.severity_by_prefix[max(matches, key=len)] if matches else "warning"

    def _assess(self, active: dict[str, int]) -> Assessment:
        if not active:
            return Assessment(active=False, title="no active trouble codes",
                              evidence={"active_codes": []})
        order: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
        codes = sorted(active, key=lambda c: (-order[self.severity(c)], c))
        worst = self.severity(codes[0])
        evidence = {"active_codes": [{"code": c, "severity": self.severity(c),
                                      "first_seen": active[c]} for c in codes]}
        title = (f"Trouble code {codes[0]}" if len(codes) == 1
                 else f"{len(codes)} trouble codes, worst {codes[0]}")
        return Assessment(active=True, severity=worst, title=title, evidence=evidence,
                          recommended_action=ACTIONS[worst])
