"""The generic signal anomaly detector (diagnostics.signal_anomaly) on hand-built drives."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from diagnostics.base import Assessment
from diagnostics.signal_anomaly import SignalAnomaly

T0 = 1_767_571_200_000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
SOH = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
PACK = "Vehicle.Powertrain.TractionBattery.Temperature.Average"


def drives(days: int, pack: Callable[[int, int, float], float], soh: Callable[[int], float],
           seed: int = 1, per_day: int = 2, minutes: int = 40) -> Iterator[tuple[int, dict]]:
    """Two drives a day (08:00 and 17:00), a sample a minute. The pack starts at a weather-
    driven ambient and warms towards 25 °C with a 1 h time constant, as in the simulator;
    ``pack(day, minute, healthy)`` may replace the healthy value, ``soh(day)`` gives the SoH."""
    rng = random.Random(seed)
    weather = 0.0
    for day in range(days):
        weather = 0.7 * weather + rng.gauss(0, 2.0)
        for k in range(per_day):
            start = T0 + day * DAY + (8 + 9 * k) * HOUR
            ambient = 2.0 + weather + (5.0 if k else -3.0)
            for m in range(minutes):
                healthy = ambient + (25.0 - ambient) * (1 - math.exp(-m / 60)) + rng.gauss(0, 0.3)
                yield start + m * MIN, {PACK: round(pack(day, m, healthy), 2),
                                        SOH: soh(day), "Vehicle.Speed": 50.0}


def run(detector: SignalAnomaly, samples: Iterator[tuple[int, dict]]
        ) -> tuple[dict[str, Any], list[tuple[int, Assessment]]]:
    state = detector.new_state()
    out = []
    for ts, signals in samples:
        _, assessment = detector.update(state, ts, signals)
        if assessment is not None:
            out.append((ts, assessment))
    return state, out


def healthy_pack(day: int, minute: int, value: float) -> float:
    return value


def steady_soh(day: int) -> float:
    return 94.2


def test_healthy_drives_in_changing_weather_raise_nothing() -> None:
    for seed in range(1, 6):
        _, out = run(SignalAnomaly(), drives(40, healthy_pack, steady_soh, seed=seed))
        assert out == [], seed


def test_a_cold_snap_is_not_an_anomaly() -> None:
    """A week 12 °C colder: the first minutes of each drive are far below what the pack usually
    reads, but they warm up before the persistence window is over."""
    def snap(day: int, minute: int, value: float) -> float:
        return value - 12.0 * math.exp(-minute / 60) if 20 <= day < 27 else value
    _, out = run(SignalAnomaly(), drives(40, snap, steady_soh))
    assert out == []


AIR = "Vehicle.Exterior.AirTemperature"


def deep_snap(air_offset: float | None) -> Iterator[tuple[int, dict]]:
    """Thirty mild days, then three days at -22 °C where the pack, cold-soaked, stays near the
    air for the whole drive (no pre-conditioning). ``air_offset``: the reported air
    temperature relative to the pack (None: the car does not report it)."""
    for ts, signals in drives(33, healthy_pack, steady_soh):
        day = (ts - T0) // DAY
        if day >= 30:
            signals[PACK] = -22.0 + 0.02 * ((ts - T0) % DAY // MIN % 60)
        if air_offset is not None:
            signals[AIR] = round(signals[PACK] + air_offset, 2) if day >= 30 else 5.0
        yield ts, signals


def test_a_pack_as_cold_as_the_air_in_a_deep_cold_snap_is_explained() -> None:
    _, out = run(SignalAnomaly(), deep_snap(air_offset=-1.0))
    assert out == []
    # What explains it: without the air temperature the same pack is unusual...
    _, out = run(SignalAnomaly(), deep_snap(air_offset=None))
    assert out
    assert out[0][1].active
    assert out[0][1].evidence["signal"] == PACK
    # ...and so is a pack reading far colder than the air (a sensor fault).
    _, out = run(SignalAnomaly(), deep_snap(air_offset=+15.0))
    assert out
    assert out[0][1].active
    # The rule is a parameter: without it the air does not matter.
    _, out = run(SignalAnomaly(explained_by={}), deep_snap(air_offset=-1.0))
    assert out
    assert out[0][1].active


def test_explained_by_rejects_a_negative_margin() -> None:
    with pytest.raises(ValueError, match="margins"):
        SignalAnomaly(explained_by={PACK: (AIR, -1.0)})


def test_soh_recalibration_steps_are_not_anomalies_but_a_collapse_is() -> None:
    def steps(day: int) -> float:
        return 94.2 - 1.5 * (day // 10)  # a 1.5 % step every ten days
    _, out = run(SignalAnomaly(), drives(40, healthy_pack, steps))
    assert out == []

    def collapse(day: int) -> float:
        return 94.2 if day < 20 else 80.0
    _, out = run(SignalAnomaly(), drives(40, healthy_pack, collapse))
    assert out, "a 14 % SoH drop must be flagged"
    ts, first = out[0]
    assert first.active
    assert first.severity == "info"
    assert first.recommended_action
    assert T0 + 20 * DAY <= ts < T0 + 21 * DAY
    assert first.evidence["signal"] == SOH
    assert first.evidence["value"] == 80.0
    assert abs(first.evidence["mean"] - 94.2) < 0.5  # the first high samples were learned
    assert first.evidence["std"] == 1.0
    assert first.evidence["score"] >= 0.95
    assert first.evidence["signals"] == [SOH]


def test_one_odd_reading_is_not_an_anomaly() -> None:
    def spike(day: int, minute: int, value: float) -> float:
        return 70.0 if day == 25 and minute == 10 else value
    _, out = run(SignalAnomaly(), drives(40, spike, steady_soh))
    assert out == []


def test_an_overheating_pack_is_flagged_and_clears_with_hysteresis() -> None:
    def hot(day: int, minute: int, value: float) -> float:
        return value + 40.0 if 25 <= day < 28 else value  # a cooling fault for three days
    _, out = run(SignalAnomaly(), drives(40, hot, steady_soh))
    assert [a.active for _, a in out] == [True, False]
    (opened, raised), (closed, cleared) = out
    assert raised.evidence["signal"] == PACK
    assert raised.evidence["value"] > 40
    # Persistence: ten high samples spanning 30 minutes, so within the first day's drives.
    assert T0 + 25 * DAY + 8 * HOUR + 29 * MIN <= opened < T0 + 26 * DAY
    assert closed >= T0 + 28 * DAY
    assert cleared.evidence == {"signals": []}


def test_at_most_one_state_write_per_signal_and_minute_and_the_state_stays_small() -> None:
    detector = SignalAnomaly()
    state = detector.new_state()
    writes = 0
    for i in range(6 * 3600):  # six hours at 1 Hz
        changed, _ = detector.update(state, T0 + i * 1000, {PACK: 20.0 + (i % 7) * 0.1,
                                                            SOH: 94.0})
        writes += changed
    assert writes == 6 * 60
    assert len(json.dumps(state)) < 1024


def test_junk_values_are_ignored() -> None:
    detector = SignalAnomaly()
    state = detector.new_state()
    for value in (float("nan"), float("inf"), "hot", None, True):
        assert detector.update(state, T0, {PACK: value}) == (False, None)
    assert state == detector.new_state()


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="exit_score"):
        SignalAnomaly(enter_score=0.4, exit_score=0.5)
    with pytest.raises(ValueError, match="half-life"):
        SignalAnomaly(signals={PACK: (0.0, 1.0)})
