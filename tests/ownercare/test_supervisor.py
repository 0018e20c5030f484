"""The restart policy of ``ownercare run`` (pure) and how the API reads its record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from api.metrics import restart_metrics, supervisor_status
from ownercare.supervisor import Crashes, GiveUp, Policy, Restart
from tests.ingest.test_service_metrics import convention_problems, exposed

policies = st.builds(Policy, initial_backoff_s=st.floats(0.01, 2), max_backoff_s=st.floats(2, 60),
                     stable_after_s=st.floats(1, 120), crash_limit=st.integers(1, 8),
                     window_s=st.floats(1, 120))
gaps = st.lists(st.floats(0, 100), min_size=1, max_size=40)


def in_window(times: list[float], window_s: float) -> int:
    return sum(1 for t in times if t > times[-1] - window_s)


@given(policies, gaps)
def test_fast_crashes_back_off_ever_longer_until_the_limit_stops_the_stack(
        policy: Policy, gaps: list[float]) -> None:
    crashes = Crashes(policy)
    times: list[float] = []
    backoffs: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
        # Up for less than stable_after_s every time: one streak.
        decision = crashes.crashed(now, policy.stable_after_s / 2, -9)
        if in_window(times, policy.window_s) >= policy.crash_limit:
            assert isinstance(decision, GiveUp)
            assert decision.reason.startswith(f"crashed {policy.crash_limit} times within")
            assert "(last exit status -9)" in decision.reason
            break
        assert isinstance(decision, Restart)
        backoffs.append(decision.backoff_s)
    assert backoffs == sorted(backoffs)
    assert all(policy.initial_backoff_s <= b <= policy.max_backoff_s for b in backoffs)
    if backoffs:
        assert backoffs[0] == policy.initial_backoff_s
    assert crashes.restarts == len(backoffs)


@given(policies, gaps, st.lists(st.booleans(), min_size=40, max_size=40))
def test_a_service_that_stayed_up_starts_over_at_the_shortest_wait(
        policy: Policy, gaps: list[float], stable: list[bool]) -> None:
    crashes = Crashes(policy)
    times: list[float] = []
    previous: float | None = None
    now = 0.0
    for gap, was_stable in zip(gaps, stable, strict=False):
        now += gap
        times.append(now)
        up_for = policy.stable_after_s if was_stable else 0.0
        decision = crashes.crashed(now, up_for, 1)
        # The limit counts crashes in the window whatever the uptime before them.
        if in_window(times, policy.window_s) >= policy.crash_limit:
            assert isinstance(decision, GiveUp)
            return
        assert isinstance(decision, Restart)
        if was_stable or previous is None:
            assert decision.backoff_s == policy.initial_backoff_s
        else:
            assert decision.backoff_s == min(previous * 2, policy.max_backoff_s)
        previous = decision.backoff_s


def test_the_default_policy() -> None:
    crashes = Crashes()
    decisions = [crashes.crashed(t, 0.1, -9) for t in (0, 1, 2, 3)]
    assert decisions == [Restart(0.5), Restart(1.0), Restart(2.0), Restart(4.0)]
    assert crashes.crashed(4, 0.1, -9) == GiveUp(
        "crashed 5 times within 60 s (last exit status -9)")
    spaced = Crashes()
    assert all(isinstance(spaced.crashed(t * 61.0, 0.1, 1), Restart) for t in range(50))
    assert spaced.next_backoff_s == 30.0


@pytest.mark.parametrize("kwargs", [{"initial_backoff_s": 0}, {"max_backoff_s": 0.1},
                                    {"crash_limit": 0}, {"window_s": 0}])
def test_a_nonsensical_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        Policy(**kwargs)


# ----------------------------------------------------------------- the API reads supervisor.json


def test_the_api_reads_the_restarts_and_ignores_what_is_not_a_record(tmp_path: Path) -> None:
    assert supervisor_status(tmp_path) == {}
    (tmp_path / "supervisor.json").write_text("{not json")
    assert supervisor_status(tmp_path) == {}
    (tmp_path / "supervisor.json").write_text(json.dumps({
        "worker": {"restarts": 2, "last_exit_status": -9, "last_restart_wall_ms": 5, "pid": 7},
        "api": {"restarts": 0, "last_exit_status": None, "last_restart_wall_ms": None,
                "pid": 8},
        "bogus": {"restarts": "many"}, "other": 3}))
    assert supervisor_status(tmp_path) == {
        "worker": {"restarts": 2, "last_exit_status": -9, "last_restart_wall_ms": 5, "pid": 7},
        "api": {"restarts": 0, "last_exit_status": None, "last_restart_wall_ms": None,
                "pid": 8}}
    registry = CollectorRegistry(auto_describe=False)
    for family in restart_metrics(tmp_path):
        registry.register(_Fixed(family))
    text = generate_latest(registry).decode()
    (family,) = text_string_to_metric_families(text)
    assert {(s.name, s.labels["service"], s.value) for s in family.samples
            if s.name.endswith("_total")} == {
        ("ownercare_service_restarts_total", "worker", 2.0),
        ("ownercare_service_restarts_total", "api", 0.0)}
    problems = [p for name, kind, labels in exposed(_Fixed(*restart_metrics(tmp_path)))
                for p in convention_problems(name, kind, labels)]
    assert not problems


class _Fixed(Collector):
    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
