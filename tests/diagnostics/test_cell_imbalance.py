"""Cell imbalance detector on hand-built series: the drifting cell and its healthy look-alikes."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from diagnostics.base import Assessment
from diagnostics.cell_imbalance import CELL_ID_MIN, CellImbalance
from diagnostics.signals import CELL_MAX, CELL_MIN

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
START = 1_767_571_200_000

Series = Iterator[tuple[int, dict[str, Any]]]


def car(days: float, *, base_mv: float = 12.0, drift_mv_per_day: float = 0.0,
        drift_from_day: float = 1.0, ambient: Callable[[float], float] = lambda d: 12.0,
        soc: Callable[[float], float] = lambda d: 60.0,
        charging: Callable[[float], bool] = lambda d: False,
        load_mv: float = 15.0, seed: int = 1, cells: int = 96, drift_cell: int = 17) -> Series:
    """Half-hourly parked reports and two 1 h drives a day (08:00, 17:00), like the fleet."""
    rng = random.Random(seed)
    weak = (3, 40, 71)
    t = START
    while t < START + days * DAY_MS:
        day = (t - START) / DAY_MS
        hour = day % 1 * 24
        driving = 8 <= hour < 9 or 17 <= hour < 18
        drift = max(0.0, day - drift_from_day) * drift_mv_per_day
        amb = ambient(day)
        s = soc(day)
        factor = (1 + 2.5 * max(0.0, (20 - s) / 20)) * (1 + 0.03 * max(0.0, 15 - amb))
        spread = (base_mv + drift) * factor + rng.gauss(0, 1.5)
        if driving:
            spread += rng.uniform(0.3, 1.0) * load_mv
        if charging(day) and not driving:
            spread += rng.uniform(3, 15)
        if drift > base_mv / 2:
            low = drift_cell
        elif rng.random() < 0.6:
            low = weak[rng.randrange(3)]
        else:
            low = rng.randrange(cells)
        vmax = 3.0 + 0.012 * s + spread * 0.4 / 1000
        signals: dict[str, Any] = {
            "Vehicle.LowVoltageSystemState": "ON" if driving else "OFF",
            "Vehicle.Speed": 50.0 if driving else 0.0,
            "Vehicle.Exterior.AirTemperature": round(amb + rng.gauss(0, 0.2), 2),
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": round(s, 2),
            "Vehicle.Powertrain.TractionBattery.Charging.IsCharging":
                charging(day) and not driving,
            CELL_MAX: round(vmax, 4),
            CELL_MIN: round(vmax - spread / 1000, 4),
            CELL_ID_MIN: low,
        }
        yield t, signals
        t += (5 * 60_000) if driving else 30 * 60_000


def run(series: Series, detector: CellImbalance | None = None
        ) -> tuple[CellImbalance, dict[str, Any], list[tuple[int, Assessment]]]:
    det = detector or CellImbalance()
    state = det.new_state()
    out = []
    for ts, signals in series:
        _, assessment = det.update(state, ts, signals)
        if assessment is not None:
            out.append((ts, assessment))
    return det, state, out


def first_raise(out: list[tuple[int, Assessment]]) -> tuple[int, Assessment] | None:
    return next(((ts, a) for ts, a in out if a.active and a.abstain_reason is None), None)


def test_a_drifting_cell_is_raised_well_before_the_bms_limit() -> None:
    rate, base = 3.0, 12.0
    failure_day = 1.0 + (100.0 - base) / rate  # reference spread reaches 100 mV
    _, state, out = run(car(30, base_mv=base, drift_mv_per_day=rate))
    raised = first_raise(out)
    assert raised is not None
    ts, assessment = raised
    lead_days = failure_day - (ts - START) / DAY_MS
    assert lead_days >= 7, lead_days
    assert assessment.evidence["drifting_cell"] == 17
    assert assessment.predicted_failure_ts is not None
    predicted_day = (assessment.predicted_failure_ts - START) / DAY_MS
    assert abs(predicted_day - failure_day) < 8
    ev = assessment.evidence
    assert ev["predicted_failure_earliest_ts"] <= ev["predicted_failure_ts"] <= ev[
        "predicted_failure_latest_ts"]
    # Severity escalates as the limit approaches, and the state stays small.
    assert out[-1][1].active
    assert out[-1][1].severity == "critical"
    assert len(json.dumps(state)) < 16 * 1024


@pytest.mark.parametrize(("name", "options"), [
    ("cold snap", {"ambient": lambda d: 12.0 if d < 8 or d > 14 else -15.0}),
    ("winter getting colder", {"ambient": lambda d: 15.0 - 1.5 * d}),
    ("low SoC week", {"soc": lambda d: 60.0 - 6.0 * d if d < 9 else 10.0}),
    ("heavy load every drive", {"load_mv": 40.0}),
    ("charging every night", {"charging": lambda d: d % 1 > 0.8 or d % 1 < 0.25}),
    ("a naturally wide but stable pack", {"base_mv": 35.0}),
])
def test_healthy_look_alikes_never_raise(name: str, options: dict[str, Any]) -> None:
    for seed in range(1, 4):
        _, _, out = run(car(30, seed=seed, **options))
        assert first_raise(out) is None, (name, seed)


def test_a_rising_spread_without_one_drifting_cell_does_not_raise() -> None:
    # The spread creeps up (say, an unmodelled condition) but the minimum wanders: not a cell.
    series = car(30, drift_mv_per_day=2.0, drift_cell=17)

    def wandering() -> Series:
        rng = random.Random(5)
        for ts, signals in series:
            signals[CELL_ID_MIN] = rng.randrange(96)
            yield ts, signals
    _, _, out = run(wandering())
    assert first_raise(out) is None


def test_abstains_without_cell_signals_and_with_too_few_samples() -> None:
    def no_cells() -> Series:
        for ts, signals in car(10):
            del signals[CELL_MIN]
            yield ts, signals
    _, state, out = run(no_cells())
    assert out
    assert all(a.abstain_reason is not None for _, a in out)
    assert "no resting cell-voltage sample" in (out[-1][1].abstain_reason or "")
    assert state["hist"] == []
    _, _, early = run(car(1.2))
    assert early
    assert early[0][1].abstain_reason is not None
    assert "need 4" in (early[0][1].abstain_reason or "")


def test_clears_after_the_pack_is_repaired() -> None:
    def repaired() -> Series:
        for ts, signals in car(40, drift_mv_per_day=4.0):
            if ts >= START + 18 * DAY_MS:  # the workshop rebalanced the pack
                signals[CELL_MIN] = round(signals[CELL_MAX] - 0.012, 4)
                signals[CELL_ID_MIN] = (ts // HOUR_MS) % 96
            yield ts, signals
    _, state, out = run(repaired())
    assert first_raise(out) is not None
    assert not out[-1][1].active
    assert not state["active"]


def test_constant_input_gives_finite_evidence() -> None:
    def constant() -> Series:
        for ts, signals in car(20):
            signals[CELL_MIN], signals[CELL_MAX], signals[CELL_ID_MIN] = 3.70, 3.712, 5
            signals["Vehicle.Exterior.AirTemperature"] = 10.0
            yield ts, signals
    _, _, out = run(constant())
    assert out
    for _, a in out:
        assert not a.active
        text = json.dumps(a.evidence, allow_nan=False)
        assert "Infinity" not in text


def test_the_fleet_is_unchanged_for_cars_without_the_fault() -> None:
    from simulators.fleet import Fleet

    plain = Fleet(6, 0, seed=4)
    faulty = Fleet(6, 0, seed=4, faults={"cell_drift": 1})
    (truth,) = faulty.truth()
    end = plain.start_ms + 3 * DAY_MS
    # The faulty car may be another model than its healthy twin (a cell drift needs a traction
    # battery), so another VIN: compare every other car, by its place in the fleet.
    (i,) = [i for i, v in enumerate(faulty.vehicles) if v.vin == truth["vin"]]

    def others(fleet: Fleet) -> list[tuple[int, str, bytes]]:
        return [m for m in fleet.messages(end) if fleet.vehicles[i].vin not in m[1]]
    assert others(plain) == others(faulty)
    assert not any(b"CellVoltage" in m[2] for m in plain.messages(end))
    cells = [m for m in faulty.messages(end) if b"CellVoltage" in m[2]]
    assert cells
    assert all(truth["vin"] in m[1] for m in cells)
    assert truth["failure_ts"] > truth["onset_ts"]


def test_eval_scores_the_cell_drift_fault() -> None:
    from ownercare.evaluation.run import run_scenario
    from ownercare.evaluation.scenario import Scenario
    from ownercare.evaluation.scoring import score_run

    report = score_run(run_scenario(Scenario(2, 8, 0, 30, {"cell_drift": 2}, 120, 1800),
                                    processes=1))
    f = report["faults"]["cell_drift"]
    assert f["detected"] == 2
    assert f["missed"] == 0
    assert report["false_alerts_on_healthy_vehicles"] == 0
    assert report["duplicate_alerts"] == 0
    assert f["worst_lead_time_h"] >= 7 * 24
