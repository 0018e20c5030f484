"""Charging-session tracking from OCPP status and meter records (pure)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.charging import ConnectorKey, Session, track

CP = "CP-0001"
VIN = "WCRAAAAAAAAAAAAA1"


class Charger:
    """Builds a charger's records with increasing seq."""

    def __init__(self, charger_id: str = CP) -> None:
        self.id, self.seq = charger_id, 0

    def status(self, ts: int, status: str, error: str = "NoError", connector: int = 1
               ) -> dict[str, Any]:
        self.seq += 1
        return {"kind": "charger_status", "id": self.id, "ts": ts, "seq": self.seq,
                "data": {"connectorId": connector, "status": status, "errorCode": error}}

    def meter(self, ts: int, energy: float, power: float, tx: int | None = 7,
              vin: str | None = VIN, offered: float = 11_000.0, connector: int = 1
              ) -> dict[str, Any]:
        self.seq += 1
        data: dict[str, Any] = {"connectorId": connector, "measurands": {
            "Energy.Active.Import.Register": energy, "Power.Active.Import": power,
            "Power.Offered": offered}}
        if tx is not None:
            data["transactionId"] = tx
        if vin is not None:
            data["vin"] = vin
        return {"kind": "charger_meter", "id": self.id, "ts": ts, "seq": self.seq, "data": data}


def normal_session(c: Charger, t: int, tx: int = 7, vin: str | None = VIN
                   ) -> list[dict[str, Any]]:
    return [c.status(t, "Preparing"), c.status(t + 10, "Charging"),
            c.meter(t + 10, 1000.0, 7000.0, tx, vin), c.meter(t + 20, 2500.0, 7400.0, tx, vin),
            c.meter(t + 30, 4000.0, 0.0, tx, vin), c.status(t + 30, "Finishing"),
            c.status(t + 40, "Available")]


def run(records: list[dict[str, Any]], latest: dict[ConnectorKey, Session] | None = None
        ) -> tuple[dict[ConnectorKey, Session], list[Session]]:
    latest = {} if latest is None else latest
    return latest, track(latest, records)


def test_a_normal_session() -> None:
    latest, changed = run(normal_session(Charger(), 1000))
    (s,) = changed
    assert s.session_id == f"{CP}:1:1000"
    assert (s.start_ts, s.end_ts, s.end_status, s.abnormal) == (1000, 1030, "Finishing", False)
    assert (s.transaction_id, s.vin, s.energy_wh) == (7, VIN, 3000.0)
    assert (s.max_power_w, s.offered_w, s.error_code) == (7400.0, 11_000.0, None)
    assert latest[(CP, 1)] is s


def test_start_up_is_timed_from_plug_in_to_the_first_charging() -> None:
    c = Charger()
    _, (s,) = run([c.status(0, "Preparing"), c.status(37_000, "Charging"),
                   c.meter(40_000, 10.0, 50.0), c.status(41_000, "SuspendedEV"),
                   c.status(50_000, "Charging"), c.status(60_000, "Finishing")])
    assert s.startup_ms == 37_000  # the first Charging; a later resume changes nothing
    # A session whose Preparing went missing starts at Charging: 0, never falsely slow.
    _, (s,) = run([c.status(100_000, "Charging"), c.status(160_000, "Finishing")])
    assert (s.start_ts, s.startup_ms) == (100_000, 0)
    # Never charged (plugged in, then faulted): no start-up time.
    _, (s,) = run([c.status(200_000, "Preparing"),
                   c.status(230_000, "Faulted", "ConnectorLockFailure")])
    assert s.startup_ms is None
    assert s.abnormal


def test_a_fault_ends_the_session_abnormally_with_its_error_code() -> None:
    c = Charger()
    _, (s,) = run([c.status(0, "Preparing"), c.status(5, "Charging"), c.meter(6, 10.0, 50.0),
                   c.status(9, "Faulted", "GroundFailure")])
    assert (s.end_ts, s.end_status, s.error_code, s.abnormal) == (9, "Faulted", "GroundFailure",
                                                                  True)


def test_an_error_code_during_the_session_makes_it_abnormal() -> None:
    c = Charger()
    _, (s,) = run([c.status(0, "Charging"), c.status(5, "SuspendedEVSE", "HighTemperature"),
                   c.status(9, "Finishing")])
    assert (s.end_status, s.error_code, s.abnormal) == ("Finishing", "HighTemperature", True)


def test_idle_heartbeats_and_faults_open_no_session() -> None:
    c = Charger()
    _, changed = run([c.status(0, "Available"), c.status(5, "Faulted", "InternalError"),
                      c.meter(6, 10.0, 0.0, tx=None, vin=None)])
    assert changed == []


def test_a_missed_start_opens_at_the_first_meter_value_and_a_missed_end_is_superseded() -> None:
    c = Charger()
    latest, changed = run([c.meter(100, 10.0, 5000.0, tx=1), c.meter(110, 20.0, 5000.0, tx=1),
                           c.meter(200, 50.0, 6000.0, tx=2, vin=None)])
    first, second = changed
    assert (first.start_ts, first.end_ts, first.end_status, first.abnormal) == (
        100, 110, "superseded", False)
    assert (second.start_ts, second.transaction_id, second.vin, second.end_ts) == (
        200, 2, None, None)
    assert latest[(CP, 1)] is second


def test_meter_values_after_the_end_do_not_reopen_the_session() -> None:
    c = Charger()
    records = normal_session(c, 0)
    records.insert(-1, c.meter(35, 4000.0, 0.0))  # same transaction, after Finishing
    _, changed = run(records)
    assert len(changed) == 1
    assert changed[0].end_status == "Finishing"


def test_connectors_are_tracked_separately_and_connector_0_never_holds_a_session() -> None:
    c = Charger()
    _, changed = run([c.status(0, "Preparing", connector=1), c.status(1, "Preparing",
                                                                      connector=2),
                      c.status(2, "Preparing", connector=0), c.status(3, "Finishing",
                                                                      connector=2)])
    assert sorted((s.connector, s.end_status) for s in changed) == [(1, None), (2, "Finishing")]


def test_a_redelivered_flush_changes_nothing() -> None:
    c = Charger()
    records = normal_session(c, 0) + normal_session(c, 100, tx=8)
    latest, _ = run(records)
    before = {k: v.row() for k, v in latest.items()}
    _, changed = run(records[3:], latest)
    assert changed == []
    assert {k: v.row() for k, v in latest.items()} == before


def _stored(latest: dict[ConnectorKey, Session], table: dict[str, dict[str, Any]]
            ) -> dict[ConnectorKey, Session]:
    """What the worker loads before a flush: each connector's newest session from the table."""
    newest: dict[ConnectorKey, Session] = {}
    for row in table.values():
        key = (row["charger_id"], row["connector"])
        if key not in newest or row["start_ts"] > newest[key].start_ts:
            newest[key] = Session(**row)
    return newest


@given(st.lists(st.integers(0, 40), max_size=6), st.lists(st.integers(0, 40), max_size=3))
@settings(max_examples=150, deadline=None)
def test_flush_splits_and_redeliveries_give_the_same_sessions(cuts: list[int],
                                                              replays: list[int]) -> None:
    """Whatever the flush boundaries, and when a flush is replayed from an earlier offset
    (at-least-once), the table ends up with the same sessions as one uninterrupted pass."""
    c = Charger()
    records = (normal_session(c, 0) + [c.status(50, "Preparing"), c.meter(60, 5.0, 900.0, 9),
                                       c.status(70, "Faulted", "OverVoltage")]
               + normal_session(c, 100, tx=10, vin=None) + [c.meter(200, 1.0, 10.0, 11)])
    expected: dict[str, dict[str, Any]] = {}
    for s in track({}, records):
        expected[s.session_id] = s.row()

    table: dict[str, dict[str, Any]] = {}
    bounds = sorted({min(x, len(records)) for x in cuts} | {len(records)})
    start = 0
    for i, end in enumerate(bounds):
        replay_from = start
        if i < len(replays):  # a crash before the commit: the flush is redelivered from earlier
            replay_from = max(0, start - replays[i])
        for s in track(_stored({}, table), records[replay_from:end]):
            table[s.session_id] = s.row()
        start = end
    assert table == expected
