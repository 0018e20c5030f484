"""The weak 12 V battery detector on synthetic series (no brokers, no clock)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from diagnostics import alerting
from diagnostics.base import Assessment
from diagnostics.battery12v import WeakBattery12V
from tests.diagnostics.battery_series import (
    COLD_SNAP,
    DAY_MS,
    HOUR_MS,
    MILD,
    MINUTE_MS,
    START_MS,
    Message,
    daily_cycle,
    failure_day,
    messages,
    replaced,
    weakening,
)

EVIDENCE_KEYS = {
    "latest_v25", "samples", "window_days", "slope_v_per_day", "slope_stderr", "failure_v25",
    "predicted_failure_ts", "predicted_failure_earliest_ts", "predicted_failure_latest_ts",
    "days_to_failure", "temp_coeff_v_per_c", "last_ambient_c",
}
KEY = "Vehicle.LowVoltageSystemState"
VOLTS = "Vehicle.LowVoltageBattery.CurrentVoltage"
AMPS = "Vehicle.LowVoltageBattery.CurrentCurrent"
AIR = "Vehicle.Exterior.AirTemperature"


class Run:
    """Feeds messages through the detector and the alarm hygiene, like the worker does."""

    def __init__(self, detector: WeakBattery12V | None = None) -> None:
        self.detector = detector or WeakBattery12V()
        self.state = self.detector.new_state()
        self.alert_state = alerting.new_alert_state()
        self.assessments: list[tuple[int, Assessment]] = []
        self.alerts: list[dict[str, Any]] = []

    def feed(self, stream: Iterable[Message]) -> Run:
        for ts, kind, payload in stream:
            if kind == "telemetry":
                _, assessment = self.detector.update(self.state, ts, payload)
            else:
                _, assessment = self.detector.on_event(self.state, ts, payload)
            if assessment is None:
                continue
            self.assessments.append((ts, assessment))
            alert = alerting.apply(
                self.alert_state, asset_kind="vehicle", asset_id="V", alert_type="weak_12v_battery",
                detector=self.detector.name, detector_version=self.detector.version,
                assessment=assessment, ts_ms=ts)
            if alert is not None:
                self.alerts.append(alert)
        return self

    @property
    def opened(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["status"] == "open"]

    @property
    def abstentions(self) -> list[str]:
        return [a.abstain_reason for _, a in self.assessments if a.abstain_reason]


def battery(seed: int) -> tuple[float, float]:
    """A healthy starting V25 and a fault onset day, drawn like the fleet simulator does."""
    rng = np.random.default_rng(1000 + seed)
    return float(rng.uniform(12.55, 12.80)), float(rng.uniform(0.0, 2.0))


# ------------------------------------------------------------------------- weak batteries


@pytest.mark.parametrize("rate", [0.02, 0.035, 0.05, 0.08])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weakening_battery_is_flagged_days_before_it_fails(rate: float, seed: int) -> None:
    v0, onset = battery(seed)
    fail_day = failure_day(v0, rate, onset)
    fail_ts = START_MS + int(fail_day * DAY_MS)
    run = Run().feed(messages(fail_day + 2, weakening(v0, rate, onset), seed=seed))

    assert run.opened, "no alert before failure"
    first = run.opened[0]
    lead_days = (fail_ts - first["first_seen"]) / DAY_MS
    assert lead_days >= 2, f"alert only {lead_days:.1f} days before failure"
    assert len({a["id"] for a in run.alerts}) == 1, "the alert flapped"
    assert run.alerts[-1]["status"] == "open"
    assert first["predicted_failure_ts"] is not None

    # Early estimates are rough (the window still holds the flat days before the onset); as
    # evidence accumulates the prediction converges on the truth.
    before = [a for a in run.opened if a["last_seen"] < fail_ts]
    late = [a for a in before if fail_ts - a["last_seen"] <= 5 * DAY_MS]
    assert late, "the alert should be updated in the last days before failure"
    errors = [abs(a["predicted_failure_ts"] - fail_ts) / DAY_MS for a in late]
    assert max(errors) <= 1.5, errors
    final = before[-1]
    ev = final["evidence"]
    assert abs(final["predicted_failure_ts"] - fail_ts) / DAY_MS <= 1.0
    assert ev["slope_v_per_day"] == pytest.approx(-rate, abs=0.01)
    assert (ev["predicted_failure_earliest_ts"] <= final["predicted_failure_ts"]
            <= ev["predicted_failure_latest_ts"])
    assert final["severity"] == "critical"  # under 3 days to go
    assert "unable to start" in final["recommended_action"] or "today" in \
        final["recommended_action"]


def test_evidence_is_complete_plain_json() -> None:
    v0, onset = battery(4)
    run = Run().feed(messages(20, weakening(v0, 0.05, onset), seed=4))
    alert = next(a for a in run.opened if a["evidence"]["days_to_failure"] > 2)
    ev = alert["evidence"]
    assert set(ev) >= EVIDENCE_KEYS
    assert json.loads(json.dumps(ev, allow_nan=False)) == ev
    assert all(v is None or (isinstance(v, int | float) and math.isfinite(v))
               for v in ev.values())
    assert ev["failure_v25"] == 11.9
    assert ev["temp_coeff_v_per_c"] == 0.0025
    assert ev["samples"] >= 3
    assert ev["window_days"] >= 2
    assert ev["predicted_failure_ts"] == alert["predicted_failure_ts"]
    assert ev["days_to_failure"] == pytest.approx(
        (ev["predicted_failure_ts"] - ev["last_sample_ts"]) / DAY_MS, abs=0.01)
    assert "about" in alert["recommended_action"]
    assert "days" in alert["recommended_action"]


def test_severity_escalates_as_failure_approaches() -> None:
    v0, onset = battery(5)
    fail_ts = START_MS + int(failure_day(v0, 0.03, onset) * DAY_MS)
    run = Run().feed(messages(failure_day(v0, 0.03, onset), weakening(v0, 0.03, onset), seed=5))
    severities = [a["severity"] for a in run.opened]
    assert severities[0] == "info"  # raised about a month ahead
    assert severities[-1] == "critical"
    first_warning = next(a for a in run.opened if a["severity"] == "warning")
    first_critical = next(a for a in run.opened if a["severity"] == "critical")
    assert 8 <= (fail_ts - first_warning["last_seen"]) / DAY_MS <= 12
    assert 1.5 <= (fail_ts - first_critical["last_seen"]) / DAY_MS <= 4


def test_ignition_events_work_as_well_as_the_key_state_signal() -> None:
    v0, onset = battery(6)
    fail_ts = START_MS + int(failure_day(v0, 0.05, onset) * DAY_MS)
    days = failure_day(v0, 0.05, onset)
    with_events = Run().feed(messages(days, weakening(v0, 0.05, onset), seed=6,
                                      ignition_events=True, key_in_telemetry=False))
    with_signal = Run().feed(messages(days, weakening(v0, 0.05, onset), seed=6))
    for run in (with_events, with_signal):
        assert run.opened
        assert fail_ts - run.opened[0]["first_seen"] >= 2 * DAY_MS


def test_failure_already_reached_is_critical_and_says_so_today() -> None:
    v0, onset = battery(7)
    days = failure_day(v0, 0.06, onset) + 3  # the car died and keeps reporting parked
    run = Run().feed(messages(days, weakening(v0, 0.06, onset), seed=7))
    last = run.opened[-1]
    assert last["severity"] == "critical"
    assert last["evidence"]["days_to_failure"] == 0
    assert "today" in last["recommended_action"]


# ------------------------------------------------------------------------- healthy batteries


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("scenario", ["mild", "cold_snap", "week_park", "cold_week_park"])
def test_healthy_battery_stays_quiet(scenario: str, seed: int) -> None:
    v0, _ = battery(100 + seed)
    ambient = COLD_SNAP if scenario.startswith("cold") else MILD
    parked = set(range(7, 14)) if scenario.endswith("week_park") else set()
    run = Run().feed(messages(45, lambda _d: v0, ambient, seed=seed, parked_days=parked))
    assert run.alerts == []
    evaluated = [a for _, a in run.assessments if a.abstain_reason is None]
    assert len(evaluated) >= 40, "the detector should keep evaluating resting samples"
    assert not any(a.active for a in evaluated)
    slopes = [a.evidence["slope_v_per_day"] for a in evaluated]
    assert max(abs(s) for s in slopes) < 0.01, slopes


def test_cold_snap_moves_the_raw_voltage_but_not_v25() -> None:
    """Without temperature compensation the cold snap looks like a battery losing charge."""

    def run(detector: WeakBattery12V) -> tuple[float, list[float]]:
        run = Run(detector).feed(messages(14, lambda _d: 12.60, COLD_SNAP, seed=1))
        hist = run.state["hist"]
        warm = [v for ts, v in hist if ts < START_MS + 5 * DAY_MS]
        cold = [v for ts, v in hist if ts > START_MS + 10.5 * DAY_MS]
        # Slopes evaluated while the air cools and stays cold (days 6-14).
        slopes = [a.evidence["slope_v_per_day"] for ts, a in run.assessments
                  if a.abstain_reason is None and ts > START_MS + 6 * DAY_MS]
        return float(np.mean(cold) - np.mean(warm)), slopes

    # 30 °C colder: -75 mV on the raw resting voltage, and a downward trend while it cools.
    raw_shift, raw_slopes = run(WeakBattery12V(temp_coeff_v_per_c=0.0))
    assert raw_shift == pytest.approx(-0.075, abs=0.015)
    assert min(raw_slopes) < -0.007
    shift, slopes = run(WeakBattery12V())
    assert abs(shift) < 0.01
    assert max(abs(s) for s in slopes) < 0.003


def test_nights_colder_than_days_do_not_make_samples_disagree() -> None:
    """Day-time and overnight samples land at different temperatures; compensated they agree."""
    run = Run().feed(messages(20, lambda _d: 12.65, daily_cycle(lambda _d: -5.0, 8.0), seed=2))
    v25 = [h[1] for h in run.state["hist"]]
    assert len(v25) >= 15
    assert max(v25) - min(v25) < 0.04
    assert np.median(v25) == pytest.approx(12.65, abs=0.01)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compensation_uses_the_lagging_battery_temperature_not_the_air(seed: int) -> None:
    """Air flipping between +12 °C and -12 °C twice a day: the battery follows it with a 3 h
    lag, so compensating each reading with the instantaneous air temperature would scatter the
    samples by about 50 mV; with the lag-filtered battery temperature they agree."""

    def square(day: float) -> float:
        return 12.0 if day % 1 < 0.5 else -12.0

    run = Run().feed(messages(12, lambda _d: 12.65, square, seed=seed))
    v25 = [h[1] for h in run.state["hist"]]
    assert len(v25) >= 15
    assert max(v25) - min(v25) < 0.035
    assert run.alerts == []


# ------------------------------------------------------------------------- abstention


def test_abstains_once_when_the_data_goes_stale() -> None:
    run = Run().feed(messages(25, lambda _d: 12.65, seed=2, offline_days=set(range(5, 15))))
    stale = [r for r in run.abstentions if "no resting 12 V sample for" in r]
    assert len(stale) == 1, run.abstentions
    assert run.alerts == []
    # After the silence the trend is evaluated again.
    assert run.assessments[-1][1].abstain_reason is None


def test_stale_data_neither_raises_nor_clears_an_open_alert() -> None:
    v0, onset = battery(8)
    days = failure_day(v0, 0.04, onset) - 4
    offline = set(range(int(days) + 1, int(days) + 10))
    run = Run().feed(messages(days + 10.5, weakening(v0, 0.04, onset), seed=8,
                              offline_days=offline))
    assert any("no resting 12 V sample for" in r for r in run.abstentions)
    assert [a["status"] for a in run.alerts].count("resolved") == 0
    assert len({a["id"] for a in run.alerts}) == 1


def test_too_few_samples_is_an_abstention_not_an_alert() -> None:
    run = Run().feed(messages(1.5, lambda _d: 11.95, seed=3))  # already very weak
    assert run.alerts == []
    assert run.abstentions
    assert all("resting samples over" in r for r in run.abstentions)
    assert all(not a.active for _, a in run.assessments)


@pytest.mark.parametrize(("options", "why"), [
    ({"with_ambient": False}, "ambient temperature"),
    ({"key_in_telemetry": False}, "key state"),
])
def test_abstains_with_a_reason_when_signals_are_missing(options: dict[str, Any], why: str
                                                         ) -> None:
    run = Run().feed(messages(10, weakening(12.5, 0.08, 0.0), seed=3, **options))
    assert run.alerts == []
    assert len(run.abstentions) == 1, run.abstentions
    assert why in run.abstentions[0], run.abstentions


# ------------------------------------------------------------------------- hysteresis


def test_battery_replacement_resolves_the_alert() -> None:
    v0, onset = battery(9)
    swap_day = onset + (v0 - 12.15) / 0.06  # replaced when V25 is down to 12.15 V
    run = Run().feed(messages(30, replaced(weakening(v0, 0.06, onset), swap_day), seed=9))
    statuses = [a["status"] for a in run.alerts]
    assert statuses[0] == "open"
    assert statuses[-1] == "resolved"
    assert statuses.count("resolved") == 1, "the alert flapped after the replacement"
    assert len({a["id"] for a in run.alerts}) == 1
    resolved = run.alerts[-1]
    assert resolved["last_seen"] - (START_MS + swap_day * DAY_MS) < 1.5 * DAY_MS
    assert resolved["evidence"]["latest_v25"] > 12.6
    assert resolved["severity"] == run.opened[-1]["severity"]  # the severity it reached
    # The new battery is then evaluated as healthy, quietly.
    assert not run.assessments[-1][1].active


def park(detector: WeakBattery12V, state: dict[str, Any], t0: int, v25: float,
         hours: float = 11.0, odd_reading: float | None = None) -> list[Assessment]:
    """One parking period at 25 °C whose resting voltage is exactly ``v25``, read every 30 min
    (``odd_reading`` replaces the reading 5 h after key-off)."""
    out = []
    _, a = detector.update(state, t0, {KEY: "OFF", VOLTS: v25 + 0.35, AIR: 25.0})
    t = t0
    while t + HOUR_MS // 2 < t0 + hours * HOUR_MS:
        t += HOUR_MS // 2
        surface = 0.35 * math.exp(-(t - t0) / HOUR_MS)
        volts = round(v25 + surface, 4)
        if odd_reading is not None and t == t0 + 5 * HOUR_MS:
            volts = odd_reading
        _, a = detector.update(state, t, {KEY: "OFF", VOLTS: volts, AIR: 25.0})
        out += [a] if a else []
    _, a = detector.update(state, t + HOUR_MS // 2, {KEY: "ON", VOLTS: 14.1, AIR: 25.0})
    return out + ([a] if a else [])


def days_of_parks(detector: WeakBattery12V, state: dict[str, Any], v25s: list[float],
                  first_day: int = 0) -> list[Assessment]:
    out = []
    for i, v in enumerate(v25s):
        out += park(detector, state, START_MS + (first_day + i) * DAY_MS, v)
    return out


def test_one_resting_sample_per_overnight_park_is_the_compensated_median() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    (assessment,) = park(detector, state, START_MS, 12.61)
    assert state["hist"] == [[pytest.approx(state["hist"][0][0]), pytest.approx(12.61, abs=1e-3)]]
    # Sampled between 4 h and 10 h after key-off.
    assert 4 * HOUR_MS <= state["hist"][0][0] - START_MS <= 10 * HOUR_MS
    assert assessment.abstain_reason
    assert "1 resting samples" in assessment.abstain_reason


def test_low_but_flat_battery_is_raised_as_info_and_clears_with_hysteresis() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    low = days_of_parks(detector, state, [12.15, 12.15, 12.15])
    assert low[-1].active
    assert low[-1].severity == "info"
    assert low[-1].predicted_failure_ts is None
    assert "low" in low[-1].title
    assert "test" in low[-1].recommended_action
    # Recovering a little is not enough: within warn_v25 + clear_margin_v it stays raised.
    (mid,) = days_of_parks(detector, state, [12.28], first_day=3)
    assert mid.active
    (high,) = days_of_parks(detector, state, [12.35], first_day=4)
    assert not high.active


def test_below_critical_voltage_is_critical_even_without_a_trend() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    out = days_of_parks(detector, state, [11.98, 11.97, 11.98])
    assert out[-1].active
    assert out[-1].severity == "critical"


def test_a_noisy_downward_fit_that_is_not_significant_does_not_raise() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    # Least-squares slope -30 mV/day (failure "in 20 days"), but the scatter is so large that
    # the decline is not significant: no alert.
    wobble = [0.12, -0.12, 0.12, -0.12, 0.12]
    out = days_of_parks(detector, state, [round(12.50 - 0.03 * i + w, 4)
                                          for i, w in enumerate(wobble)])
    last = out[-1]
    assert last.evidence["slope_v_per_day"] < -0.01
    assert last.evidence["slope_v_per_day"] + 2 * last.evidence["slope_stderr"] > 0
    assert not last.active
    assert last.evidence["predicted_failure_ts"] is None


def test_three_samples_need_more_than_two_standard_errors() -> None:
    """With one degree of freedom the residual scatter says little: Student-t, not 2 sigma."""
    detector = WeakBattery12V()
    state = detector.new_state()
    out = days_of_parks(detector, state, [12.60, 12.546, 12.52])
    last = out[-1]
    assert last.evidence["t_critical"] > 10
    assert last.evidence["slope_v_per_day"] + 2 * last.evidence["slope_stderr"] < 0
    assert not last.active


def test_one_odd_reading_does_not_move_the_sample() -> None:
    """The median shrugs off a single reading taken while something woke up and drew current."""
    detector = WeakBattery12V()
    state = detector.new_state()
    park(detector, state, START_MS, 12.61, odd_reading=11.8)
    assert state["hist"][0][1] == pytest.approx(12.61, abs=1e-3)


def test_short_park_sample_is_corrected_for_the_remaining_surface_charge() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    park(detector, state, START_MS, 12.61, hours=4.6)  # readings at 4.0 h and 4.5 h only
    assert len(state["hist"]) == 1
    assert state["hist"][0][1] == pytest.approx(12.61, abs=1e-3)


@pytest.mark.parametrize(("rate", "severity"), [(0.02, "info"), (0.05, "warning"),
                                                (0.12, "critical")])
def test_severity_follows_the_days_to_failure(rate: float, severity: str) -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    # Seven clean daily samples ending at 12.20 V: 15, 6 and 2.5 days from 11.9 V.
    out = days_of_parks(detector, state, [round(12.20 + rate * (6 - i), 4) for i in range(7)])
    last = out[-1]
    assert last.active
    assert last.severity == severity
    assert last.evidence["days_to_failure"] == pytest.approx(0.30 / rate, rel=0.05)


def test_slow_decline_beyond_the_horizon_is_not_raised() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    # -12 mV/day from 12.7 V: significant, but 11.9 V is 60+ days away.
    out = days_of_parks(detector, state, [round(12.70 - 0.012 * i, 4) for i in range(8)])
    assert out[-1].evidence["slope_v_per_day"] == pytest.approx(-0.012, abs=1e-3)
    assert out[-1].evidence["days_to_failure"] > 30
    assert not out[-1].active


# ------------------------------------------------------------------------- message handling


def test_top_up_while_parked_restarts_the_rest_clock_and_is_not_a_key_on() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    t0 = START_MS
    detector.update(state, t0, {KEY: "OFF", VOLTS: 12.9, AIR: 10.0})
    assert state["rest"] == t0
    t1 = t0 + 3 * HOUR_MS
    changed, _ = detector.update(state, t1, {KEY: "OFF", VOLTS: 12.6, AMPS: 5.0})
    assert changed
    assert state["rest"] == t1
    assert state["on"] is False
    t2 = t1 + HOUR_MS // 2
    detector.update(state, t2, {KEY: "OFF", VOLTS: 14.0})
    assert state["rest"] == t2
    assert state["on"] is False
    # Within the rest delay after the top-up nothing is sampled ...
    detector.update(state, t2 + 3 * HOUR_MS, {KEY: "OFF", VOLTS: 12.7, AIR: 10.0})
    assert state["win"] == []
    # ... and from four hours on it is.
    detector.update(state, t2 + 4 * HOUR_MS, {KEY: "OFF", VOLTS: 12.7, AIR: 10.0})
    assert len(state["win"]) == 1


RUNNING = "Vehicle.Powertrain.CombustionEngine.IsRunning"
RPM = "Vehicle.Powertrain.CombustionEngine.Speed"


@pytest.mark.parametrize("engine", [{RUNNING: True}, {RPM: 800.0}])
def test_a_running_engine_is_the_car_in_use_whatever_the_key_state_says(
        engine: dict[str, Any]) -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    park(detector, state, START_MS - DAY_MS, 12.65)
    t0 = START_MS
    detector.update(state, t0, {KEY: "OFF", VOLTS: 12.65, AIR: 25.0})
    # Hours later the engine runs (remote start, a telematics unit that misreads the key, a
    # car reporting no key at all): the alternator's 14.3 V is no resting reading, and the
    # rest clock starts again when the engine stops.
    for k in range(6):
        ts = t0 + 5 * HOUR_MS + k * 5 * MINUTE_MS
        detector.update(state, ts, {KEY: "OFF", VOLTS: 14.3, AIR: 25.0, **engine})
        assert state["on"] is True
        assert state["win"] == []
    stop = t0 + 6 * HOUR_MS
    detector.update(state, stop, {KEY: "OFF", VOLTS: 12.9, AIR: 25.0, RUNNING: False})
    assert state["on"] is False
    assert state["rest"] == stop
    assert [h[1] for h in state["hist"]] == [pytest.approx(12.65, abs=1e-3)]


def test_a_stop_start_pause_dip_is_not_a_weak_battery() -> None:
    run = Run()
    for day in range(8):
        run.feed(iter([(ts, "telemetry", p) for ts, p in _commute_with_pauses(day)]))
    assert run.opened == []
    assert all(h[1] == pytest.approx(12.65, abs=0.01) for h in run.state["hist"])


def _commute_with_pauses(day: int) -> list[tuple[int, dict[str, Any]]]:
    """A combustion car: a 30-minute drive with stop-start pauses (the battery dips to 11.9 V
    under the load while the engine is stopped, key ON), then a night parked at 12.65 V."""
    t0 = START_MS + day * DAY_MS + 8 * HOUR_MS
    out: list[tuple[int, dict[str, Any]]] = []
    for k in range(30):
        paused = k % 6 == 5
        out.append((t0 + k * MINUTE_MS, {KEY: "ON", RUNNING: not paused, AIR: 25.0,
                                         VOLTS: 11.9 if paused else 14.2,
                                         AMPS: -25.0 if paused else 3.0}))
    off = t0 + 30 * MINUTE_MS
    for h in range(0, 22):
        surface = 0.35 * math.exp(-h)
        out.append((off + h * HOUR_MS, {KEY: "OFF", RUNNING: False, AIR: 25.0,
                                        VOLTS: round(12.65 + surface, 4), AMPS: -0.05}))
    return out


def test_long_park_gives_a_sample_a_day() -> None:
    run = Run().feed(messages(12, lambda _d: 12.7, seed=5, parked_days=set(range(12)),
                              random_topups_per_day=0.0))
    assert 11 <= len(run.state["hist"]) <= 12


def test_driving_costs_no_state_writes() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    detector.update(state, START_MS, {KEY: "ON", VOLTS: 14.0, AIR: 5.0})
    writes = [detector.update(state, START_MS + i * 60_000, {KEY: "ON", VOLTS: 14.1, AIR: 5.0})
              for i in range(1, 60)]
    assert writes == [(False, None)] * 59


def test_late_and_malformed_messages_are_ignored() -> None:
    detector = WeakBattery12V()
    state = detector.new_state()
    detector.update(state, START_MS + HOUR_MS, {KEY: "OFF", VOLTS: 12.9, AIR: 10.0})
    snapshot = json.dumps(state)
    assert detector.update(state, START_MS, {KEY: "ON", VOLTS: 14.0}) == (False, None)
    assert detector.on_event(state, START_MS, {"type": "ignition", "state": "ON"}) \
        == (False, None)
    for junk in ({KEY: "UNDEFINED"}, {VOLTS: "12.5"}, {VOLTS: float("nan")}, {AIR: True},
                 {KEY: 3}, {}):
        detector.update(state, START_MS + 2 * HOUR_MS, junk)
    assert detector.on_event(state, START_MS + 2 * HOUR_MS, {"type": "dtc", "code": "P0420"}) \
        == (False, None)
    restored = json.loads(snapshot)
    assert {k: v for k, v in state.items() if k not in ("ts", "tb", "tb_ts", "amb")} == \
        {k: v for k, v in restored.items() if k not in ("ts", "tb", "tb_ts", "amb")}
    assert state["on"] is False
    assert state["win"] == []


def test_state_from_an_older_detector_version_is_upgraded() -> None:
    detector = WeakBattery12V()
    old = {"on": False, "rest": 1, "win": [], "taken": True, "tb": 5.0, "tb_ts": 1,
           "hist": [[START_MS, 12.5], [START_MS + DAY_MS, 12.4]], "active": True}
    changed, _ = detector.update(old, START_MS + 2 * DAY_MS, {KEY: "OFF", VOLTS: 12.8})
    assert changed
    assert set(old) == set(detector.new_state())
    assert old["hist"] == [[START_MS, 12.5], [START_MS + DAY_MS, 12.4]]
    assert old["active"]


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="failure_v25"):
        WeakBattery12V(warn_v25=11.5)
    with pytest.raises(ValueError, match="min_samples"):
        WeakBattery12V(min_samples=2)
