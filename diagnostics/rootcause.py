"""Root-cause links: which alert types are consequences of which, on the same asset.

One failing part often makes a car report several problems. A weak 12 V battery sags when the
car wakes or cranks, modules brown out and drop off the CAN bus (``U01xx`` "lost
communication with ..." trouble codes) and the engine/vehicle controller logs ``P0562``
"system voltage low"; a battery flat enough stops the telematics unit, and the car goes
silent. Care staff should see one problem (the battery), not three.

So when an alert *opens* while an alert of a cause type is open on the same asset, the new
alert carries ``root_cause_id``, the id of the root of that chain (the cause's own
``root_cause_id`` if it has one, else the cause's id). ``storage.case_intake`` then files it in the
cause's case without announcing it as a new problem (see the README's "Alarm hygiene").

Rules of the table (``LINKS``):

* A link is decided once, when the consequence opens; a reopened alert keeps its link. A cause
  that opens *after* its consequence does not link it retroactively: the consequence was
  already shown to staff as a problem of its own.
* Same asset only. Links across assets (a vehicle's charging-inlet fault behind a charger's
  failed sessions) need the pipelines to share state and are not made here.
* Only links with a physical mechanism belong here; ``evidence_codes`` narrows a link to the
  trouble codes that mechanism produces (a catalyst code is no consequence of a weak battery).
* Types nobody raises yet are harmless: a link only fires when both alerts exist. To add one,
  append a ``Link`` (and a test in ``tests/diagnostics/test_rootcause.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Link:
    """An open ``cause`` alert explains a newly opened ``effect`` alert of the same asset."""

    effect: str
    cause: str
    why: str
    # Trouble-code prefixes: the effect's ``evidence.active_codes`` must hold one of them.
    evidence_codes: tuple[str, ...] = ()

    def applies(self, evidence: Mapping[str, Any]) -> bool:
        if not self.evidence_codes:
            return True
        codes = evidence.get("active_codes")
        if not isinstance(codes, list):
            return False
        return any(isinstance(c, Mapping) and isinstance(c.get("code"), str)
                   and c["code"].startswith(self.evidence_codes) for c in codes)


LINKS: tuple[Link, ...] = (
    Link("dtc", "weak_12v_battery",
         "modules brown out on a sagging 12 V supply: lost-communication (U01xx) and "
         "system-voltage-low (P0562) codes",
         evidence_codes=("U01", "P0562")),
    Link("vehicle_silent", "weak_12v_battery",
         "a 12 V battery too weak to keep the telematics unit alive silences the car"),
    Link("weak_12v_battery", "charging_system",
         "a failing alternator leaves the battery less charged after every drive, so its "
         "resting voltage falls although the battery itself is sound"),
    Link("dtc", "cell_imbalance",
         "the battery management system's own cell-block deviation codes (P0A7F, P0A80) "
         "report the imbalance the detector already raised",
         evidence_codes=("P0A7F", "P0A80")),
)


def root_cause_id(alert_type: str, evidence: Mapping[str, Any],
                  open_alerts: Mapping[str, tuple[str, str | None]],
                  links: tuple[Link, ...] = LINKS) -> str | None:
    """The root-cause alert id for an ``alert_type`` alert opening now, or None.

    ``open_alerts`` maps each alert type open on the asset to (its id, its root_cause_id).
    With several open causes, the first link in the table wins: the order is the priority.
    """
    for link in links:
        if link.effect != alert_type or link.cause == alert_type:
            continue
        cause = open_alerts.get(link.cause)
        if cause is not None and link.applies(evidence):
            cause_id, cause_root = cause
            return cause_root or cause_id
    return None


def open_alerts_of(alert_states: Mapping[str, Mapping[str, Any]]
                   ) -> dict[str, tuple[str, str | None]]:
    """(id, root_cause_id) of every open alert, by type, from an asset's alert states."""
    return {alert_type: (s["open"], s.get("root_cause"))
            for alert_type, s in alert_states.items() if s.get("open") is not None}
