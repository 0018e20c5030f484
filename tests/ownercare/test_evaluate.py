"""``ownercare eval``: the scoring on hand-built truth and alerts, the fault mix, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics import tyre_leak
from diagnostics.generic_signals import ALERT_TYPE, GenericSignals
from ownercare.cli import main
from ownercare.evaluation.pooling import pool
from ownercare.evaluation.report import format_report, format_shortfalls
from ownercare.evaluation.run import run_scenario
from ownercare.evaluation.scenario import Scenario, default_fault_mix
from ownercare.evaluation.scoring import score, score_run
from simulators.faults import FAULTS, FaultInstance, FaultSpec
from vocab.eventtime import DAY_MS, HOUR_MS

T0 = 1_767_571_200_000
CAR_A, CAR_B, CAR_C, CAR_D = ("WCRBE2C73RF0361" + s for s in ("01", "02", "03", "04"))


def alert(asset: str, alert_type: str, first_seen: int, *, kind: str = "vehicle",
          status: str = "open", alert_id: str | None = None) -> dict[str, Any]:
    return {"id": alert_id or f"{asset}/{alert_type}/{first_seen}", "asset_kind": kind,
            "asset_id": asset, "type": alert_type, "status": status,
            "first_seen": first_seen, "last_seen": first_seen}


def leak(vin: str, onset_days: float, failure_days: float | None) -> dict[str, Any]:
    return {"vin": vin, "fault": "slow_leak", "onset_ts": T0 + int(onset_days * DAY_MS),
            "failure_ts": None if failure_days is None else T0 + int(failure_days * DAY_MS),
            "params": {}}


def test_recall_precision_lead_time_and_duplicates_per_fault() -> None:
    truth = [leak(CAR_A, 1, 10), leak(CAR_B, 1, 10), leak(CAR_C, 1, 4)]
    alerts = [
        alert(CAR_A, "slow_tyre_leak", T0 + 4 * DAY_MS),  # 6 days = 144 h ahead
        alert(CAR_A, "slow_tyre_leak", T0 + 4 * DAY_MS, status="resolved"),  # same alert again
        alert(CAR_A, "slow_tyre_leak", T0 + 6 * DAY_MS),  # a second opening: a duplicate
        alert(CAR_B, "slow_tyre_leak", T0 + 9 * DAY_MS),  # 24 h ahead
        alert(CAR_C, "slow_tyre_leak", T0 + 5 * DAY_MS),  # after the failure: missed
        alert(CAR_D, "slow_tyre_leak", T0 + 2 * DAY_MS),  # a healthy car: a false alert
    ]
    report = score(truth, alerts, vehicles=10, chargers=0, days=20, faults={"slow_leak": 3})
    f = report["faults"]["slow_leak"]
    assert (f["faulty"], f["detected"], f["missed"]) == (3, 2, 1)
    assert f["recall"] == round(2 / 3, 4)
    # 5 alert ids of this type, 4 of them on leaking cars (C's late one is still its own).
    assert (f["alerts"], f["alerts_on_faulty_assets"], f["precision"]) == (5, 4, 0.8)
    assert f["median_lead_time_h"] == 84.0
    assert f["worst_lead_time_h"] == 24.0
    assert f["duplicate_alerts"] == 1 + 0 + 0
    assert report["duplicate_alerts"] == 1
    assert report["false_alerts_on_healthy_vehicles"] == 1
    assert report["healthy_vehicle_days"] == 7 * 20
    assert report["false_alerts_per_1000_vehicle_days"] == round(1000 / 140, 3)
    assert report["false_alerts_per_1000_charger_days"] is None  # no chargers at all


def test_an_alert_of_another_type_on_a_faulty_car_is_neither_a_detection_nor_healthy() -> None:
    truth = [leak(CAR_A, 1, 10)]
    alerts = [alert(CAR_A, "weak_12v_battery", T0 + 3 * DAY_MS)]
    report = score(truth, alerts, vehicles=2, chargers=0, days=10, faults={"slow_leak": 1})
    assert report["faults"]["slow_leak"]["detected"] == 0
    assert report["faults"]["slow_leak"]["precision"] is None  # no alert of its type at all
    assert report["unrelated_alerts_on_faulty_assets"] == 1
    assert report["false_alerts_on_healthy_vehicles"] == 0


def test_a_fault_without_failure_time_is_detected_by_any_alert_but_has_no_lead_time() -> None:
    truth = [leak(CAR_A, 1, None), leak(CAR_B, 1, None)]
    alerts = [alert(CAR_A, "slow_tyre_leak", T0 + 30 * DAY_MS)]
    report = score(truth, alerts, vehicles=2, chargers=0, days=40, faults={"slow_leak": 2})
    f = report["faults"]["slow_leak"]
    assert f["detected"] == 1
    assert f["recall"] == 0.5
    assert f["median_lead_time_h"] is None
    assert f["worst_lead_time_h"] is None
    assert f["lead_times_measured"] == 0
    row = format_report(report).splitlines()[1].split()
    assert row[:3] == ["slow_leak", "vehicle", "slow_tyre_leak"]
    assert row[-3:-1] == ["-", "-"]  # lead times not measurable: "-", never 0


def test_pooled_runs_add_their_counts_and_take_medians_over_every_asset() -> None:
    """``eval --seeds``: recall over every faulty car of every run, not a mean of ratios."""
    one = score([leak(CAR_A, 1, 10), leak(CAR_B, 1, 10)],
                [alert(CAR_A, "slow_tyre_leak", T0 + 4 * DAY_MS),  # 144 h ahead
                 alert(CAR_B, "slow_tyre_leak", T0 + 9 * DAY_MS),  # 24 h ahead
                 alert(CAR_C, "slow_tyre_leak", T0 + 2 * DAY_MS)],  # healthy: false alert
                vehicles=10, chargers=0, days=20, faults={"slow_leak": 2})
    two = score([leak(CAR_A, 1, 10), leak(CAR_B, 1, 10), leak(CAR_C, 1, 10)],
                [alert(CAR_A, "slow_tyre_leak", T0 + 8 * DAY_MS),  # 48 h ahead
                 alert(CAR_A, "slow_tyre_leak", T0 + 9 * DAY_MS)],  # a duplicate
                vehicles=10, chargers=0, days=20, faults={"slow_leak": 3})
    one["scenario"], two["scenario"] = {"seed": 1}, {"seed": 2}
    pooled = pool([one, two])
    f = pooled["faults"]["slow_leak"]
    assert (f["faulty"], f["detected"], f["missed"]) == (5, 3, 2)
    assert f["recall"] == 0.6  # the runs' own recalls, 1.0 and 0.33, would average 0.67
    assert (f["alerts"], f["alerts_on_faulty_assets"]) == (5, 4)
    assert f["precision"] == 0.8
    assert f["median_lead_time_h"] == 48.0
    assert f["worst_lead_time_h"] == 24.0
    assert f["duplicate_alerts"] == pooled["duplicate_alerts"] == 1
    assert pooled["false_alerts_on_healthy_vehicles"] == 1
    assert pooled["healthy_vehicle_days"] == 8 * 20 + 7 * 20
    assert pooled["false_alerts_per_1000_vehicle_days"] == round(1000 / 300, 3)
    assert [d["seed"] for d in pooled["detections"]] == [1, 1, 2, 2, 2]
    # One run pooled is that run.
    alone = pool([one])
    assert alone["faults"] == one["faults"]
    assert {k: v for k, v in alone.items() if k not in ("detections", "off_target_alerts")} == {
        k: v for k, v in one.items() if k not in ("detections", "scenario", "off_target_alerts")}
    # The off-target alerts keep their run's seed: the healthy car's alert of seed 1.
    assert [(a["asset_id"], a["fault"], a["seed"]) for a in pooled["off_target_alerts"]] == [
        (CAR_C, None, 1)]


@pytest.fixture
def charger_fault(monkeypatch: pytest.MonkeyPatch) -> str:
    """A charger fault in the registry (the scoring must handle any registered fault)."""
    def draw(_rng: Any, start: int, _ctx: Any) -> FaultInstance:
        return FaultInstance("test_charger_fault", start, None)

    monkeypatch.setitem(FAULTS, "test_charger_fault", FaultSpec(
        "test_charger_fault", "charger", "test", draw, "none", "test_charger_alert"))
    return "test_charger_fault"


def test_charging_attribution_counts_alerts_raised_on_the_wrong_asset(charger_fault: str) -> None:
    truth = [{"charger_id": "CP-0001", "fault": charger_fault, "onset_ts": T0,
              "failure_ts": T0 + 5 * DAY_MS, "params": {}}]
    alerts = [
        alert("CP-0001", "test_charger_alert", T0 + DAY_MS, kind="charger"),  # right asset
        alert("CP-0002", "test_charger_alert", T0 + DAY_MS, kind="charger"),  # healthy charger
        alert(CAR_A, "test_charger_alert", T0 + 2 * DAY_MS),  # the car blamed for the charger
        alert(CAR_B, "slow_tyre_leak", T0 + 2 * DAY_MS),  # not a charging type: not counted
    ]
    report = score(truth, alerts, vehicles=4, chargers=3, days=10, faults={charger_fault: 1})
    assert report["charging_alerts"] == 3
    assert report["charging_attribution_accuracy"] == round(1 / 3, 4)
    f = report["faults"][charger_fault]
    assert f["asset"] == "charger"
    assert f["detected"] == 1
    assert f["worst_lead_time_h"] == 96.0
    assert report["false_alerts_on_healthy_chargers"] == 1
    assert report["false_alerts_per_1000_charger_days"] == round(1000 / 20, 3)
    assert report["false_alerts_on_healthy_vehicles"] == 2


def test_attribution_is_null_without_charging_faults() -> None:
    report = score([leak(CAR_A, 1, 10)], [], vehicles=3, chargers=1, days=5,
                   faults={"slow_leak": 1})
    assert report["charging_attribution_accuracy"] is None
    assert report["faults"]["slow_leak"]["recall"] == 0.0


def test_default_mix_has_every_registered_fault_on_two_percent_and_leaves_most_healthy(
        charger_fault: str) -> None:
    mix = default_fault_mix(500, 50)
    assert set(mix) == set(FAULTS)
    assert all(mix[n] == 10 for n in FAULTS if FAULTS[n].asset == "vehicle")
    assert mix[charger_fault] == 1
    small = default_fault_mix(4, 0)
    assert sum(small.values()) == 2  # at most half of 4 cars faulty, one per fault
    assert charger_fault not in small


def test_detection_is_identical_with_the_simulator_in_its_own_process() -> None:
    scenario = Scenario(seed=5, vehicles=8, chargers=2, days=6,
                        faults={"dtc": 2, "weak_12v": 2}, drive_interval_s=300,
                        parked_interval_s=3600)
    one = run_scenario(scenario, processes=1)
    two = run_scenario(scenario, processes=2)
    assert one.messages == two.messages > 1000
    assert one.alerts == two.alerts
    assert one.alerts
    assert score_run(one) == score_run(two)


def test_eval_json_and_plots_on_a_tiny_fleet(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code = main(["eval", "--seed", "2", "--vehicles", "6", "--chargers", "1", "--days", "5",
                 "--faults", "dtc:2", "--json", str(out), "--plot", str(tmp_path / "plots"),
                 "--record", str(tmp_path / "fleet.jsonl"), "--processes", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dtc " in printed
    assert "false alerts:" in printed
    report = json.loads(out.read_text())
    assert report["faults"]["dtc"]["faulty"] == 2
    assert report["faults"]["dtc"]["recall"] == 1.0
    assert set(report) >= {"false_alerts_per_1000_vehicle_days",
                           "false_alerts_per_1000_charger_days",
                           "charging_attribution_accuracy", "duplicate_alerts", "scenario"}
    recorded = (tmp_path / "fleet.jsonl").read_bytes().splitlines()
    assert len(recorded) == report["messages"] > 0
    assert json.loads(recorded[0])["topic"].startswith(("vehicles/", "chargers/"))
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 2
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_eval_over_a_seed_range_prints_every_run_and_writes_the_pooled_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pooled.json"
    code = main(["eval", "--seeds", "2-3", "--vehicles", "6", "--chargers", "1", "--days", "5",
                 "--faults", "dtc:2", "--json", str(out), "--processes", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "seed 2, 6 vehicles" in printed
    assert "seed 3, 6 vehicles" in printed
    assert "seeds 2-3 pooled (2 runs" in printed
    report = json.loads(out.read_text())
    runs = report["per_seed"]
    assert [r["scenario"]["seed"] for r in runs] == [2, 3]
    assert report["scenario"]["seeds"] == [2, 3]
    assert report["faults"]["dtc"]["faulty"] == 4
    assert report["faults"]["dtc"]["detected"] == sum(r["faults"]["dtc"]["detected"]
                                                      for r in runs)
    assert report["messages"] == sum(r["messages"] for r in runs) > 0
    assert format_shortfalls(runs) in printed


def test_the_shortfalls_line_names_each_run_that_missed_an_asset() -> None:
    def run(seed: int, detected: int) -> dict[str, Any]:
        return {"scenario": {"seed": seed}, "faults": {
            "dtc": {"detected": 2, "faulty": 2},
            "inlet_fault": {"detected": detected, "faulty": 4}}}
    assert format_shortfalls([run(1, 4), run(2, 4)]) == "every run detected every faulty asset"
    assert format_shortfalls([run(1, 4), run(2, 3), run(3, 2)]) == (
        "runs that missed faulty assets (detected/faulty): seed 2: inlet_fault 3/4; "
        "seed 3: inlet_fault 2/4")


@pytest.mark.parametrize(("argv", "message"), [
    (["--seeds", "5-2"], "--seeds: '5-2': the last seed is before the first"),
    (["--seeds", "one-two"], "--seeds: 'one-two' is not a seed range like 1-10"),
    (["--seed", "1", "--seeds", "1-2"], "not allowed with argument"),
    (["--seeds", "1-2", "--plot", "/tmp"], "--plot and --record draw one run"),
    (["--days", "0"], "--days: must be > 0"),
    (["--vehicles", "-3"], "--vehicles: must be >= 0"),
    (["--vehicles", "x"], "--vehicles: 'x' is not an integer"),
    (["--faults", "bogus:1"], "unknown fault 'bogus'"),
    (["--vehicles", "2", "--faults", "dtc:3"], "3 vehicle faults requested"),
    (["--vehicles", "0", "--chargers", "0"], "the fleet is empty"),
    (["--json", "/nonexistent/dir/report.json"], "--json: directory '/nonexistent/dir'"),
])
def test_eval_rejects_bad_arguments_naming_them(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["eval", *argv])
    except SystemExit as exc:  # argparse's own type errors
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- speed changes keep results


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3))
def test_median_of_three_is_numpys_median(values: list[float]) -> None:
    assert tyre_leak.median_of_three(values) == float(np.median(values))


def test_the_fast_tyre_median_leaves_every_alert_unchanged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = Scenario(seed=3, vehicles=10, chargers=0, days=12, faults={"slow_leak": 3},
                        drive_interval_s=300, parked_interval_s=3600)
    fast = run_scenario(scenario, processes=1).alerts
    monkeypatch.setattr(tyre_leak, "median_of_three", lambda v: float(np.median(v)))
    assert run_scenario(scenario, processes=1).alerts == fast
    assert any(a["type"] == "slow_tyre_leak" for a in fast)


def test_a_fault_scored_by_delay_is_detected_after_its_onset_and_reports_the_delay() -> None:
    # ``silent``: the truth's failure is the onset (the car goes quiet); an alert can only come
    # after it, and the figure is how long after.
    def silent(vin: str, onset_days: float) -> dict[str, Any]:
        onset = T0 + int(onset_days * DAY_MS)
        return {"vin": vin, "fault": "silent", "onset_ts": onset, "failure_ts": onset,
                "params": {}}

    truth = [silent(CAR_A, 1), silent(CAR_B, 2), silent(CAR_C, 3)]
    alerts = [
        alert(CAR_A, "vehicle_silent", T0 + DAY_MS + 3 * HOUR_MS),
        alert(CAR_B, "vehicle_silent", T0 + 2 * DAY_MS + 5 * HOUR_MS),
        alert(CAR_C, "vehicle_silent", T0 + 2 * DAY_MS),  # before the onset: not this fault
    ]
    report = score(truth, alerts, vehicles=10, chargers=0, days=20, faults={"silent": 3})
    f = report["faults"]["silent"]
    assert (f["detected"], f["missed"]) == (2, 1)
    assert (f["median_delay_h"], f["worst_delay_h"]) == (4.0, 5.0)
    assert f["median_lead_time_h"] is None
    assert "detection delay after the onset: median 4.00 h, worst 5.00 h" in format_report(report)


# ------------------------------------------- the real pipeline against the simulator's truth


def scored(seed: int, vehicles: int, days: int, faults: dict[str, int], *, chargers: int = 0,
           drive_interval_s: float = 300, parked_interval_s: float = 3600) -> dict[str, Any]:
    scenario = Scenario(seed, vehicles, chargers, days, faults, drive_interval_s,
                        parked_interval_s)
    return score_run(run_scenario(scenario, processes=1))


def false_alerts(report: dict[str, Any]) -> int:
    return report["false_alerts_on_healthy_vehicles"] + report["false_alerts_on_healthy_chargers"]


def test_the_injected_weak_batteries_are_detected_days_ahead_and_nothing_else() -> None:
    report = scored(3, 12, 30, {"weak_12v": 3})
    f = report["faults"]["weak_12v"]
    assert (f["faulty"], f["detected"], f["missed"]) == (3, 3, 0)
    assert false_alerts(report) == 0
    assert report["duplicate_alerts"] == 0
    assert f["worst_lead_time_h"] >= 2 * 24


def test_trouble_codes_are_alerted_at_the_next_transmission() -> None:
    report = scored(6, 10, 8, {"dtc": 2, "weak_12v": 1})
    assert sum(f["faulty"] for f in report["faults"].values()) == 3
    assert false_alerts(report) == 0
    assert report["duplicate_alerts"] == 0
    # Both codes are alerted as soon as the car reports them (at its next transmission, at
    # most one parked interval after the onset), i.e. about 2 days before it would stop.
    leads = [d["lead_time_h"] for d in report["detections"] if d["fault"] == "dtc"]
    assert sum(1 for lead in leads if lead is not None and 48 - 1 <= lead <= 48) == 2


def test_a_scenario_scores_the_same_every_time() -> None:
    assert scored(4, 4, 6, {"weak_12v": 1}) == scored(4, 4, 6, {"weak_12v": 1})


def test_charger_faults_are_detected_and_attributed_to_the_asset_at_fault() -> None:
    report = scored(31, 30, 20, {"charger_derating": 1, "charger_fault": 1, "inlet_fault": 1},
                    chargers=6)
    assert {name: (f["faulty"], f["detected"]) for name, f in report["faults"].items()} == {
        "charger_derating": (1, 1), "charger_fault": (1, 1), "inlet_fault": (1, 1)}
    assert false_alerts(report) == 0
    assert report["duplicate_alerts"] == 0
    assert report["healthy_vehicle_days"] + report["healthy_charger_days"] == (30 + 6 - 3) * 20
    # Every charging-fault alert (the derating charger's included) is on the asset that really
    # is at fault.
    assert report["charging_alerts"] == 3
    assert report["charging_alerts_rightly_attributed"] == 3
    assert 1 <= report["faults"]["charger_derating"]["worst_sessions_to_alert"] <= 2


def test_a_failing_coolant_pump_is_detected_days_ahead() -> None:
    # Every car of the fleet heats with load and hills; three pumps wear out.
    report = scored(3, 12, 30, {"coolant_pump": 3}, drive_interval_s=120)
    f = report["faults"]["coolant_pump"]
    assert (f["faulty"], f["detected"], f["missed"]) == (3, 3, 0)
    assert false_alerts(report) == 0
    assert report["duplicate_alerts"] == 0
    assert f["worst_lead_time_h"] >= 5 * 24


def test_the_generic_detector_adds_its_own_alerts_and_changes_no_other() -> None:
    """``eval --generic``: every other detector's alerts are those of a run without it (so
    their recall cannot change); the generic detector sampled every car's signals."""
    scenario = Scenario(3, 6, 0, 8, {"slow_leak": 1, "coolant_pump": 1})
    plain = run_scenario(scenario, processes=1).alerts
    generic = GenericSignals()
    both = run_scenario(scenario, processes=1, generic=generic).alerts
    assert [a for a in both if a["type"] != ALERT_TYPE] == plain
    assert generic.scores > 6 * 8 * 24 * 6  # more than one score per car per 10 minutes
