"""Charging sessions from OCPP status notifications and meter values (pure, event time only).

A session on one charger connector, as chargers report it (``simulators/charger.py`` follows
OCPP 1.6): ``Preparing`` (plugged in) -> ``Charging`` with ``MeterValues`` carrying the
transaction id (and the VIN when the charger knows the car) -> ``Finishing`` -> ``Available``.

Rules (``track``):

* A session starts at the first of ``Preparing`` / ``Charging`` / ``SuspendedEV`` /
  ``SuspendedEVSE`` while the connector has no open session, or at a meter value whose
  transaction id is not the one of the connector's latest session (its start was missed).
  Its id is ``<charger>:<connector>:<start ts>``, so a replay rebuilds the same row.
* It ends at the first ``Finishing``, ``Available``, ``Faulted`` or ``Unavailable``; that
  status is its ``end_status``. A meter value with a different transaction id ends it as
  ``superseded`` (its end was missed).
* It ended **abnormally** when it ended ``Faulted`` / ``Unavailable`` or the charger reported
  an error code other than ``NoError`` during it (the last such code is kept).
* ``energy_wh`` is the rise of ``Energy.Active.Import.Register`` since the session's first
  meter value; ``max_power_w`` / ``offered_w`` the largest ``Power.Active.Import`` /
  ``Power.Offered`` seen (delivered vs offered shows a derating charger).
* ``startup_ms`` is the time from the session's start to its first ``Charging``: how long the
  charger and the car took to start energy flowing (pilot, lock, isolation check). A session
  whose ``Preparing`` went missing starts at ``Charging`` and reads 0 (never falsely slow);
  one that never reached ``Charging`` has none.
* Connector 0 is the charger as a whole in OCPP and never holds a session.

Redelivery: the latest session of each connector remembers the (ts, seq) of the last record
applied to it, and records at or before it are skipped, so replaying a flush changes nothing.
The worker loads those latest sessions from the database before each flush, so nothing is
kept in memory and a restarted or rebalanced worker continues where the table left off.
Chargers without ``seq`` get ``seq = ts`` from the contract: two of their records with the
same timestamp split across flushes would lose the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any, Final

START_STATUSES: Final = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE"})
END_STATUSES: Final = frozenset({"Finishing", "Available", "Faulted", "Unavailable"})
ABNORMAL_END: Final = frozenset({"Faulted", "Unavailable"})
SUPERSEDED: Final = "superseded"
NO_ERROR: Final = "NoError"
ENERGY: Final = "Energy.Active.Import.Register"
POWER: Final = "Power.Active.Import"
OFFERED: Final = "Power.Offered"


@dataclass(slots=True)
class Session:
    """One charging session; field names are the ``charging_sessions`` columns."""

    session_id: str
    charger_id: str
    connector: int
    start_ts: int
    last_ts: int
    last_seq: int
    transaction_id: int | None = None
    vin: str | None = None
    end_ts: int | None = None
    end_status: str | None = None
    error_code: str | None = None
    abnormal: bool = False
    meter_start_wh: float | None = None
    energy_wh: float | None = None
    max_power_w: float | None = None
    offered_w: float | None = None
    startup_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.end_ts is None

    def row(self) -> dict[str, Any]:
        return asdict(self)

    def _close(self, ts: int, status: str) -> None:
        self.end_ts, self.end_status = ts, status
        self.abnormal = status in ABNORMAL_END or self.error_code is not None


ConnectorKey = tuple[str, int]


def session_id(charger_id: str, connector: int, start_ts: int) -> str:
    return f"{charger_id}:{connector}:{start_ts}"


def connector_of(sid: str) -> str:
    """The connector part of a ``session_id`` ("?" for an id not made by it)."""
    parts = sid.rsplit(":", 2)
    return parts[1] if len(parts) == 3 else "?"


def track(latest: MutableMapping[ConnectorKey, Session],
          records: Iterable[Mapping[str, Any]]) -> list[Session]:
    """Apply charger records (in arrival order) to ``latest``, the newest session of each
    (charger, connector), updated in place. Returns the sessions that changed or began, each
    once, in the order they were first touched."""
    changed: dict[str, Session] = {}
    for r in records:
        kind = r["kind"]
        if kind not in ("charger_status", "charger_meter"):
            continue
        data = r["data"]
        connector = int(data["connectorId"])
        if connector == 0:
            continue
        key = (r["id"], connector)
        ts, seq = int(r["ts"]), int(r["seq"])
        session = latest.get(key)
        if session is not None and (ts, seq) <= (session.last_ts, session.last_seq):
            continue  # applied already (a redelivery) or older than what we know
        if kind == "charger_status":
            touched = _status(latest, key, session, ts, seq, data)
        else:
            touched = _meter(latest, key, session, ts, seq, data)
        for s in touched:
            changed.setdefault(s.session_id, s)
    return list(changed.values())


def _begin(latest: MutableMapping[ConnectorKey, Session], key: ConnectorKey, ts: int,
           seq: int) -> Session:
    session = Session(session_id(key[0], key[1], ts), key[0], key[1], start_ts=ts,
                      last_ts=ts, last_seq=seq)
    latest[key] = session
    return session


def _status(latest: MutableMapping[ConnectorKey, Session], key: ConnectorKey,
            session: Session | None, ts: int, seq: int, data: Mapping[str, Any]
            ) -> list[Session]:
    status, error = data["status"], data["errorCode"]
    if session is None or not session.is_open:
        if status not in START_STATUSES:
            return []  # an idle connector's heartbeat or fault: no session to record it on
        session = _begin(latest, key, ts, seq)
    session.last_ts, session.last_seq = ts, seq
    if error != NO_ERROR:
        session.error_code = error
    if status == "Charging" and session.startup_ms is None and session.is_open:
        session.startup_ms = ts - session.start_ts
    if status in END_STATUSES:
        session._close(ts, status)
    return [session]


def _meter(latest: MutableMapping[ConnectorKey, Session], key: ConnectorKey,
           session: Session | None, ts: int, seq: int, data: Mapping[str, Any]
           ) -> list[Session]:
    touched: list[Session] = []
    tx = data.get("transactionId")
    if session is not None and session.is_open and tx is not None \
            and session.transaction_id not in (None, tx):
        session._close(session.last_ts, SUPERSEDED)  # its end was never reported
        touched.append(session)
    if session is None or not session.is_open:
        if tx is None or (session is not None and session.transaction_id == tx):
            return touched  # meter values after the end, or outside any transaction
        session = _begin(latest, key, ts, seq)
    session.last_ts, session.last_seq = ts, seq
    if session.transaction_id is None and tx is not None:
        session.transaction_id = tx
    if session.vin is None and data.get("vin") is not None:
        session.vin = data["vin"]
    measurands: Mapping[str, float] = data["measurands"]
    energy = measurands.get(ENERGY)
    if energy is not None:
        if session.meter_start_wh is None:
            session.meter_start_wh = energy
        session.energy_wh = round(max(0.0, energy - session.meter_start_wh), 3)
    for name, attr in ((POWER, "max_power_w"), (OFFERED, "offered_w")):
        value = measurands.get(name)
        if value is not None:
            current = getattr(session, attr)
            if current is None or value > current:
                setattr(session, attr, value)
    touched.append(session)
    return touched
