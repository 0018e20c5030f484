"""The generic detector's event rule (diagnostics.generic_rule): when score events are evidence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.generic_rule import EventRule
from vocab.eventtime import DAY_MS, HOUR_MS

T0 = 1_767_225_600_000  # a midnight (UTC)
TYRE = "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"
AIR = "Vehicle.Exterior.AirTemperature"


def noted(rule: EventRule, events: list[tuple[int, str, int]], step: float = 3.0,
          span: float = 10.0) -> dict[str, list[list[object]]]:
    """``events`` noted in order, each ``step`` further in its direction than the last
    (a drift), the signal's range ``span`` wide."""
    state = rule.new_state()
    for i, (ts, signal, direction) in enumerate(events):
        rule.note(state, ts, signal, direction, 200.0 + direction * step * i, span)
    return state


def test_new_lows_on_three_days_alone_are_evidence_once_settled() -> None:
    rule = EventRule()
    state = noted(rule, [(T0 + d * DAY_MS + 8 * HOUR_MS, TYRE, -1) for d in range(3)])
    last = T0 + 2 * DAY_MS + 8 * HOUR_MS
    # The third event is not settled until shared_ms has passed without another signal's.
    assert rule.anomalous(state, last) == {}
    assert rule.anomalous(state, last + rule.shared_ms - 1) == {}
    found = rule.anomalous(state, last + rule.shared_ms)
    assert found == {TYRE: {"direction": -1, "days": 3, "first": T0 + 8 * HOUR_MS,
                            "last": last, "travel": 0.6}}


def test_extremes_that_go_nowhere_are_noise() -> None:
    rule = EventRule()
    events = [(T0 + d * DAY_MS + 8 * HOUR_MS, TYRE, 1) for d in range(5)]
    # each new high by a hair: five days of events, 0.2 ranges travelled
    state = noted(rule, events, step=0.5, span=10.0)
    assert rule.anomalous(state, T0 + 6 * DAY_MS) == {}
    assert rule.anomalous(noted(rule, events, step=1.25), T0 + 6 * DAY_MS)[TYRE]["travel"] == 0.5


def test_events_shared_with_another_signal_are_explained() -> None:
    rule = EventRule()
    events = [(T0 + d * DAY_MS + 8 * HOUR_MS, TYRE, -1) for d in range(4)]
    # a cold snap: the air set a new low a few hours before each tyre's
    events += [(T0 + d * DAY_MS + 5 * HOUR_MS, AIR, -1) for d in range(4)]
    state = noted(rule, events)
    assert rule.anomalous(state, T0 + 5 * DAY_MS) == {}


def test_two_days_or_mixed_directions_are_not_enough() -> None:
    rule = EventRule()
    two = noted(rule, [(T0 + 8 * HOUR_MS, TYRE, -1), (T0 + DAY_MS + 8 * HOUR_MS, TYRE, -1),
                       (T0 + DAY_MS + 9 * HOUR_MS, TYRE, -1)])
    assert rule.anomalous(two, T0 + 3 * DAY_MS) == {}
    mixed = noted(rule, [(T0 + 8 * HOUR_MS, TYRE, -1), (T0 + DAY_MS + 8 * HOUR_MS, TYRE, 1),
                         (T0 + 2 * DAY_MS + 8 * HOUR_MS, TYRE, -1)])
    assert rule.anomalous(mixed, T0 + 4 * DAY_MS) == {}


def test_events_spread_beyond_the_window_are_not_evidence() -> None:
    rule = EventRule(days=3, window_ms=10 * DAY_MS)
    state = noted(rule, [(T0 + d * 6 * DAY_MS, TYRE, 1) for d in range(3)])  # 12 days
    assert rule.anomalous(state, T0 + 12 * DAY_MS + rule.shared_ms) == {}


def test_forget_drops_only_what_can_no_longer_count() -> None:
    rule = EventRule()
    state = noted(rule, [(T0, TYRE, -1), (T0 + 5 * DAY_MS, TYRE, -1)])
    assert not rule.forget(state, T0 + rule.window_ms + rule.shared_ms)
    assert rule.forget(state, T0 + rule.window_ms + rule.shared_ms + 1)
    assert state["ev"] == [[T0 + 5 * DAY_MS, TYRE, -1, 197.0, 10.0]]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        EventRule().note(EventRule().new_state(), T0, TYRE, 0)
    with pytest.raises(ValueError, match="days"):
        EventRule(days=0)
    with pytest.raises(ValueError, match="max_events"):
        EventRule(days=5, max_events=4)
    with pytest.raises(ValueError, match="travel"):
        EventRule(travel=-1)


event = st.tuples(st.integers(0, 30 * DAY_MS), st.sampled_from([TYRE, AIR, "Vehicle.Speed"]),
                  st.sampled_from([1, -1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(event, max_size=80), st.integers(0, 40 * DAY_MS))
def test_state_is_bounded_json_and_the_verdict_survives_a_round_trip(
        events: list[tuple[int, str, int]], now: int) -> None:
    rule = EventRule()
    state = noted(rule, [(T0 + t, s, d) for t, s, d in events])
    assert len(state["ev"]) <= rule.max_events
    assert [e[0] for e in state["ev"]] == sorted(e[0] for e in state["ev"])
    restored = json.loads(json.dumps(state))
    assert rule.anomalous(restored, T0 + now) == rule.anomalous(state, T0 + now)
    for found in rule.anomalous(state, T0 + now).values():
        assert found["days"] >= rule.days
        assert found["first"] <= found["last"] <= T0 + now - rule.shared_ms


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(event, st.floats(0, 300), st.floats(0, 50)), min_size=1,
                max_size=40, unique_by=lambda e: e[0][0]),
       st.integers(0, 40 * DAY_MS))
def test_the_verdict_does_not_depend_on_arrival_order(
        events: list[tuple[tuple[int, str, int], float, float]], now: int) -> None:
    rule = EventRule(max_events=64, travel=0.1, days=2)
    ordered, shuffled = rule.new_state(), rule.new_state()
    for (t, s, d), value, span in sorted(events):
        rule.note(ordered, T0 + t, s, d, value, span)
    for (t, s, d), value, span in reversed(events):
        rule.note(shuffled, T0 + t, s, d, value, span)
    assert rule.anomalous(ordered, T0 + now) == rule.anomalous(shuffled, T0 + now)


def test_a_signal_found_before_holds_while_any_of_its_events_is_in_the_window() -> None:
    rule = EventRule()
    state = noted(rule, [(T0 + 8 * HOUR_MS, TYRE, -1)])
    now = T0 + DAY_MS
    assert rule.anomalous(state, now) == {}
    assert rule.anomalous(state, now, holding=[TYRE])[TYRE]["days"] == 1
    assert rule.anomalous(state, T0 + 12 * DAY_MS, holding=[TYRE]) == {}
