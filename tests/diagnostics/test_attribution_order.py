"""The attribution's inputs in event-time order: the alerts do not depend on which of the two
streams (the cars' accounts, the chargers' reports) ran ahead, within the wait it allows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.attribution import ChargingAttribution
from diagnostics.attribution_order import (
    CAR,
    CHARGER,
    ORDER_KEY,
    TICK_MS,
    ClockTicks,
    OrderedAttribution,
    clock_tick,
    source_of,
)
from tests.diagnostics.test_car_accounts import BAD, HOUR_MS, MINUTE_MS, T0, account, reported

DAY_MS = 24 * HOUR_MS


def car_partition(vin: str) -> int:
    return sum(map(ord, vin)) % 2


def fleet_streams(partitioned: bool = False
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the cars' stream, the chargers' stream), each in its own event-time order with its
    clock ticks (per car partition when ``partitioned``, as the worker sends them): healthy
    cars at three reporting chargers and one silent one; from day 6 a car
    whose inlet fails, cut short and retried, at all of them."""
    cars: list[dict[str, Any]] = []
    chargers: list[dict[str, Any]] = []
    chargers_all = ["CP-A", "CP-B", "CP-C", "CP-S"]
    for day in range(6):
        for k, charger in enumerate(chargers_all):
            start = T0 + day * DAY_MS + k * 3 * HOUR_MS
            vin = f"OTHER{(day + k) % 5}"
            cars += account(vin, charger, start, start + HOUR_MS)
            if charger != "CP-S":
                chargers.append(reported(charger, vin, start, start + HOUR_MS))
    t = T0 + 6 * DAY_MS
    for day in range(3):
        for charger in (["CP-S", "CP-A"], ["CP-B", "CP-S"], ["CP-C", "CP-A"])[day]:
            cars += account(BAD, charger, t, t + 4 * MINUTE_MS)
            if charger != "CP-S":
                chargers.append(reported(charger, BAD, t, t + 4 * MINUTE_MS, True,
                                         "EVCommunicationError"))
            t += 25 * MINUTE_MS
        t += DAY_MS
    end = t + DAY_MS
    for ts in range(T0, end, HOUR_MS):
        cars += [clock_tick(CAR, ts, p) for p in (0, 1)] if partitioned else [clock_tick(CAR, ts)]
    chargers += [clock_tick(CHARGER, ts) for ts in range(T0, end, HOUR_MS)]
    return (sorted(cars, key=lambda i: i["ts"]), sorted(chargers, key=lambda i: i["ts"]))


def merged(lag_ms: int) -> list[dict[str, Any]]:
    """Both streams as one arrival order, the chargers' running ``lag_ms`` behind."""
    cars, chargers = fleet_streams()
    keyed = [(i["ts"], 0, n, i) for n, i in enumerate(cars)]
    keyed += [(i["ts"] + lag_ms, 1, n, i) for n, i in enumerate(chargers)]
    return [entry[3] for entry in sorted(keyed, key=lambda e: e[:3])]


def merged_partitions(lag_ms: int, skew_ms: int) -> list[dict[str, Any]]:
    """As ``merged``, the cars' stream in two partitions, the second ``skew_ms`` behind the
    first (two workers, or a bridge restarting with its shard of the fleet)."""
    cars, chargers = fleet_streams(partitioned=True)

    def behind(item: dict[str, Any]) -> int:
        part = item["partition"] if "partition" in item else car_partition(item["vin"])
        return skew_ms if part == 1 else 0

    keyed = [(i["ts"] + behind(i), 0, n, i) for n, i in enumerate(cars)]
    keyed += [(i["ts"] + lag_ms, 1, n, i) for n, i in enumerate(chargers)]
    return [entry[3] for entry in sorted(keyed, key=lambda e: e[:3])]


def opened(alerts: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted({(a["asset_id"], a["type"], a["first_seen"]) for a in alerts
                   if a["status"] == "open"})


def ordered_run(items: list[dict[str, Any]], through_json: bool = False,
                attributor: OrderedAttribution | None = None) -> list[dict[str, Any]]:
    attributor = attributor or OrderedAttribution()
    states: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    for item in items:
        alerts += attributor.process([item], states)[0]
        if through_json:  # the worker's table is JSON: a restart restores it from there
            states = json.loads(json.dumps(states))
    return alerts + attributor.flush(states)[0]


def plain_run(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return ChargingAttribution().process([i for i in items if i.get("kind") != "clock"], {})[0]


def test_the_fleet_has_an_alert_to_find() -> None:
    assert ("WCRAE1B58MT023399", "charging_inlet_fault") in {
        (a[0], a[1]) for a in opened(ordered_run(merged(0)))}


@settings(max_examples=40)
@given(lag_min=st.integers(min_value=-20 * 60, max_value=20 * 60))
def test_whichever_stream_runs_ahead_the_alerts_are_the_same(lag_min: int) -> None:
    assert opened(ordered_run(merged(lag_min * MINUTE_MS))) == opened(ordered_run(merged(0)))


@given(lag_min=st.integers(min_value=-20 * 60, max_value=20 * 60),
       skew_min=st.integers(min_value=-20 * 60, max_value=20 * 60))
def test_whichever_partition_of_the_cars_runs_ahead_the_alerts_are_the_same(
        lag_min: int, skew_min: int) -> None:
    assert opened(ordered_run(merged_partitions(lag_min * MINUTE_MS, skew_min * MINUTE_MS))) \
        == opened(ordered_run(merged(0)))


def test_a_partition_fallen_silent_is_not_waited_for_beyond_max_wait() -> None:
    attributor, states = OrderedAttribution(hold_ms=HOUR_MS, max_wait_ms=DAY_MS), {}
    attributor.process([clock_tick(CAR, T0, 0), clock_tick(CAR, T0 + DAY_MS, 1),
                        clock_tick(CHARGER, T0 + DAY_MS, 0), failing_report(T0 + HOUR_MS)],
                       states)
    assert len(states[ORDER_KEY]["held"]) == 1  # partition 0 of the cars is a day behind
    attributor.process([clock_tick(CAR, T0 + DAY_MS + 3 * HOUR_MS, 1),
                        clock_tick(CHARGER, T0 + DAY_MS + 3 * HOUR_MS, 0)], states)
    assert states[ORDER_KEY]["held"] == []
    assert attributor.stream_clocks(states[ORDER_KEY]["clocks"]) == {
        CAR: T0 + DAY_MS + 3 * HOUR_MS, CHARGER: T0 + DAY_MS + 3 * HOUR_MS}


@settings(max_examples=60)
@given(data=st.data())
def test_a_redelivered_input_changes_nothing_however_late(data: st.DataObject) -> None:
    # A restarted worker sends again what it sent since its last checkpoint, and the copy can
    # come after the asset has had more than a window of newer sessions.
    items = merged(0)
    inputs = [n for n, i in enumerate(items) if i.get("kind") != "clock"]
    first = data.draw(st.integers(0, len(inputs) - 1))
    count = data.draw(st.integers(1, 12))
    copies = [items[n] for n in inputs[first:first + count]]
    at = data.draw(st.integers(inputs[first] + 1, len(items)))
    again = [*items[:at], *copies, *items[at:]]
    assert opened(ordered_run(again)) == opened(ordered_run(items))


def test_a_report_redelivered_after_a_window_of_newer_sessions_is_not_counted_again() -> None:
    bad = [reported("CP-A", f"CAR{n}", T0 + n * HOUR_MS, T0 + n * HOUR_MS + 4 * MINUTE_MS,
                    True, "GroundFailure") for n in range(3)]
    fine = [reported("CP-A", f"OK{n}", T0 + (10 + n) * HOUR_MS, T0 + (10 + n) * HOUR_MS
                     + HOUR_MS) for n in range(14)]
    attribution, states = ChargingAttribution(), {}
    attribution.process([*bad, *fine], states)
    before = json.dumps(states, sort_keys=True)
    attribution.process(bad, states)  # every copy long gone from the charger's window
    assert json.dumps(states, sort_keys=True) == before


def test_without_the_order_a_lagging_stream_changes_the_alerts() -> None:
    # The race this module removes: the same inputs, the chargers' reports six hours ahead
    # (the car's accounts of sessions their chargers report briefly stand in the windows).
    assert opened(plain_run(merged(-6 * HOUR_MS))) != opened(plain_run(merged(0)))
    assert opened(ordered_run(merged(-6 * HOUR_MS))) == opened(ordered_run(merged(0)))


def test_in_step_streams_give_what_the_attribution_gives_in_event_time_order() -> None:
    by_time = sorted(merged(0), key=lambda i: (i["ts"], source_of(i) == CAR))
    assert opened(ordered_run(merged(0))) == opened(plain_run(by_time))


def test_a_restart_from_the_json_state_changes_nothing() -> None:
    items = merged(3 * HOUR_MS)
    assert opened(ordered_run(items, through_json=True)) == opened(ordered_run(items))


def failing_report(ts: int) -> dict[str, Any]:
    return reported("CP-A", BAD, ts - 4 * MINUTE_MS, ts, True, "EVCommunicationError")


def test_an_input_waits_until_both_streams_have_passed_it_by_the_hold() -> None:
    attributor, states = OrderedAttribution(hold_ms=HOUR_MS), {}
    attributor.process([clock_tick(CAR, T0), failing_report(T0 + MINUTE_MS)], states)
    assert [i["ts"] for _, i in states[ORDER_KEY]["held"]] == [T0 + MINUTE_MS]
    attributor.process([clock_tick(CHARGER, T0 + 3 * HOUR_MS)], states)
    assert len(states[ORDER_KEY]["held"]) == 1  # the cars' stream has not got there yet
    attributor.process([clock_tick(CAR, T0 + HOUR_MS + MINUTE_MS)], states)
    assert states[ORDER_KEY]["held"] == []
    assert "vehicle/" + BAD in states


def test_a_stream_fallen_silent_is_not_waited_for_beyond_max_wait() -> None:
    attributor, states = OrderedAttribution(hold_ms=HOUR_MS, max_wait_ms=DAY_MS), {}
    attributor.process([clock_tick(CAR, T0), failing_report(T0 + MINUTE_MS)], states)
    attributor.process([clock_tick(CHARGER, T0 + DAY_MS)], states)
    assert len(states[ORDER_KEY]["held"]) == 1
    attributor.process([clock_tick(CHARGER, T0 + DAY_MS + MINUTE_MS)], states)
    assert states[ORDER_KEY]["held"] == []


def test_an_input_behind_what_was_released_goes_in_at_once() -> None:
    attributor, states = OrderedAttribution(hold_ms=HOUR_MS), {}
    attributor.process([clock_tick(CAR, T0 + DAY_MS), clock_tick(CHARGER, T0 + DAY_MS),
                        failing_report(T0 + 2 * DAY_MS)], states)
    released = states[ORDER_KEY]["released"]
    assert released == T0 + DAY_MS - HOUR_MS
    attributor.process([failing_report(T0 + HOUR_MS)], states)
    assert [i["ts"] for _, i in states[ORDER_KEY]["held"]] == [T0 + 2 * DAY_MS]
    assert len(states["vehicle/" + BAD]["recent"]) == 1
    assert states[ORDER_KEY]["released"] == released


def test_clock_ticks_follow_each_partition_in_steps() -> None:
    ticks = ClockTicks(CAR)
    assert ticks.after(0, [{"ts": T0}]) == clock_tick(CAR, T0, 0)
    assert ticks.after(0, [{"ts": T0 + TICK_MS - 1}]) is None
    assert ticks.after(1, [{"ts": T0 + 1}]) == clock_tick(CAR, T0 + 1, 1)
    assert ticks.after(0, [{"ts": T0 + TICK_MS}, {"ts": T0}]) \
        == clock_tick(CAR, T0 + TICK_MS, 0)
    assert ticks.after(0, []) is None


@pytest.mark.parametrize(("hold_ms", "max_wait_ms"), [(-1, DAY_MS), (DAY_MS, DAY_MS)])
def test_impossible_waits_are_refused(hold_ms: int, max_wait_ms: int) -> None:
    with pytest.raises(ValueError, match="hold_ms"):
        OrderedAttribution(hold_ms=hold_ms, max_wait_ms=max_wait_ms)
