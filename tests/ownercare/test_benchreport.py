"""The arithmetic of `ownercare bench` (no processes): rates, percentiles, verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ownercare.benchreport import Sample, percentile, render_text, summarise

CONFIG = {"vehicles": 100, "rate": 10.0, "duration": 20, "broker": "mosquitto", "qos": 1}


def samples(lag: float = 0.2, n: int = 21, rate: int = 1000) -> list[Sample]:
    return [Sample(t=1000.0 + i, sent=rate * i, acked=rate * i, processed=rate * i, lag_s=lag,
                   cpu_s={"bridge": 0.1 * i, "worker": 0.05 * i},
                   rss_bytes={"worker": (100 + i) * 2**20})
            for i in range(n)]


def report(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        config=CONFIG, samples=samples(), window_start=1005.0, window_end=1020.0,
        latencies={"A": 0.5, "B": 0.7, "C": 2.0}, injected=4, raw={"rate": 4000.0},
        worker_stats={"state_bytes_mean": 480.0, "state_bytes_max": 600, "vehicles": 100},
        drained=True, max_lag_s=5.0)
    kwargs.update(overrides)
    return summarise(**kwargs)


def test_rates_cpu_and_memory_come_from_the_measurement_window() -> None:
    r = report()
    assert r["window_s"] == 15.0
    assert r["processed_msgs_per_s"] == 1000.0
    assert r["offered_msgs_per_s"] == 1000.0
    # 0.1 CPU s per wall second at 1000 msg/s is 0.1 CPU s per 1000 messages.
    assert r["cpu_s_per_1000_msgs"] == {"bridge": 0.1, "worker": 0.05}
    assert r["cpu_cores_used"] == {"bridge": 0.1, "worker": 0.05}
    assert r["worker_peak_rss_mib"] == 120.0  # the largest sample inside the window
    assert r["ownercare_over_raw"] == 0.25
    assert r["latency_s"] == {"n": 3, "injected": 4, "missing": 1, "p50": 0.7, "p95": 2.0,
                              "p99": 2.0, "max": 2.0}
    assert r["kept_up"] is True


def test_a_lag_beyond_the_bound_or_an_undrained_run_did_not_keep_up() -> None:
    assert report(samples=samples(lag=6.0))["kept_up"] is False
    assert report(drained=False)["kept_up"] is False


def test_too_short_a_window_is_an_error_not_a_figure() -> None:
    with pytest.raises(ValueError, match="fewer than two samples"):
        report(window_start=1019.5, window_end=1020.0)


def test_text_report_names_every_figure() -> None:
    text = render_text(report())
    for needle in ("1000.0 msg/s", "kept up: yes", "p99 2.0 s", "ownercare/raw = 0.25",
                   "bridge 0.1", "mean 480.0 B/vehicle"):
        assert needle in text


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=200),
       st.floats(0.1, 100))
def test_percentile_is_a_member_with_the_right_rank(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    below = sum(v <= p for v in values)  # type: ignore[operator]
    assert below / len(values) >= q / 100 - 1e-9
    assert percentile([], q) is None


def test_several_workers_count_as_one_group_with_their_view_writers() -> None:
    group = [Sample(t=1000.0 + i, sent=1000 * i, acked=1000 * i, processed=1000 * i, lag_s=0.2,
                    cpu_s={"bridge": 0.1 * i, "worker": 0.05 * i, "worker-2": 0.03 * i,
                           "views": 0.01 * i, "views-2": 0.01 * i},
                    rss_bytes={"worker": 100 * 2**20, "worker-2": 90 * 2**20,
                               "views": 50 * 2**20, "views-2": (40 + i) * 2**20,
                               "bridge": 500 * 2**20})
             for i in range(21)]
    r = report(samples=group, config={**CONFIG, "workers": 2})
    assert r["workers_cpu_s_per_1000_msgs"] == 0.1  # 0.05 + 0.03 + 0.01 + 0.01, not the bridge
    assert r["worker_peak_rss_mib"] == 300.0  # 100 + 90 + 50 + 60, the window's largest sum
    assert "workers (2)" in render_text(r)


def test_the_workers_counters_add_up_and_the_laggard_sets_the_lag() -> None:
    from ownercare.bench import combine_stats

    got = combine_stats([
        {"records": 10, "last_event_ts": 5000, "vehicles": 3, "state_bytes_mean": 100.0,
         "state_bytes_max": 150, "view_writer_pid": 11, "view_writer_waits": 2},
        {"records": 4, "last_event_ts": 0, "vehicles": 0, "state_bytes_mean": 0.0,
         "state_bytes_max": 0, "view_writer_pid": 12},  # owns no partition with records yet
        {"records": 6, "last_event_ts": 4000, "vehicles": 1, "state_bytes_mean": 300.0,
         "state_bytes_max": 300, "view_writer_pid": None, "view_writer_waits": 5},
    ])
    assert got == {"records": 20, "last_event_ts": 4000, "vehicles": 4, "state_bytes_mean": 150.0,
                   "state_bytes_max": 300, "view_writer_pids": [11, 12, None],
                   "view_writer_waits": 7, "workers": 3}


def overloaded() -> list[Sample]:
    """Publishing 1500 msg/s for 20 s while 1000 are processed, then catching up at 1000/s."""
    during = [Sample(t=1000.0 + i, sent=1500 * i, acked=1500 * i, processed=1000 * i, lag_s=0.5 * i,
                     rss_bytes={"worker": (100 + i) * 2**20}) for i in range(21)]
    after = [Sample(t=1020.0 + i, sent=30_000, acked=30_000,
                    processed=min(30_000, 20_000 + 1000 * i), lag_s=10.0,
                    rss_bytes={"worker": (300 - i) * 2**20}) for i in range(1, 11)]
    return during + after


def test_an_overloaded_run_reports_its_backlog_and_how_fast_it_was_worked_off() -> None:
    r = report(samples=overloaded(), window_start=1000.0, window_end=1020.0, drained_at=1030.0,
               worker_stats={"vehicles": 100, "view_writer_waits": 3})
    assert r["processed_msgs_per_s"] == 1000.0
    assert r["catch_up"] == {"backlog_msgs": 10_000, "seconds": 10.0, "msgs_per_s": 1000.0}
    # The backlog's memory peaks while it is worked off, after the publishing window.
    assert r["worker_peak_rss_mib"] == 299.0
    assert "the detectors waited for the views 3 times" in render_text(r)
    assert "backlog 10000 msgs at the end of publishing, worked off in 10.0 s at 1000.0 msg/s" \
        in render_text(r)


def test_a_backlog_never_worked_off_has_no_catch_up_time() -> None:
    r = report(samples=overloaded(), window_start=1000.0, window_end=1020.0, drained=False)
    assert r["catch_up"] == {"backlog_msgs": 10_000, "seconds": None, "msgs_per_s": None}
    assert r["kept_up"] is False
    assert "backlog 10000 msgs at the end of publishing, NOT worked off" in render_text(r)


def test_a_run_that_kept_up_has_nothing_to_catch_up() -> None:
    r = report(drained_at=1020.5)
    assert r["catch_up"] == {"backlog_msgs": 0, "seconds": 0.5, "msgs_per_s": None}
    assert "catch-up           no backlog at the end of publishing" in render_text(r)
