"""When the OTA engine steps (``ota.timing``): on the fleet's event time, whatever the wall
clock does, and at once when an operator changes a campaign."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota.timing import StepClock

HOUR = 3_600_000
T0 = 1_767_571_200_000
RUNNING = [("c1", "running")]


def test_nothing_to_step_or_no_fleet_time_is_never_due() -> None:
    clock = StepClock(10_000)
    assert not clock.poll(T0, [])
    assert not clock.poll(None, RUNNING)


def test_a_step_is_due_once_the_fleet_moved_on_by_the_interval() -> None:
    clock = StepClock(10_000)
    assert clock.poll(T0, RUNNING)
    clock.stepped(T0)
    assert not clock.poll(T0, RUNNING)
    assert not clock.poll(T0 + 9_999, RUNNING)
    assert clock.poll(T0 + 10_000, RUNNING)


def test_an_operator_change_is_due_at_once_even_on_a_silent_fleet() -> None:
    clock = StepClock(10_000)
    assert clock.poll(T0, RUNNING)
    clock.stepped(T0)
    for marks in ([("c1", "canceled")], [*RUNNING, ("c2", "running")]):
        assert clock.poll(T0, marks), marks  # the fleet's clock has not moved
        clock.stepped(T0)
    assert not clock.poll(T0, [])  # paused or completed: nothing to step
    assert clock.poll(T0, [("c2", "running")])  # resumed: stepped at once


def test_event_time_going_back_steps_at_once() -> None:
    clock = StepClock(10_000)
    assert clock.poll(T0, RUNNING)
    clock.stepped(T0)
    assert not clock.poll(T0 + 1, RUNNING)
    assert clock.poll(T0 - 1, RUNNING)


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StepClock(0)


@given(speed=st.sampled_from([1.0, 60.0, 3600.0, 200_000.0]),
       poll_s=st.sampled_from([0.05, 0.5, 1.0, 10.0]),
       step_s=st.sampled_from([1.0, 10.0, 60.0]),
       jitter=st.lists(st.floats(0.0, 0.5), min_size=50, max_size=50))
def test_steps_follow_event_time_not_the_wall_clock(speed: float, poll_s: float,
                                                    step_s: float, jitter: list[float]) -> None:
    """A fleet whose clock runs ``speed`` times the wall clock, polled every ``poll_s`` wall
    seconds: two steps are never closer than ``step_s`` of event time, and no poll that finds
    the fleet ``step_s`` past the last step lets it pass. So at 3600× a step comes per
    simulated interval (as often as the polls allow), not every 3600 intervals."""
    step_ms = int(step_s * 1000)
    clock = StepClock(step_ms)
    now = T0
    steps, increments = [], []
    for extra in jitter:
        increment = int((poll_s + extra * poll_s) * speed * 1000)  # event time between polls
        now += increment
        increments.append(increment)
        was = clock.last_at
        if clock.poll(now, RUNNING):
            assert was is None or now - was >= step_ms
            clock.stepped(now)
            steps.append(now)
        else:
            assert was is not None
            assert now - was < step_ms
    assert all(b - a < step_ms + max(increments) for a, b in zip(steps, steps[1:], strict=False))
    if min(increments) >= step_ms:
        assert len(steps) == len(jitter)  # 3600×: every poll steps
