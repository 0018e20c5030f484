"""The drive-unit cooling detector on hand-built series (no brokers, no clock), plus its fault.

The series write the cooling physics out again (road load from speed and grade, the drive
unit's and the coolant's lags, the pack held warm by its thermal management, sensor noise,
lost messages) instead of reusing the detector's code, so the tests do not grade the detector
with itself. The healthy look-alikes are the ones that fool a detector watching the coolant
temperature, or its rise over ambient: heat waves, cold snaps (the pack heated to 22 °C),
motorway days, hills, fast charging right before a drive, cold starts, other car models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from diagnostics import alerting
from diagnostics.base import Assessment
from diagnostics.signals import AMBIENT, CURB_WEIGHT, PACK, SPEED
from diagnostics.thermal import COOLANT, DriveUnitCooling
from simulators.faults import (
    COOLANT_DERATE_C,
    FAULTS,
    coolant_pump_failure_ts,
    reference_coolant_c,
)
from simulators.fleet import Fleet
from vocab.eventtime import DAY_MS

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
START_MS = 1_767_571_200_000  # 2026-01-05T00:00Z
Message = tuple[int, str, dict[str, Any]]


def mild(ts: int) -> float:
    return 12.0 + 5.0 * math.sin(2 * math.pi * ((ts % DAY_MS) / DAY_MS - 0.46))


def heat_wave(ts: int) -> float:
    """Mild, then 36 °C afternoons from day 8 to day 16."""
    day = (ts - START_MS) / DAY_MS
    return mild(ts) + (20.0 if 8 <= day < 16 else 0.0)


def cold_snap(ts: int) -> float:
    """Mild, then -15 °C from day 8 to day 16 (the pack is heated to 22 °C meanwhile)."""
    day = (ts - START_MS) / DAY_MS
    return mild(ts) - (27.0 if 8 <= day < 16 else 0.0)


def series(days: float, *, ambient: Callable[[int], float] = mild, resistance: float = 0.6,
           onset_day: float = 2.0, growth_per_day: float = 0.0, mass_kg: float = 2000.0,
           cruise_kmh: Callable[[int, int], float] = lambda day, k: 60.0,
           grade: Callable[[int, int], float] = lambda day, k: 0.0,
           hill_period_min: float = 8.0, hill_phase: float = 0.0,
           drive_min: float = 40.0, interval_s: float = 60.0, seed: int = 1,
           lost: float = 0.0, drop_ambient: bool = False,
           fast_charge_before: Callable[[int, int], bool] = lambda day, k: False,
           repair_day: float | None = None,
           departures: Callable[[int], tuple[float, ...]] = lambda day: (7.5, 17.5),
           ) -> Iterator[Message]:
    """Two drives a day (07:30 and 17:30, or the hours ``departures`` gives; ``k`` = 0, 1..),
    ignition events, a report every ``interval_s`` while driving and every 30 min parked (no
    temperatures when parked)."""
    rng = np.random.default_rng(seed)
    pack = ambient(START_MS) + 12.0
    pack_ts = START_MS
    for day in range(int(days)):
        day_ms = START_MS + day * DAY_MS
        for k, depart_h in enumerate(departures(day)):
            depart = day_ms + int(depart_h * HOUR_MS)
            # Parked: the pack drifts back to ambient (8 h); parked reports carry no speed.
            for t in range(pack_ts + 30 * MINUTE_MS, depart, 30 * MINUTE_MS):
                yield t, "telemetry", {SPEED: 0.0, AMBIENT: round(ambient(t), 2)}
            pack += (ambient(depart) - pack) * (1 - math.exp(-(depart - pack_ts) / (8 * HOUR_MS)))
            if fast_charge_before(day, k):  # a DC session just ended: a hot pack
                pack = max(pack, ambient(depart) + 25.0)
                yield depart - MINUTE_MS, "telemetry", {
                    SPEED: 0.0, AMBIENT: round(ambient(depart), 2), PACK: round(pack, 2),
                    "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": True}
            yield depart, "event", {"type": "ignition", "state": "ON"}
            load, excess, t = 0.0, 0.0, depart
            end = depart + int(drive_min * MINUTE_MS)
            cruise, slope = cruise_kmh(day, k), grade(day, k)
            factor = 1.0 + growth_per_day * max(0.0, (t - START_MS) / DAY_MS - onset_day)
            if repair_day is not None and day >= repair_day:
                factor = 1.0  # a new pump
            while t < end:
                elapsed = t - depart
                dt = interval_s * 1000 if elapsed else 0
                ramp = min(1.0, (elapsed + 60_000) / 120_000)
                speed = max(0.0, cruise * ramp * (1 + 0.08 * rng.standard_normal()))
                v = speed / 3.6
                g = slope * math.sin(2 * math.pi * elapsed / (hill_period_min * MINUTE_MS)
                                     + hill_phase)
                power = abs(v * (mass_kg * 9.81 * (0.011 + g) + 0.372 * v * v)) / 1000
                load += (power - load) * (1 - math.exp(-dt / 240_000))
                rise = resistance * factor * load
                excess += (3.0 + rise - excess) * (1 - math.exp(-dt / 300_000))
                air = ambient(t)
                pack += (max(air + 12.0, 22.0) - pack) * (1 - math.exp(-dt / HOUR_MS))
                signals: dict[str, Any] = {
                    SPEED: round(speed, 1),
                    PACK: round(pack + 0.15 * rise + 0.3 * rng.standard_normal(), 2),
                    COOLANT: round(pack + 0.15 * rise + excess + 0.5 * rng.standard_normal(), 2),
                }
                if not drop_ambient:
                    signals[AMBIENT] = round(air + 0.2 * rng.standard_normal(), 2)
                if rng.random() >= lost:
                    yield t, "telemetry", signals
                t += int(interval_s * 1000)
            yield end, "event", {"type": "ignition", "state": "OFF"}
            pack_ts = end


def run(messages: Iterator[Message], detector: DriveUnitCooling | None = None
        ) -> tuple[DriveUnitCooling, dict[str, Any], list[tuple[int, Assessment]],
                   list[dict[str, Any]]]:
    """Feed a series through the detector and the alarm hygiene, like the pipeline does."""
    det = detector or DriveUnitCooling()
    state = det.new_state()
    alert_state = alerting.new_alert_state()
    assessments: list[tuple[int, Assessment]] = []
    alerts: list[dict[str, Any]] = []
    for ts, kind, payload in messages:
        if kind == "telemetry":
            _changed, assessment = det.update(state, ts, payload)
        else:
            _changed, assessment = det.on_event(state, ts, payload)
        if assessment is None:
            continue
        assessments.append((ts, assessment))
        alert = alerting.apply(alert_state, asset_kind="vehicle", asset_id="V",
                               alert_type="thermal", detector=det.name,
                               detector_version=det.version, assessment=assessment, ts_ms=ts)
        if alert is not None:
            alerts.append(alert)
    return det, state, assessments, alerts


def days_of(ts: int) -> float:
    return (ts - START_MS) / DAY_MS


def failure_day(resistance: float, onset_day: float, growth: float) -> float:
    """The failure the simulator's truth would give this pump (its analytic formula)."""
    return days_of(coolant_pump_failure_ts(START_MS + int(onset_day * DAY_MS), resistance,
                                           growth))


# ------------------------------------------------------------------ healthy look-alikes


HEALTHY_LOOKALIKES: dict[str, dict[str, Any]] = {
    "mild": {},
    "heat wave": {"ambient": heat_wave},
    "cold snap": {"ambient": cold_snap},
    # Every third day on the motorway at 130 km/h: ten times the town load.
    "motorway days": {"cruise_kmh": lambda day, k: 130.0 if day % 3 == 0 else 45.0},
    # Hilly routes on some days (a 3 % grade the speed does not show), a mountain week.
    "hills": {"grade": lambda day, k: 0.03 if (day % 5 == 1 or 20 <= day < 26) else 0.0},
    "fast charging before driving": {"fast_charge_before": lambda day, k: k == 0},
    "heavy car": {"mass_kg": 2400.0, "resistance": 0.7},
    "light car": {"mass_kg": 1600.0, "resistance": 0.45},
    "noise and gaps": {"lost": 0.1, "seed": 5},
    "5 min reports": {"interval_s": 300.0},
}


@pytest.mark.parametrize("name", sorted(HEALTHY_LOOKALIKES))
def test_healthy_cars_never_raise(name: str) -> None:
    _det, state, assessments, alerts = run(series(45, **HEALTHY_LOOKALIKES[name]))
    assert alerts == []
    assert not state["active"]
    decided = [a for _ts, a in assessments if a.abstain_reason is None]
    assert len(decided) >= 20  # it did assess, every day, and said "normal"
    assert all(not a.active for a in decided)


def winter(ts: int) -> float:
    """Around freezing all month (the pack is heated to 22 °C on every drive)."""
    return -1.5 + 3.0 * math.sin(2 * math.pi * ((ts % DAY_MS) / DAY_MS - 0.46))


# Town driving (about 2 kW of load) in winter, reported every 5 minutes, and on the first
# morning a hilly route whose 5-minute readings all fall where the road descends (hills every
# 5 min): the car barely works, the speed says it does, and that window reads a low rise per
# kW. Paired with the window after it, that one early low window used to tilt the trend like
# a failing pump's rise (a false alarm on a healthy car in the 5-minute back-test).
SPARSE_WINTER_DOWNHILL_START: dict[str, Any] = {
    "ambient": winter, "interval_s": 300.0, "drive_min": 50.0, "seed": 7, "resistance": 0.72,
    "cruise_kmh": lambda day, k: 32.0,
    "grade": lambda day, k: 0.015 if (day, k) == (0, 0) else 0.0,
    "hill_period_min": 5.0, "hill_phase": -math.pi / 2,
}


def test_sparse_winter_readings_with_one_low_window_do_not_raise() -> None:
    det, state, assessments, alerts = run(series(30, **SPARSE_WINTER_DOWNHILL_START))
    # The trap is there: the first window's sample is far below the car's own level.
    first, *rest = [h[1] for h in state["hist"]]
    assert first < 0.5 * float(np.median(rest))
    assert alerts == []
    assert not state["active"]
    decided = [a for _ts, a in assessments if a.abstain_reason is None]
    assert len(decided) >= 20
    assert all(not a.active for a in decided)


def test_the_look_alikes_do_fool_a_naive_detector() -> None:
    """The coolant's rise over ambient jumps on the look-alike days; the detector must not
    follow it (this test guards the series: if they lost their trap, the tests above would
    prove nothing)."""
    def rise_over_ambient(messages: Iterator[Message], day: int) -> float:
        values = [p[COOLANT] - p[AMBIENT] for ts, kind, p in messages
                  if kind == "telemetry" and COOLANT in p and int(days_of(ts)) == day]
        return float(np.median(values))
    base = rise_over_ambient(series(4), 3)
    assert rise_over_ambient(series(12, ambient=cold_snap), 10) > base + 5  # heated pack
    motorway = HEALTHY_LOOKALIKES["motorway days"]
    assert rise_over_ambient(series(4, **motorway), 3) > base + 10


def test_a_single_hilly_day_or_odd_drive_does_not_raise() -> None:
    # One day with a steep (6 %) hilly route in the middle of a month: the worst outlier.
    _det, _state, _assessments, alerts = run(series(
        30, grade=lambda day, k: 0.06 if day == 15 else 0.0))
    assert alerts == []


def weekend_away(day: int) -> tuple[float, ...]:
    """A commuter's first week: Friday night out (a window of its own), one drive on Saturday
    afternoon, two on Sunday, Monday's commute; windows of one drive each over the weekend."""
    return {4: (7.5, 17.5, 20.0), 5: (15.0,), 6: (13.5, 17.5), 7: (7.0, 17.0)}.get(day, (7.5, 17.5))


# Saturday's trip, both of Sunday's and Monday's drive to work on hilly roads (3 %): four
# hilly drives in a row fill three windows (Sat, Sun, Monday's first drive) within 17 h of
# the first flip, at the end of a history just long enough for a trend. Eval seed 4 raised
# this on a healthy car (thermal 1.1.0: two windows in a row were enough).
HILLY_WEEKEND: dict[str, Any] = {
    "resistance": 0.7, "departures": weekend_away, "drive_min": 35.0,
    "cruise_kmh": lambda day, k: 32.0, "hill_period_min": 10.0,
    "grade": lambda day, k: 0.03 if (day, k) in {(5, 0), (6, 0), (6, 1), (7, 0)} else 0.0,
}


@pytest.mark.parametrize("seed", [2, 5, 8])
def test_a_weekend_of_hilly_drives_early_in_the_history_does_not_raise(seed: int) -> None:
    _det, state, _assessments, alerts = run(series(45, seed=seed, **HILLY_WEEKEND))
    assert alerts == []
    assert not state["active"]
    # The look-alike is real: without the day's wait the two windows raise it.
    _det, _state, _assessments, alerts = run(series(45, seed=seed, **HILLY_WEEKEND),
                                             DriveUnitCooling(persistence_h=0))
    assert [a["status"] for a in alerts][:1] == ["open"]


# A car driven once a day (town speed) that spends days 3-6 in the hills (3 %), at the start
# of its history: a step of +0.45 °C/kW over seven windows reads as a fast pump with its
# failure possibly within critical_days. A pump keeps rising; the hills' step stays flat.
# Seeds 1-12 hold the trap in 1, 5, 6, 7 (tested here). Over seeds 13-40 the trap is in 12
# and one (25) is still raised on its 7th window: with so few windows a four-day hilly run
# can look like a pump's continuing rise; the rule lowers the risk, it cannot remove it.
ONCE_A_DAY_HILLY_FIRST_WEEK: dict[str, Any] = {
    "departures": lambda day: (17.5,), "cruise_kmh": lambda day, k: 32.0,
    "hill_period_min": 10.0, "grade": lambda day, k: 0.03 if 3 <= day <= 6 else 0.0,
}


@pytest.mark.parametrize("seed", [1, 5, 6, 7])
def test_a_hilly_week_early_in_a_once_a_day_history_is_not_urgent(seed: int) -> None:
    det, state, assessments, alerts = run(series(30, seed=seed, **ONCE_A_DAY_HILLY_FIRST_WEEK))
    assert alerts == []
    assert not state["active"]
    # The trap is there: the trend of the first windows puts the failure's early end within
    # critical_days, on fewer windows than min_samples; the newest windows do not rise.
    urgent_looking = [a for ts, a in assessments
                      if a.evidence.get("predicted_failure_earliest_ts") is not None
                      and a.evidence["predicted_failure_earliest_ts"] - ts
                      < det.critical_days * DAY_MS]
    assert urgent_looking
    assert all(a.evidence["recent_growth_per_day"] < 0.5 * a.evidence["c_per_kw_growth_per_day"]
               for a in urgent_looking)


# ------------------------------------------------------------------ the failing pump


@pytest.mark.parametrize(("resistance", "growth", "onset"), [
    (0.6, 0.1, 2.0), (0.45, 0.05, 1.0), (0.75, 0.15, 4.0)])
def test_a_failing_pump_is_raised_before_the_derate_and_escalates(
        resistance: float, growth: float, onset: float) -> None:
    fail = failure_day(resistance, onset, growth)
    _det, state, assessments, alerts = run(series(
        math.ceil(fail) + 2, resistance=resistance, growth_per_day=growth, onset_day=onset))
    opened = [a for a in alerts if a["status"] == "open"]
    assert opened
    assert len({a["id"] for a in alerts}) == 1
    first = days_of(opened[0]["first_seen"])
    assert onset < first < fail - 2  # a few days' notice at least
    severities = [a["severity"] for a in opened]
    assert severities[-1] == "critical"
    rank = {"info": 0, "warning": 1, "critical": 2}
    assert all(rank[b] >= rank[a] - 1 for a, b in zip(severities, severities[1:], strict=False))
    # The predicted failure converges on the truth: within 2.5 days in the last day (early on
    # it is late, by up to 5 days for the fastest pump: the trend still holds the days before
    # the onset).
    late = [a for ts, a in assessments if a.active and fail - 1.2 <= days_of(ts) < fail
            and a.predicted_failure_ts is not None]
    assert late
    for a in late:
        assert a.predicted_failure_ts is not None
        assert abs(days_of(a.predicted_failure_ts) - fail) < 2.5
    assert all(a.recommended_action for _ts, a in assessments if a.active)
    evidence = opened[-1]["evidence"]
    assert evidence["c_per_kw"] > resistance * 1.5
    assert evidence["reference_coolant_c"] >= COOLANT_DERATE_C - 3
    assert json.loads(json.dumps(evidence)) == evidence


def every_13_hours(day: int) -> tuple[float, ...]:
    """A drive every 13 h (shift work): each drive a window of its own, windows < 24 h apart."""
    hours = (7.5 + 13.0 * n for n in range(2 * day + 3))
    return tuple(h - 24.0 * day for h in hours if 24.0 * day <= h < 24.0 * (day + 1))


def test_a_pump_near_its_failure_is_raised_without_waiting_a_day() -> None:
    # The horizon set inside ``critical_days``: every window that would raise the alert has the
    # failure less than 3 days away, and the windows come 13 h apart. Waiting for a second
    # window, or for the windows to span a day, would cost the owner the little warning left.
    def first_raise(det: DriveUnitCooling) -> tuple[list[int], int]:
        _det, _state, assessments, alerts = run(series(
            math.ceil(fail) + 1, resistance=0.6, growth_per_day=0.15, onset_day=4.0,
            departures=every_13_hours), det)
        flips = [ts for ts, a in assessments if a.abstain_reason is None
                 and a.evidence["days_to_failure"] is not None
                 and a.evidence["days_to_failure"] <= 2.5]
        opened = [a for a in alerts if a["status"] == "open"]
        assert opened
        return flips, opened[0]["first_seen"]

    fail = failure_day(0.6, 4.0, 0.15)
    flips, raised = first_raise(DriveUnitCooling(horizon_days=2.5))
    assert len(flips) >= 2
    assert flips[1] - flips[0] < DAY_MS
    assert raised == flips[0]  # raised on the first: the failure could come before the next
    assert days_of(raised) < fail
    # Without the urgency (critical_days 0) the same windows wait for a second one a day on.
    flips, raised_later = first_raise(DriveUnitCooling(horizon_days=2.5, critical_days=0.0))
    assert raised_later - flips[0] >= DAY_MS


def once_a_day_then_parked(day: int) -> tuple[float, ...]:
    """One drive a day (17:30) for a week, then parked for three days (eval seed 5's car:
    seven windows in the 8.5 days between its pump's onset and the derate, then none for
    2.9 days)."""
    return (17.5,) if day <= 6 or day >= 10 else ()


@pytest.mark.parametrize(("resistance", "growth", "onset", "seed", "notice_days"), [
    (0.7, 0.14, 0.75, 1, 1.0), (0.7, 0.14, 0.75, 2, 1.0), (0.7, 0.14, 0.75, 3, 1.0),
    # The fastest pump the simulator draws (6.4 days): raised on the 7th window, just before.
    (0.8, 0.15, 0.5, 1, 0.0)])
def test_a_fast_pump_on_a_car_driven_once_a_day_is_raised_before_it_derates(
        resistance: float, growth: float, onset: float, seed: int, notice_days: float
) -> None:
    fail = failure_day(resistance, onset, growth)
    assert fail < 10  # it derates while the car is parked

    def first_alert(det: DriveUnitCooling) -> dict[str, Any]:
        _det, _state, _assessments, alerts = run(series(
            12, resistance=resistance, growth_per_day=growth, onset_day=onset, seed=seed,
            departures=once_a_day_then_parked), det)
        opened = [a for a in alerts if a["status"] == "open"]
        assert opened
        return opened[0]

    alert = first_alert(DriveUnitCooling())
    assert onset < days_of(alert["first_seen"]) < fail - notice_days
    assert alert["severity"] in ("warning", "critical")
    assert alert["evidence"]["samples"] < DriveUnitCooling().min_samples
    assert alert["evidence"]["predicted_failure_earliest_ts"] - alert["first_seen"] < 3 * DAY_MS
    # The trap: waiting for min_samples windows, the first alert comes after the derate.
    late = first_alert(DriveUnitCooling(urgent_min_samples=DriveUnitCooling().min_samples))
    assert days_of(late["first_seen"]) > fail


def test_a_failing_pump_on_a_hot_motorway_commuter_with_gaps() -> None:
    fail = failure_day(0.6, 3.0, 0.08)
    _det, _state, _assessments, alerts = run(series(
        math.ceil(fail), resistance=0.6, growth_per_day=0.08, onset_day=3.0, lost=0.1,
        ambient=heat_wave, cruise_kmh=lambda day, k: 120.0 if k else 50.0, seed=3))
    opened = [a for a in alerts if a["status"] == "open"]
    assert opened
    assert days_of(opened[0]["first_seen"]) < fail - 2


def test_a_repaired_pump_resolves_the_alert_once() -> None:
    _det, state, _assessments, alerts = run(series(40, growth_per_day=0.1, onset_day=2.0,
                                                   repair_day=14))
    assert [a["status"] for a in alerts].count("resolved") == 1
    assert alerts[-1]["status"] == "resolved"
    assert not state["active"]
    assert len({a["id"] for a in alerts}) == 1
    assert 14 < days_of(alerts[-1]["last_seen"]) < 30


def test_the_severity_follows_the_days_left() -> None:
    det = DriveUnitCooling()
    fail = failure_day(0.6, 1.0, 0.12)
    _d, _s, assessments, _a = run(series(math.ceil(fail), growth_per_day=0.12, onset_day=1.0))
    for ts, a in assessments:
        if not a.active or a.abstain_reason is not None:
            continue
        left = a.evidence["days_to_failure"]
        if left is None:
            continue
        expected = ("critical" if left < det.critical_days else
                    "warning" if left < det.warning_days else "info")
        assert a.severity == expected, (days_of(ts), left, a.severity)


# ------------------------------------------------------------------ abstaining


def test_no_ambient_means_no_reading_and_an_abstention() -> None:
    _det, state, assessments, alerts = run(series(20, drop_ambient=True, growth_per_day=0.15))
    assert alerts == []
    assert state["hist"] == []
    reasons = [a.abstain_reason for _ts, a in assessments]
    assert reasons
    assert all(r is not None for r in reasons)
    assert "ambient" in str(reasons[0])


def test_short_drives_are_not_enough_to_judge() -> None:
    # 6 min drives: the loop never settles after the warm-up, so no sample, only abstentions
    # (and a pump failing fast is not raised from warm-up readings).
    _det, state, assessments, alerts = run(series(20, drive_min=6.0, growth_per_day=0.15))
    assert alerts == []
    assert state["hist"] == []
    assert all(a.abstain_reason is not None for _ts, a in assessments)


def test_few_samples_abstain_with_the_reason() -> None:
    _det, _state, assessments, _alerts = run(series(3))
    assert assessments
    assert all(a.abstain_reason is not None for _ts, a in assessments)
    assert "for a trend" in str(assessments[0][1].abstain_reason)


def test_staleness_is_reported_once_per_silence() -> None:
    det = DriveUnitCooling()
    state = det.new_state()
    messages = list(series(8))
    for ts, kind, p in messages:
        (det.update if kind == "telemetry" else det.on_event)(state, ts, p)
    last = messages[-1][0]
    stale = [det.update(state, last + h * HOUR_MS, {SPEED: 0.0, AMBIENT: 5.0})[1]
             for h in range(1, 24 * 10)]
    flagged = [a for a in stale if a is not None]
    assert len(flagged) == 1
    assert flagged[0].abstain_reason is not None
    assert "7.0" in flagged[0].abstain_reason or "days" in flagged[0].abstain_reason


# ------------------------------------------------------------------ state and robustness


def test_state_is_small_json_and_replays_change_nothing() -> None:
    det, state, _assessments, _alerts = run(series(60, growth_per_day=0.05))
    text = json.dumps(state)
    assert len(text) < 4096
    assert len(state["hist"]) <= det.max_history
    before = json.dumps(state, sort_keys=True)
    old = START_MS + 30 * DAY_MS  # a replayed, older message
    changed, assessment = det.update(state, old, {SPEED: 60.0, AMBIENT: 10.0, PACK: 30.0,
                                                  COOLANT: 40.0})
    assert (changed, assessment) == (False, None)
    assert json.dumps(state, sort_keys=True) == before


@pytest.mark.parametrize("junk", [
    {SPEED: "fast", COOLANT: float("nan")}, {SPEED: True, PACK: None}, {SPEED: -5.0},
    {SPEED: 80.0, COOLANT: "hot", PACK: 30.0, AMBIENT: 10.0}])
def test_malformed_values_are_ignored(junk: dict[str, Any]) -> None:
    det = DriveUnitCooling()
    state = det.new_state()
    det.on_event(state, START_MS, {"type": "ignition", "state": "ON"})
    for i in range(1, 40):
        det.update(state, START_MS + i * MINUTE_MS, junk)
    assert state["last_reading"] is None


def test_bad_parameters_are_rejected_with_a_reason() -> None:
    with pytest.raises(ValueError, match="min_samples"):
        DriveUnitCooling(min_samples=2)
    with pytest.raises(ValueError, match="limit_c"):
        DriveUnitCooling(limit_c=40.0)
    with pytest.raises(ValueError, match="persistence"):
        DriveUnitCooling(persistence=0)
    with pytest.raises(ValueError, match="persistence_h"):
        DriveUnitCooling(persistence_h=-1.0)
    with pytest.raises(ValueError, match="urgent_min_samples"):
        DriveUnitCooling(urgent_min_samples=9)
    with pytest.raises(ValueError, match="urgent_min_samples"):
        DriveUnitCooling(urgent_min_samples=2)
    with pytest.raises(ValueError, match="urgent_recent_share"):
        DriveUnitCooling(urgent_recent_share=1.5)


# ------------------------------------------------------------------ the simulated fault


def test_fault_truth_matches_the_cooling_model() -> None:
    assert FAULTS["coolant_pump"].alert_type == "thermal"
    fleet = Fleet(9, 0, seed=2, faults={"coolant_pump": 3})
    truth = [t for t in fleet.truth() if t["fault"] == "coolant_pump"]
    assert len(truth) == 3
    for t in truth:
        r, g = t["params"]["resistance_c_per_kw"], t["params"]["growth_per_day"]
        days = (t["failure_ts"] - t["onset_ts"]) / DAY_MS
        # At failure the rise has grown by 1 + g * days: the reference coolant is at the limit.
        base = reference_coolant_c(0.0)
        assert base + (reference_coolant_c(r) - base) * (1 + g * days) == pytest.approx(
            COOLANT_DERATE_C, abs=0.01)
        assert 0 <= (t["onset_ts"] - fleet.start_ms) / DAY_MS <= 5


def _by_vin(fleet: Fleet, days: float) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for _ts, topic, payload in fleet.messages(fleet.start_ms + int(days * DAY_MS)):
        out.setdefault(topic.split("/")[1], []).append(payload)
    return out


def test_the_fault_leaves_every_other_car_unchanged_and_heats_its_own() -> None:
    healthy = _by_vin(Fleet(8, 0, seed=4), 12)
    faulty_fleet = Fleet(8, 0, seed=4, faults={"coolant_pump": 1})
    vin = faulty_fleet.truth()[0]["vin"]
    faulty = _by_vin(faulty_fleet, 12)
    assert {v: m for v, m in faulty.items() if v != vin} == \
        {v: m for v, m in healthy.items() if v in faulty and v != vin}
    # The faulty car's coolant runs ever hotter above its pack at the same load.
    late = [orjson.loads(p) for p in faulty[vin][-600:]]
    rises = [m["signals"][COOLANT] - m["signals"][PACK] for m in late
             if COOLANT in m.get("signals", {}) and PACK in m["signals"]]
    assert rises
    assert max(rises) > 8.0



def daily_then_parked_three_days(day: int) -> tuple[float, ...]:
    """One drive a day (17:30) for six days, parked three days, then one more drive (eval
    seed 6's car: its seventh window came two days after the sixth, and the newest half of
    the windows' time span held one point, whose "growth" was 0)."""
    return (17.5,) if day <= 5 or day == 9 else ()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fast_pump_whose_last_window_comes_after_days_parked_is_raised(seed: int) -> None:
    resistance, growth, onset = 0.7, 0.13, 1.0
    fail = failure_day(resistance, onset, growth)
    _det, _state, assessments, alerts = run(series(
        12, resistance=resistance, growth_per_day=growth, onset_day=onset, seed=seed,
        departures=daily_then_parked_three_days))
    opened = [a for a in alerts if a["status"] == "open"]
    assert opened
    assert days_of(opened[0]["first_seen"]) < fail
    # The trap: the newest half of the time span holds one window; the growth is measured
    # on the newest three windows, and it rises.
    urgent = [a for _ts, a in assessments if a.evidence.get("recent_growth_per_day")]
    assert urgent
    assert urgent[0].evidence["samples"] == 7
    assert urgent[0].evidence["recent_growth_per_day"] > 0.5 * urgent[0].evidence[
        "c_per_kw_growth_per_day"]


@pytest.mark.parametrize("seed", [1, 5, 9])
def test_hilly_days_around_days_parked_are_not_urgent(seed: int) -> None:
    """The look-alike: the same driving, a healthy pump, the last two drives before the car
    is parked and the first one after it on hilly roads (3 %): the newest three windows are
    a step, not a rise. Measured on the newest three windows alone, these seeds read as an
    urgent rise; the newest window is not above the one before it, so they are not."""
    _det, state, assessments, alerts = run(series(
        16, seed=seed, departures=lambda day: (17.5,) if day <= 5 or day >= 9 else (),
        cruise_kmh=lambda day, k: 32.0, hill_period_min=10.0,
        grade=lambda day, k: 0.03 if day in (4, 5, 9) else 0.0))
    assert alerts == []
    assert not state["active"]
    # The trap is there: on the seventh window the trend puts the failure's early end within
    # critical_days.
    assert any(a.evidence.get("recent_growth_per_day") is not None for _ts, a in assessments)


def reporting_weight(messages: Iterator[Message], kg: float) -> Iterator[Message]:
    """The series with the car's curb weight in its first telemetry (as a car reports it when
    it wakes up)."""
    told = False
    for ts, kind, body in messages:
        if kind == "telemetry" and not told:
            body, told = {**body, CURB_WEIGHT: round(kg)}, True
        yield ts, kind, body


@pytest.mark.parametrize("mass_kg", [1600.0, 1700.0])
def test_a_light_car_that_reports_its_weight_is_judged_at_its_own_load(mass_kg: float) -> None:
    resistance, growth, onset = 0.6, 0.1, 2.0
    fail = failure_day(resistance, onset, growth)

    def alerts_of(messages: Iterator[Message]) -> list[dict[str, Any]]:
        _det, _state, _assessments, alerts = run(messages)
        return [a for a in alerts if a["status"] == "open"]

    def pump() -> Iterator[Message]:
        return series(math.ceil(fail) + 2, resistance=resistance, growth_per_day=growth,
                      onset_day=onset, mass_kg=mass_kg)

    def warned(opened: list[dict[str, Any]]) -> float:
        return min(days_of(a["last_seen"]) for a in opened if a["severity"] != "info")

    unknown, known = alerts_of(pump()), alerts_of(reporting_weight(pump(), mass_kg))
    assert onset < days_of(known[0]["first_seen"]) < fail - 2
    # Read as a 2 000 kg car, its load is overestimated and its pump's rise per kW looks
    # smaller than it is: the failure is predicted days late and the warning comes later.
    error_known = abs(days_of(known[0]["predicted_failure_ts"]) - fail)
    error_unknown = abs(days_of(unknown[0]["predicted_failure_ts"]) - fail)
    assert error_known < 2.0 < error_unknown
    assert warned(known) < warned(unknown)


@pytest.mark.parametrize("mass_kg", [1300.0, 2400.0])
def test_a_healthy_car_that_reports_its_weight_never_raises(mass_kg: float) -> None:
    _det, state, _assessments, alerts = run(reporting_weight(
        series(45, mass_kg=mass_kg, resistance=0.55), mass_kg))
    assert state["mass"] == mass_kg
    assert alerts == []


def test_an_implausible_curb_weight_is_not_taken() -> None:
    det = DriveUnitCooling()
    state = det.new_state()
    det.update(state, START_MS, {SPEED: 0.0, CURB_WEIGHT: 17})  # tonnes, not kg
    assert state["mass"] is None
    assert det.road_load_kw(100.0, None) == det.road_load_kw(100.0, det.mass_kg)
