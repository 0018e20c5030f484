"""The charging-system (alternator) detector on synthetic drives (no brokers, no clock)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from diagnostics import alerting
from diagnostics.alternator import ChargingSystem
from diagnostics.base import Assessment
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS

START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
KEY = "Vehicle.LowVoltageSystemState"
VOLTS = "Vehicle.LowVoltageBattery.CurrentVoltage"
AMPS = "Vehicle.LowVoltageBattery.CurrentCurrent"
AIR = "Vehicle.Exterior.AirTemperature"
SPEED = "Vehicle.Speed"
RUNNING = "Vehicle.Powertrain.CombustionEngine.IsRunning"
RPM = "Vehicle.Powertrain.CombustionEngine.Speed"
SOC = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
FAILURE_V = 12.45  # the set point that can no longer charge the battery above 11.9 V

Message = tuple[int, str, dict[str, Any]]
SetPoint = Callable[[float], float]  # day -> regulator set point at 25 °C


def healthy(set_v: float = 14.2) -> SetPoint:
    return lambda day: set_v


def sagging(set_v: float, rate_v_per_day: float, onset_day: float = 2.0) -> SetPoint:
    return lambda day: set_v - rate_v_per_day * max(0.0, day - onset_day)


def failure_day(set_v: float, rate_v_per_day: float, onset_day: float = 2.0) -> float:
    return onset_day + (set_v - FAILURE_V) / rate_v_per_day


def drives(days: float, set_point: SetPoint, seed: int = 0, ignition_events: bool = True,
           key_state: bool = True, extra: dict[str, Any] | None = None) -> Iterator[Message]:
    """Two drives a day (commute), one reading a minute, as the simulator's combustion cars:
    the regulator compensates for a cold battery, the bus dips at idle, a stop-start pause
    hands the car to the battery, the air follows a daily cycle around a drifting mean."""
    rng = random.Random(seed)
    for day in range(int(days)):
        for hour, minutes in ((7.5, rng.randint(20, 40)), (17.25, rng.randint(20, 45))):
            t0 = START_MS + day * DAY_MS + int(hour * HOUR_MS)
            air = 5 + 8 * math.sin(day / 5) + 4 * math.sin(2 * math.pi * (hour - 9) / 24)
            battery_c = air + 3 + rng.gauss(0, 2)  # what the detector cannot know exactly
            if ignition_events:
                yield t0, "event", {"type": "ignition", "state": "ON"}
            for k in range(minutes):
                ts = t0 + k * MINUTE_MS
                speed = 0.0 if k and rng.random() < 0.05 else 40 + rng.gauss(0, 8)
                running = speed > 0 or k < 5
                signals: dict[str, Any] = {SPEED: round(max(0.0, speed), 1), AIR: round(air, 1),
                                           RUNNING: running, RPM: 1800.0 if running else 0.0}
                if key_state:
                    signals[KEY] = "ON"
                if running:
                    comp = max(-0.4, min(0.4, 0.008 * (25 - battery_c)))
                    volts = set_point(day + hour / 24) + comp - (0.1 if speed < 1 else 0.0)
                    signals[VOLTS] = round(volts + rng.gauss(0, 0.035), 3)
                    signals[AMPS] = round(2 + 8 * math.exp(-k / 20) + rng.gauss(0, 0.3), 2)
                else:  # a stop-start pause: the battery carries the car
                    signals[VOLTS] = round(12.35 + rng.gauss(0, 0.02), 3)
                    signals[AMPS] = -22.0
                signals.update(extra or {})
                yield ts, "telemetry", signals
            t_off = t0 + minutes * MINUTE_MS
            if ignition_events:
                yield t_off, "event", {"type": "ignition", "state": "OFF"}
            parked: dict[str, Any] = {SPEED: 0.0, AIR: round(air, 1), RUNNING: False,
                                      VOLTS: 12.6}
            if key_state:
                parked[KEY] = "OFF"
            yield t_off + 30 * MINUTE_MS, "telemetry", parked


class Run:
    """Feeds messages through the detector and the alarm hygiene, like the worker does."""

    def __init__(self, detector: ChargingSystem | None = None) -> None:
        self.detector = detector or ChargingSystem()
        self.state = self.detector.new_state()
        self.alert_state = alerting.new_alert_state()
        self.assessments: list[tuple[int, Assessment]] = []
        self.alerts: list[dict[str, Any]] = []
        self.writes = 0

    def feed(self, stream: Iterator[Message]) -> Run:
        for ts, kind, payload in stream:
            if kind == "telemetry":
                changed, assessment = self.detector.update(self.state, ts, payload)
            else:
                changed, assessment = self.detector.on_event(self.state, ts, payload)
            self.writes += changed
            if assessment is None:
                continue
            self.assessments.append((ts, assessment))
            alert = alerting.apply(
                self.alert_state, asset_kind="vehicle", asset_id="V",
                alert_type="charging_system", detector=self.detector.name,
                detector_version=self.detector.version, assessment=assessment, ts_ms=ts)
            if alert is not None:
                self.alerts.append(alert)
        return self

    def first_alert_ts(self) -> int | None:
        opened = [a for a in self.alerts if a["status"] == "open"]
        return int(opened[0]["first_seen"]) if opened else None


@pytest.mark.parametrize("rate", [0.06, 0.1, 0.15])
@pytest.mark.parametrize("seed", [1, 2])
def test_sagging_charging_voltage_is_raised_days_before_the_no_start(rate: float, seed: int
                                                                     ) -> None:
    run = Run().feed(drives(40, sagging(14.2, rate), seed=seed))
    first = run.first_alert_ts()
    assert first is not None
    fails = START_MS + failure_day(14.2, rate) * DAY_MS
    assert (fails - first) / DAY_MS >= 5, "at least five days to book the repair"
    raised = next(a for _, a in run.assessments if a.active)
    assert raised.predicted_failure_ts is not None
    assert "alternator" in raised.recommended_action
    assert len({a["id"] for a in run.alerts}) == 1, "the alert flapped"
    # Early estimates are rough (the window still holds the flat days before the onset); as
    # drives accumulate the prediction converges on the truth.
    late = [(ts, a) for ts, a in run.assessments
            if a.active and ts < fails and fails - ts <= 5 * DAY_MS]
    assert late, "the alert should be updated in the last days before failure"
    errors = [abs(a.predicted_failure_ts - fails) / DAY_MS for _, a in late
              if a.predicted_failure_ts is not None]
    assert errors
    assert max(errors) <= 1.5, errors
    assert late[-1][1].evidence["slope_v_per_day"] == pytest.approx(-rate, abs=0.015)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("set_v", [13.9, 14.2, 14.5])
def test_healthy_charging_system_stays_quiet_through_weather_idle_and_pauses(set_v: float,
                                                                             seed: int) -> None:
    run = Run().feed(drives(45, healthy(set_v), seed=seed))
    assert run.alerts == []
    assert not any(a.active for _, a in run.assessments)
    assert len(run.state["hist"]) > 20  # it did judge: one sample per drive


def test_severity_escalates_and_the_evidence_is_plain_json() -> None:
    run = Run().feed(drives(30, sagging(14.2, 0.12), seed=3))
    severities = [a.severity for _, a in run.assessments if a.active]
    assert severities[0] == "info"
    assert severities[-1] == "critical"
    assert severities.index("warning") < severities.index("critical")
    evidence = next(a.evidence for _, a in run.assessments if a.active)
    assert json.loads(json.dumps(evidence)) == evidence
    assert {"charging_v25", "slope_v_per_day", "days_to_failure", "battery_current_a",
            "predicted_failure_earliest_ts", "predicted_failure_latest_ts",
            "failure_v"} <= evidence.keys()
    assert evidence["predicted_failure_earliest_ts"] <= evidence["predicted_failure_ts"] \
        <= evidence["predicted_failure_latest_ts"]


def test_a_low_charging_voltage_is_raised_without_waiting_for_a_trend() -> None:
    run = Run().feed(drives(3, healthy(13.1), seed=1))
    raised = [a for _, a in run.assessments if a.active]
    assert raised
    assert raised[0].severity == "warning"
    assert raised[0].evidence["slope_v_per_day"] is None
    assert "13.1" in raised[0].title


def test_repaired_alternator_resolves_the_alert() -> None:
    def repaired(day: float) -> float:
        return 14.3 if day >= 12 else sagging(14.2, 0.12)(day)
    run = Run().feed(drives(25, repaired, seed=2))
    statuses = [a["status"] for a in run.alerts]
    assert statuses[0] == "open"
    assert statuses[-1] == "resolved"


def test_pauses_and_idle_readings_never_count() -> None:
    detector = ChargingSystem()
    state = detector.new_state()
    t = START_MS
    detector.on_event(state, t, {"type": "ignition", "state": "ON"})
    for k in range(30):  # running at a standstill, then a long stop-start pause
        detector.update(state, t + k * MINUTE_MS, {RUNNING: k < 15, SPEED: 0.0, VOLTS: 12.3,
                                                   AIR: 10.0})
    detector.on_event(state, t + 30 * MINUTE_MS, {"type": "ignition", "state": "OFF"})
    assert state["hist"] == []


def test_engine_speed_stands_in_for_a_missing_is_running_and_a_gap_closes_the_drive() -> None:
    detector = ChargingSystem()
    state = detector.new_state()
    for drive in range(2):
        t0 = START_MS + drive * 3 * HOUR_MS
        for k in range(20):
            detector.update(state, t0 + k * MINUTE_MS, {RPM: 1900.0, SPEED: 50.0,
                                                         VOLTS: 14.1, AIR: 25.0 - 3.0})
    # No key state and no ignition events: the second drive's first reading closed the first.
    assert len(state["hist"]) == 1
    assert state["hist"][0][1] == pytest.approx(14.1)


def test_electrified_cars_are_left_alone() -> None:
    ev = Run().feed(drives(10, healthy(13.0), ignition_events=False,
                           extra={RUNNING: False}))
    assert ev.alerts == []
    assert ev.state["hist"] == []
    hybrid = Run().feed(drives(10, healthy(13.0), extra={SOC: 55.0}))
    assert hybrid.alerts == []
    assert hybrid.state["dcdc"] is True
    assert hybrid.writes == 1  # once, when it learned the car is electrified


def test_abstains_once_when_the_car_stops_driving() -> None:
    detector = ChargingSystem()
    run = Run(detector).feed(drives(5, healthy(), seed=4))
    last = START_MS + 5 * DAY_MS
    abstained = []
    for hour in range(0, 24 * 12, 6):
        _, assessment = detector.update(run.state, last + hour * HOUR_MS,
                                        {KEY: "OFF", RUNNING: False, VOLTS: 12.6})
        if assessment is not None:
            abstained.append(assessment)
    assert len(abstained) == 1
    assert abstained[0].abstain_reason is not None
    assert "days" in abstained[0].abstain_reason


def test_late_messages_are_ignored_and_state_stays_small_json() -> None:
    run = Run().feed(drives(45, sagging(14.3, 0.05), seed=5))
    frozen = json.dumps(run.state)
    changed, assessment = run.detector.update(run.state, START_MS, {RUNNING: True, VOLTS: 11.0,
                                                                     SPEED: 50.0})
    assert (changed, assessment) == (False, None)
    assert json.dumps(run.state) == frozen
    assert len(frozen) < 4096


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="failure_v < critical_v < low_v"):
        ChargingSystem(failure_v=13.5)
    with pytest.raises(ValueError, match="min_samples >= 3"):
        ChargingSystem(min_samples=2)
    with pytest.raises(ValueError, match="min_moving_s < max_sample_s"):
        ChargingSystem(min_moving_s=0)
    with pytest.raises(ValueError, match="level_quantile"):
        ChargingSystem(level_quantile=1.0)


def reported_at(hz: float, days: int, set_point: SetPoint) -> Iterator[Message]:
    """The same voltage history (it steps once a minute) reported at `hz` readings a second:
    two 20-minute drives a day."""
    step_ms = round(1000 / hz)
    for day in range(days):
        for hour in (7.5, 17.25):
            t0 = START_MS + day * DAY_MS + int(hour * HOUR_MS)
            yield t0, "event", {"type": "ignition", "state": "ON"}
            for ts in range(t0, t0 + 20 * MINUTE_MS, step_ms):
                minute = (ts - t0) // MINUTE_MS
                volts = set_point(day + hour / 24) - 0.3 * (minute % 4 == 0)  # load steps
                yield ts, "telemetry", {KEY: "ON", RUNNING: True, SPEED: 40.0, AIR: 22.0,
                                        VOLTS: round(volts, 3), AMPS: 3.0 + minute % 3}
            yield t0 + 20 * MINUTE_MS, "event", {"type": "ignition", "state": "OFF"}


@pytest.mark.parametrize("hz", [2.0, 0.1])
def test_samples_and_verdict_do_not_depend_on_the_reporting_rate(hz: float) -> None:
    reference = Run().feed(reported_at(1.0, 14, sagging(14.2, 0.1)))
    other = Run().feed(reported_at(hz, 14, sagging(14.2, 0.1)))
    assert len(reference.state["hist"]) == 2 * 14, "one sample per drive"
    assert [h[1:] for h in other.state["hist"]] == [h[1:] for h in reference.state["hist"]]
    for ours, theirs in zip(other.state["hist"], reference.state["hist"], strict=True):
        assert abs(ours[0] - theirs[0]) <= 10_000  # the drive's last reading
    expected, verdict = reference.assessments[-1][1], other.assessments[-1][1]
    assert expected.active
    assert (verdict.active, verdict.severity, verdict.title) == (
        expected.active, expected.severity, expected.title)
    assert [a["status"] for a in other.alerts] == [a["status"] for a in reference.alerts]


def test_a_long_trip_gives_a_sample_every_two_hours_and_a_short_one_none() -> None:
    detector = ChargingSystem()
    state = detector.new_state()
    t0 = START_MS
    for k in range(5 * 60 + 1):  # five hours, a reading a minute, no key-off
        detector.update(state, t0 + k * MINUTE_MS, {RUNNING: True, SPEED: 90.0, AIR: 22.0,
                                                     VOLTS: 14.0})
    assert [round((h[0] - t0) / HOUR_MS, 2) for h in state["hist"]] == [2.03, 4.03]
    assert [h[1] for h in state["hist"]] == [pytest.approx(14.0)] * 2
    detector.on_event(state, t0 + 5 * HOUR_MS + 1, {"type": "ignition", "state": "OFF"})
    assert len(state["hist"]) == 3  # the last hour
    t1 = t0 + DAY_MS  # a hop to the shop: 2 minutes' settling and 50 s of driving
    for s in range(0, 161, 10):
        detector.update(state, t1 + s * 1000, {RUNNING: True, SPEED: 30.0, VOLTS: 14.0})
    detector.on_event(state, t1 + 161_000, {"type": "ignition", "state": "OFF"})
    assert len(state["hist"]) == 3
