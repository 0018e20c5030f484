"""The cars' own accounts of public sessions in the charging-fault attribution: what a charger
that reports nothing (offline from its back office, still charging) loses, the cars say."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.attribution import CUT_SHORT, ChargingAttribution, car_accounts
from ingest.contract import validate

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
T0 = 1_767_571_200_000
BAD = "WCRAE1B58MT023399"


def account(vin: str, charger: str, start: int, end: int) -> list[dict[str, Any]]:
    """A car's charge_start and charge_end at a public charger, as ``car_accounts`` makes
    them."""
    return [{"kind": "car_charge", "vin": vin, "charger_id": charger, "event": "start",
             "ts": start, "duration_ms": None},
            {"kind": "car_charge", "vin": vin, "charger_id": charger, "event": "end",
             "ts": end, "duration_ms": end - start}]


def reported(charger: str, vin: str | None, start: int, end: int, abnormal: bool = False,
             code: str | None = None) -> dict[str, Any]:
    """The charger's outcome of a session (``charger_pipeline.outcome_of``)."""
    return {"session_id": f"{charger}:1:{start}", "charger_id": charger, "vin": vin,
            "abnormal": abnormal, "end_status": "Faulted" if abnormal else "Available",
            "error_code": code, "start_ts": start - 30_000, "startup_ms": 30_000, "ts": end}


def opened(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(a["asset_kind"], a["asset_id"], a["type"]) for a in alerts if a["status"] == "open"}


def healthy_cars_at(charger: str, first: int, cars: int = 4, reports: bool = False
                    ) -> list[dict[str, Any]]:
    """Other fleet cars charging an hour each at ``charger``, a day apart from ``first``."""
    out: list[dict[str, Any]] = []
    for k in range(cars):
        start = first + k * 24 * HOUR_MS
        vin = f"OTHER{k}"
        out += (account(vin, charger, start, start + HOUR_MS)
                + ([reported(charger, vin, start, start + HOUR_MS)] if reports else []))
    return out


def test_a_session_cut_short_at_a_silent_charger_and_retried_counts_as_a_failure() -> None:
    # CP-S reports nothing; the cars charging there say it charges them fine. CP-R reports.
    stream = healthy_cars_at("CP-S", T0) + healthy_cars_at("CP-R", T0, reports=True)
    day5 = T0 + 5 * 24 * HOUR_MS
    # The faulty car: 4 minutes at CP-S, then 20 minutes later a session at CP-R that fails.
    stream += account(BAD, "CP-S", day5, day5 + 4 * MINUTE_MS)
    retry = day5 + 24 * MINUTE_MS
    stream += [*account(BAD, "CP-R", retry, retry + 3 * MINUTE_MS),
               reported("CP-R", BAD, retry, retry + 3 * MINUTE_MS, True, "GroundFailure")]
    alerts = ChargingAttribution().process(stream, {})[0]
    assert opened(alerts) == {("vehicle", BAD, "charging_inlet_fault")}
    evidence = next(a for a in alerts if a["asset_id"] == BAD)["evidence"]
    assert evidence["chargers_failing_with_this_car"] == ["CP-R", "CP-S"]
    assert evidence["error_codes"] == [CUT_SHORT, "GroundFailure"]


def test_without_the_cars_accounts_the_same_car_is_not_seen() -> None:
    stream = healthy_cars_at("CP-R", T0, reports=True)
    day5 = T0 + 5 * 24 * HOUR_MS
    retry = day5 + 24 * MINUTE_MS
    stream += [reported("CP-R", BAD, retry, retry + 3 * MINUTE_MS, True, "GroundFailure")]
    assert ChargingAttribution().process(stream, {})[0] == []


@pytest.mark.parametrize("gap_min", [50, 6 * 60])
def test_a_next_session_later_than_the_retry_gap_is_a_new_stop(gap_min: int) -> None:
    stream = healthy_cars_at("CP-S", T0) + healthy_cars_at("CP-R", T0, reports=True)
    day5 = T0 + 5 * 24 * HOUR_MS
    stream += account(BAD, "CP-S", day5, day5 + 30 * MINUTE_MS)
    later = day5 + (30 + gap_min) * MINUTE_MS
    stream += [*account(BAD, "CP-R", later, later + 3 * MINUTE_MS),
               reported("CP-R", BAD, later, later + 3 * MINUTE_MS, True, "GroundFailure")]
    states: dict[str, Any] = {}
    assert ChargingAttribution().process(stream, states)[0] == []
    assert [e[2] for e in states[f"vehicle/{BAD}"]["recent"]] == [0, 1]


def test_cars_cut_short_at_a_silent_charger_do_not_blame_it() -> None:
    # Two cars with worn inlets, neither known yet, cut short at CP-S (which reports nothing,
    # so no start-up time says they were slow): the charger's own reports are what blames it.
    stream = healthy_cars_at("CP-R", T0, reports=True) + healthy_cars_at("CP-S", T0)
    day5 = T0 + 5 * 24 * HOUR_MS
    for k, vin in enumerate(("CAR-A", "CAR-B")):
        start = day5 + k * 5 * HOUR_MS
        stream += account(vin, "CP-S", start, start + 2 * MINUTE_MS)
        retry = start + 15 * MINUTE_MS
        stream += account(vin, "CP-R", retry, retry + HOUR_MS)
    states: dict[str, Any] = {}
    alerts = ChargingAttribution().process(stream, states)[0]
    assert ("charger", "CP-S", "charger_fault") not in opened(alerts)
    assert sum(e[2] for e in states["charger/CP-S"]["recent"]) == 2  # seen, not blamed
    # The same failures reported by the charger itself do blame it.
    reported_too = [*stream[:-8]]
    for k, vin in enumerate(("CAR-A", "CAR-B")):
        start = day5 + k * 5 * HOUR_MS
        reported_too.append(reported("CP-S", vin, start, start + 2 * MINUTE_MS, True,
                                     "GroundFailure"))
    assert ("charger", "CP-S", "charger_fault") in opened(
        ChargingAttribution().process(reported_too, {})[0])


@pytest.mark.parametrize("car_first", [True, False])
def test_a_session_the_charger_reports_is_counted_once_and_the_charger_has_the_word(
        car_first: bool) -> None:
    start = T0 + HOUR_MS
    car = account(BAD, "CP-R", start, start + HOUR_MS)
    charger = [reported("CP-R", BAD, start, start + HOUR_MS, True, "EVCommunicationError")]
    states: dict[str, Any] = {}
    attribution = ChargingAttribution()
    attribution.process(car + charger if car_first else charger + car, states)
    for key in ("charger/CP-R", f"vehicle/{BAD}"):
        assert [(e[0], e[2], e[3]) for e in states[key]["recent"]] == [
            ("CP-R:1:" + str(start), 1, "EVCommunicationError")], key
    # The car's next public session within minutes does not touch the charger's word.
    attribution.process(account(BAD, "CP-Q", start + HOUR_MS + 10 * MINUTE_MS,
                                start + 2 * HOUR_MS), states)
    assert states["charger/CP-R"]["recent"][0][2:4] == [1, "EVCommunicationError"]


def test_a_charger_that_does_not_know_the_vin_replaces_the_cars_account() -> None:
    start = T0 + HOUR_MS
    states: dict[str, Any] = {}
    attribution = ChargingAttribution()
    attribution.process([*account(BAD, "CP-R", start, start + HOUR_MS),
                         reported("CP-R", None, start, start + HOUR_MS)], states)
    assert [e[1] for e in states["charger/CP-R"]["recent"]] == [f"walk-in:CP-R:1:{start}"]
    assert states[f"vehicle/{BAD}"]["recent"] == []
    # ... and the account redelivered after it is not counted again.
    attribution.process(account(BAD, "CP-R", start, start + HOUR_MS), states)
    assert len(states["charger/CP-R"]["recent"]) == 1
    assert states[f"vehicle/{BAD}"]["recent"] == []


def test_a_redelivered_account_is_ignored() -> None:
    stream = account(BAD, "CP-S", T0, T0 + HOUR_MS)
    states: dict[str, Any] = {}
    attribution = ChargingAttribution()
    attribution.process(stream + stream, states)
    assert len(states["charger/CP-S"]["recent"]) == 1
    assert len(states[f"vehicle/{BAD}"]["recent"]) == 1


SESSIONS = st.lists(st.tuples(st.sampled_from(["CP-1", "CP-2", "CP-3"]),
                              st.sampled_from(["CAR-A", "CAR-B", "CAR-C"]),
                              st.booleans(), st.booleans()),
                    min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(sessions=SESSIONS, data=st.data())
def test_whatever_the_order_no_session_is_counted_twice(
        sessions: list[tuple[str, str, bool, bool]], data: st.DataObject) -> None:
    """Each session is reported by its car and, unless the charger is silent, by its charger;
    the two streams (different topics, each in its own order) meet in any order, yet every
    list holds one entry per session, the charger's when it reported."""
    cars: list[dict[str, Any]] = []
    chargers: list[dict[str, Any]] = []
    for k, (charger, vin, abnormal, silent) in enumerate(sessions):
        start = T0 + k * 3 * HOUR_MS
        cars += account(vin, charger, start, start + HOUR_MS)
        if not silent:
            chargers.append(reported(charger, vin, start, start + HOUR_MS, abnormal))
    queues = [cars, chargers]
    stream = []
    while any(queues):
        live = [q for q in queues if q]
        stream.append(data.draw(st.sampled_from(live)).pop(0))
    states: dict[str, Any] = {}
    ChargingAttribution().process(stream, states)
    for key, state in states.items():
        starts = [e[6] for e in state["recent"]]
        assert len(starts) == len(set(starts)), (key, state["recent"])
    for k, (charger, _vin, abnormal, silent) in enumerate(sessions):
        start = T0 + k * 3 * HOUR_MS
        (entry,) = [e for e in states[f"charger/{charger}"]["recent"] if e[4] == start + HOUR_MS]
        assert entry[0].startswith("car:") == silent
        if not silent:
            assert entry[2] == int(abnormal)
    json.dumps(states)  # the states stay JSON for the worker's table


def test_car_accounts_come_from_charge_events_that_name_their_charger() -> None:
    vin = "WVWZZZ1JZXW000001"

    def event(seq: int, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps({"ts": T0 + seq * MINUTE_MS, "seq": seq, **body}).encode()
        return validate(f"vehicles/{vin}/events", payload)

    records = [event(1, {"type": "charge_start", "charger_id": "CP-0007"}),
               event(2, {"type": "charge_end", "charger_id": "CP-0007", "duration_ms": 60_000,
                         "energy_kwh": 0.4}),
               event(3, {"type": "charge_start"}),  # at home: no charger named
               event(4, {"type": "ignition", "state": "ON"})]
    assert car_accounts(records) == [
        {"kind": "car_charge", "vin": vin, "charger_id": "CP-0007", "event": "start",
         "ts": T0 + MINUTE_MS, "duration_ms": None},
        {"kind": "car_charge", "vin": vin, "charger_id": "CP-0007", "event": "end",
         "ts": T0 + 2 * MINUTE_MS, "duration_ms": 60_000}]


def test_the_retry_gap_is_checked() -> None:
    with pytest.raises(ValueError, match="retry_gap_min"):
        ChargingAttribution(retry_gap_min=0)
