"""The OTA rollout engine, health gate and regression stop: pure, no brokers.

Property tests of the engine's invariants: every targeted vehicle is in exactly one wave; no
offer goes to a car outside its gate or window; a wave at its error threshold never advances;
action states only move forward.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota.engine import apply_report, backoff_ms, cancel, plan, step, wave_of
from ota.gate import VehicleSnapshot, gate_reasons, local_minute
from ota.model import (
    RANK,
    Action,
    ActionState,
    Campaign,
    CampaignStatus,
    MaintenanceWindow,
    Release,
    Wave,
)
from ota.regression import VehicleHealth, binomial_upper_tail, compare

HOUR = 3_600_000
NOW = 1_760_000_000_000 - (1_760_000_000_000 % (24 * HOUR)) + 2 * HOUR  # 02:00 UTC
RELEASE = Release("2.0.0", "bms", "https://updates.example.com/bms-2.0.0.bin", 1024, "a" * 64)


def campaign(**over: object) -> Campaign:
    base = Campaign("c1", RELEASE, waves=(Wave(10, 0.9, 0.2), Wave(50, 0.9, 0.2),
                                          Wave(100, 0.9, 0.2)),
                    soak_s=3600, status=CampaignStatus.RUNNING)
    return replace(base, **over)  # type: ignore[arg-type]


def parked(vin: str, ts: int = NOW, **over: object) -> VehicleSnapshot:
    base = VehicleSnapshot(vin, ts, installed_version="1.0.0", speed_kmh=0.0,
                           system_state="OFF", soc_percent=80.0, v12_volts=12.6)
    return replace(base, **over)  # type: ignore[arg-type]


VINS = [f"WCRAAAAAAAAAA{i:04d}" for i in range(40)]


# ------------------------------------------------------------------------ waves


@given(st.sets(st.text(min_size=1, max_size=17), max_size=300),
       st.lists(st.floats(0.1, 99.9), max_size=4))
def test_every_targeted_vehicle_is_in_exactly_one_wave(vins: set[str],
                                                       cuts: list[float]) -> None:
    percents = [*sorted(set(cuts)), 100.0]
    waves = wave_of("camp", vins, percents)
    assert set(waves) == vins
    assert set(waves.values()) <= set(range(len(percents)))
    if vins:
        assert 0 in waves.values()  # the canary is never empty
    sizes = [sum(1 for w in waves.values() if w <= i) for i in range(len(percents))]
    for i, p in enumerate(percents[:-1]):  # cumulative sizes follow the percentages
        assert sizes[i] == min(len(vins), max(1, math.ceil(p / 100 * len(vins))))
    assert wave_of("camp", sorted(vins), percents) == waves  # order-independent


# ------------------------------------------------------------------------ gate


def test_the_gate_names_every_reason_a_car_waits() -> None:
    c = campaign()
    assert gate_reasons(parked("V"), c.gate, c.window, NOW) == []
    assert gate_reasons(None, c.gate, c.window, NOW) == ["no_telemetry"]
    driving = parked("V", speed_kmh=50.0, system_state="ON", soc_percent=10.0, v12_volts=11.9,
                     charging=True, open_alerts=(("weak_12v_battery", "warning"),
                                                 ("dtc", "critical")))
    assert gate_reasons(driving, c.gate, c.window, NOW) == [
        "not_parked", "ignition_on", "low_soc", "low_12v", "charging",
        "open_alert:weak_12v_battery", "critical_alert:dtc"]
    assert gate_reasons(parked("V", ts=NOW - 7 * HOUR), c.gate, c.window, NOW) == [
        "telemetry_stale"]
    assert "speed_unknown" in gate_reasons(parked("V", speed_kmh=None), c.gate, c.window, NOW)
    # A combustion car reports no state of charge: only its 12 V battery is gated.
    assert gate_reasons(parked("V", soc_percent=None), c.gate, c.window, NOW) == []
    assert gate_reasons(parked("V", soc_percent=None, v12_volts=11.9), c.gate, c.window,
                        NOW) == ["low_12v"]
    night = MaintenanceWindow("22:00", "05:00")
    assert gate_reasons(parked("V"), c.gate, night, NOW) == []  # 02:00 UTC
    assert gate_reasons(parked("V", timezone="Europe/Berlin"), c.gate, night, NOW) == []
    # 02:00 UTC is 11:00 in Tokyo: outside its local 22:00-05:00 window.
    assert gate_reasons(parked("V", timezone="Asia/Tokyo"), c.gate, night, NOW) == [
        "outside_window"]
    assert local_minute(NOW, "Asia/Kolkata") == 7 * 60 + 30
    # A car that reports no zone is judged in the campaign window's zone.
    tokyo_night = MaintenanceWindow("22:00", "05:00", "Asia/Tokyo")
    assert gate_reasons(parked("V"), c.gate, tokyo_night, NOW) == ["outside_window"]
    assert gate_reasons(parked("V", timezone="UTC"), c.gate, tokyo_night, NOW) == []
    with pytest.raises(ValueError, match="IANA"):
        MaintenanceWindow(timezone="Mars/Olympus")


snapshots = st.builds(
    VehicleSnapshot, vin=st.sampled_from(VINS[:8]), ts=st.integers(NOW - 10 * HOUR, NOW),
    installed_version=st.just("1.0.0"),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
    speed_kmh=st.one_of(st.none(), st.sampled_from([0.0, 0.0, 30.0])),
    system_state=st.one_of(st.none(), st.sampled_from(["OFF", "OFF", "ON", "ACC"])),
    soc_percent=st.one_of(st.none(), st.floats(0, 100)),
    v12_volts=st.one_of(st.none(), st.floats(11, 13)),
    charging=st.booleans(),
    open_alerts=st.lists(st.tuples(st.sampled_from(["weak_12v_battery", "dtc"]),
                                   st.sampled_from(["info", "critical"])), max_size=2).map(
        tuple))


@given(st.dictionaries(st.sampled_from(VINS[:8]), snapshots, max_size=8),
       st.sampled_from([MaintenanceWindow(), MaintenanceWindow("22:00", "05:00"),
                        MaintenanceWindow("09:00", "17:00")]),
       st.integers(0, 23))
def test_no_offer_outside_the_gate_or_the_window(cars: dict[str, VehicleSnapshot],
                                                 window: MaintenanceWindow, hour: int) -> None:
    c = campaign(window=window, waves=(Wave(100, 0.9, 0.5),))
    now = NOW + hour * HOUR
    cars = {vin: replace(car, vin=vin) for vin, car in cars.items()}
    result = step(c, plan(c, VINS[:8], now), cars, now)
    offered = {cmd.vin for cmd in result.commands if cmd.kind == "offer"}
    for vin in offered:
        assert gate_reasons(cars.get(vin), c.gate, window, now) == []
    for vin in set(VINS[:8]) - offered:  # every other car says why it waits
        assert result.waiting[vin]


# ------------------------------------------------------------------------ actions

REPORTS = ["offered", "accepted", "rejected", "downloading", "downloaded", "installing",
           "succeeded", "failed", "rolled_back", "canceled", "bogus"]


@given(st.lists(st.tuples(st.sampled_from(REPORTS), st.integers(1, 4),
                          st.sampled_from(["", "expired: stale", "not_newer: 2.0.0"])),
                max_size=30))
def test_action_states_only_move_forward(reports: list[tuple[str, int, str]]) -> None:
    c = campaign(max_attempts=3)
    action = Action("c1", "V", 0).moved(ActionState.OFFERED, NOW, "gate passed")
    at = NOW
    for reported, attempt, detail in reports:
        at += 1000
        action = apply_report(c, action, reported, at, attempt, detail)
    progress = [(1, 0)] + [(t.attempt, RANK[ActionState(t.state)]) for t in action.history]
    assert progress == sorted(progress), progress
    assert len(set(progress)) == len(progress), progress
    assert action.attempt <= c.max_attempts
    with pytest.raises(ValueError, match="cannot (go|become)|a retry starts"):
        action.moved(ActionState.SCHEDULED, at, "back")  # never backwards


def test_rejections_retry_with_backoff_until_the_attempts_run_out() -> None:
    c = campaign(max_attempts=2, retry_base_s=60)
    offered = Action("c1", "V", 0).moved(ActionState.OFFERED, NOW, "gate passed")
    retried = apply_report(c, offered, "rejected", NOW + 1, 1, "busy: driving")
    assert (retried.state, retried.attempt) == (ActionState.SCHEDULED, 2)
    assert retried.next_attempt_at == NOW + 1 + backoff_ms(c, 1) == NOW + 1 + 60_000
    assert apply_report(c, retried, "rejected", NOW + 2, 1) == retried  # an old attempt's
    again = retried.moved(ActionState.OFFERED, NOW + 70_000, "gate passed")
    failed = apply_report(c, again, "rejected", NOW + 70_001, 2, "busy")
    assert failed.state is ActionState.FAILED
    assert "gave up after 2 attempts" in \
        failed.history[-1].reason
    # A security refusal is final at once: a retry would be refused again.
    tampered = apply_report(c, offered, "rejected", NOW + 1, 1, "bad_signature: tampered")
    assert tampered.state is ActionState.FAILED


def test_an_earlier_attempts_success_ends_a_later_offer_as_succeeded() -> None:
    # The offer was given up on while the car's success report was on its way; the car then
    # refuses the same release again as not newer, which must not count as an error.
    c = campaign(max_attempts=3, retry_base_s=60)
    first = Action("c1", "V", 0).moved(ActionState.OFFERED, NOW, "gate passed")
    given_up = first.moved(ActionState.SCHEDULED, NOW + 1, "offer expired",
                           retry_at=NOW + 60_001)
    second = given_up.moved(ActionState.OFFERED, NOW + 70_000, "gate passed")
    done = apply_report(c, second, "succeeded", NOW + 70_001, 1)
    assert (done.state, done.attempt) == (ActionState.SUCCEEDED, 2)
    assert done.history[-1].reason == "vehicle reported succeeded for attempt 1"
    assert apply_report(c, done, "rejected", NOW + 70_002, 2, "not_newer: 2.0.0") == done
    # Any other report of an older attempt still changes nothing.
    for reported in ("failed", "rolled_back", "installing", "rejected"):
        assert apply_report(c, second, reported, NOW + 70_001, 1) == second


# ------------------------------------------------------------------------ campaign


def run_wave(c: Campaign, actions: dict[str, Action], outcome: dict[str, str], now: int
             ) -> dict[str, Action]:
    for vin, final in outcome.items():
        a = actions[vin]
        for reported in ("accepted", "downloaded", "installing", final):
            a = apply_report(c, a, reported, now, a.attempt)
        actions[vin] = a
    return actions


def test_a_good_rollout_goes_wave_by_wave_to_completion() -> None:
    c = campaign()
    cars = {vin: parked(vin) for vin in VINS}
    actions = plan(c, VINS, NOW)
    now = NOW
    seen_waves = []
    for _ in range(20):
        cars = {vin: replace(car, ts=now) for vin, car in cars.items()}
        result = step(c, actions, cars, now)
        c, actions = result.campaign, result.actions
        offered = {cmd.vin for cmd in result.commands}
        assert all(actions[v].wave <= c.current_wave for v in offered)
        seen_waves.append(c.current_wave)
        actions = run_wave(c, actions, dict.fromkeys(offered, "succeeded"), now)
        if c.status is CampaignStatus.COMPLETED:
            break
        now += HOUR // 2
    assert c.status is CampaignStatus.COMPLETED
    assert seen_waves == sorted(seen_waves)
    assert set(seen_waves) == {0, 1, 2}
    assert all(a.state is ActionState.SUCCEEDED for a in actions.values())


@given(st.lists(st.sampled_from(["succeeded", "failed", "rolled_back"]), min_size=4,
                max_size=4))
def test_a_wave_at_its_error_threshold_never_advances(outcomes: list[str]) -> None:
    c = campaign(soak_s=0)
    cars = {vin: parked(vin) for vin in VINS}
    actions = plan(c, VINS, NOW)
    result = step(c, actions, cars, NOW)
    canary = sorted(cmd.vin for cmd in result.commands)
    assert len(canary) == 4  # 10 % of 40
    actions = run_wave(result.campaign, result.actions, dict(zip(canary, outcomes,
                                                                 strict=True)), NOW)
    after = step(result.campaign, actions, cars, NOW + HOUR)
    errors = sum(o != "succeeded" for o in outcomes)
    if errors / 4 >= 0.2:
        assert after.campaign.status is CampaignStatus.PAUSED
        assert after.campaign.current_wave == 0
        assert not after.commands
        assert after.campaign.pause_evidence["failed_or_rolled_back"] == errors
    else:
        assert after.campaign.current_wave == 1


def test_a_regression_during_soak_pauses_with_its_evidence() -> None:
    c = campaign()
    health = ([VehicleHealth(f"U{i}", True, 2.0, v12_rest_volts=12.1 + 0.01 * i)
               for i in range(6)]
              + [VehicleHealth(f"B{i}", False, 2.0, v12_rest_volts=12.6 + 0.01 * i)
                 for i in range(12)])
    actions = plan(c, VINS, NOW)
    canary = [v for v, a in actions.items() if a.wave == 0]
    actions = run_wave(c, {v: a.moved(ActionState.OFFERED, NOW, "gate") if v in canary else a
                           for v, a in actions.items()}, dict.fromkeys(canary, "succeeded"), NOW)
    result = step(c, actions, {v: parked(v) for v in VINS}, NOW + HOUR // 2, health)
    assert result.campaign.status is CampaignStatus.PAUSED
    assert result.campaign.pause_reason == "regression"
    (finding,) = result.campaign.pause_evidence["findings"]
    assert finding["indicator"] == "v12_rest_volts"
    assert finding["p_value"] < 0.01


def test_cancel_reaches_only_cars_that_have_not_started_installing() -> None:
    c = campaign()
    actions = {
        "A": Action("c1", "A", 0),
        "B": Action("c1", "B", 0).moved(ActionState.OFFERED, NOW, "g"),
        "C": Action("c1", "C", 0).moved(ActionState.INSTALLING, NOW, "r"),
        "D": Action("c1", "D", 0).moved(ActionState.SUCCEEDED, NOW, "r"),
    }
    result = cancel(c, actions, NOW + 1)
    assert result.campaign.status is CampaignStatus.CANCELED
    assert [(cmd.kind, cmd.vin) for cmd in result.commands] == [("cancel", "B")]
    assert {v: a.state for v, a in result.actions.items()} == {
        "A": ActionState.CANCELED, "B": ActionState.CANCELED, "C": ActionState.INSTALLING,
        "D": ActionState.SUCCEEDED}


def test_paused_and_draft_campaigns_offer_nothing() -> None:
    for status in (CampaignStatus.PAUSED, CampaignStatus.DRAFT, CampaignStatus.COMPLETED):
        c = campaign(status=status)
        assert not step(c, plan(c, VINS, NOW), {v: parked(v) for v in VINS}, NOW).commands
    scheduled = campaign(status=CampaignStatus.SCHEDULED, start_at=NOW + HOUR)
    assert not step(scheduled, plan(scheduled, VINS, NOW), {}, NOW).commands
    started = step(scheduled, plan(scheduled, VINS, NOW), {v: parked(v, ts=NOW + HOUR)
                                                          for v in VINS}, NOW + HOUR)
    assert started.campaign.status is CampaignStatus.RUNNING
    assert started.commands


# ------------------------------------------------------------------------ regression


@given(st.integers(0, 30), st.integers(0, 30), st.floats(0.01, 0.99))
def test_binomial_tail_matches_brute_force(k: int, n: int, p: float) -> None:
    k = min(k, n)
    brute = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_upper_tail(k, n, p) == pytest.approx(min(1.0, brute), abs=1e-9)


def test_no_regression_between_cohorts_from_one_distribution() -> None:
    rng = np.random.default_rng(7)
    cohort = [VehicleHealth(f"V{i}", i % 3 == 0, 3.0,
                            alerts={"dtc": int(rng.poisson(0.3))},
                            v12_rest_volts=float(rng.normal(12.6, 0.1)),
                            parked_12v_ah_per_day=float(rng.normal(1.2, 0.3)))
              for i in range(60)]
    verdict = compare(cohort)
    assert not verdict.regressed
    assert verdict.findings == []
    assert compare(cohort) == verdict  # deterministic


def test_cohorts_are_compared_within_themselves_even_with_few_canary_cars_each() -> None:
    # Three models with different normal voltages; two updated cars of two models and one of
    # the third rest 0.25 V below their own model's others. Pooled without strata the model
    # differences would hide it; per model alone each cohort is too small to decide.
    base = {"A": 12.45, "B": 12.6, "C": 12.75}
    cohort = []
    for model, n_updated in (("A", 2), ("B", 2), ("C", 1)):
        for i in range(5):
            updated = i < n_updated
            volts = base[model] + 0.01 * (i % 3) - (0.25 if updated else 0.0)
            cohort.append(VehicleHealth(f"{model}{i}", updated, 3.0, v12_rest_volts=volts,
                                        cohort=model))
    verdict = compare(cohort)
    assert verdict.regressed
    (finding,) = verdict.findings
    assert finding["cohorts"] == 3
    assert finding["worse_by_within_cohorts"] == pytest.approx(
        0.25, abs=0.02)
    healthy = [replace(v, v12_rest_volts=base[v.cohort] + 0.01 * (int(v.vin[1:]) % 3))
               for v in cohort]
    assert not compare(healthy).regressed


def test_alert_rate_regression_is_found_and_too_few_cars_decide_nothing() -> None:
    cohort = ([VehicleHealth(f"U{i}", True, 2.0, alerts={"weak_12v_battery": 2})
               for i in range(5)]
              + [VehicleHealth(f"B{i}", False, 2.0, alerts={"weak_12v_battery": int(i == 0)})
                 for i in range(20)])
    verdict = compare(cohort)
    assert verdict.regressed
    assert verdict.findings[0]["alert_type"] == "weak_12v_battery"
    few = compare(cohort[:2] + cohort[5:])
    assert not few.regressed
    assert "too few" in few.reason


def test_parked_draw_regression_is_found_within_models() -> None:
    # A module kept awake: updated cars draw ~29 Ah/day parked against ~1.2 Ah/day.
    rng = np.random.default_rng(3)
    cohort = [VehicleHealth(f"{model}{i}", i < 2, 3.0, cohort=model,
                            parked_12v_ah_per_day=float(rng.normal(28.8 if i < 2 else base,
                                                                   0.2)))
              for model, base in (("A", 1.2), ("B", 2.4)) for i in range(8)]
    verdict = compare(cohort)
    assert verdict.regressed
    (finding,) = verdict.findings
    assert finding["indicator"] == "parked_12v_ah_per_day"
    assert finding["updated_mean"] > 25
    assert finding["baseline_mean"] < 3
    assert finding["cohorts"] == 2
    assert finding["p_value"] < 0.01


def test_a_model_that_normally_draws_more_is_no_parked_draw_regression() -> None:
    # The look-alike: the canary is mostly model B, whose telematics unit normally draws
    # twice what model A's does. Pooled, the updated cars "draw more"; within each model
    # they draw what their siblings do.
    cohort = ([VehicleHealth(f"B{i}", i < 5, 3.0, cohort="B",
                             parked_12v_ah_per_day=2.4 + 0.05 * (i % 3)) for i in range(8)]
              + [VehicleHealth(f"A{i}", i < 1, 3.0, cohort="A",
                               parked_12v_ah_per_day=1.2 + 0.05 * (i % 3)) for i in range(12)])
    assert not compare(cohort).regressed


def test_a_significant_but_tiny_rise_in_parked_draw_does_not_stop_a_rollout() -> None:
    # 10 mA more dark current (0.24 Ah/day) on every updated car: significant, irrelevant.
    cohort = ([VehicleHealth(f"U{i}", True, 3.0, parked_12v_ah_per_day=1.44 + 0.001 * i)
               for i in range(20)]
              + [VehicleHealth(f"B{i}", False, 3.0, parked_12v_ah_per_day=1.2 + 0.001 * i)
                 for i in range(20)])
    assert not compare(cohort).regressed
    bigger = [replace(v, parked_12v_ah_per_day=v.parked_12v_ah_per_day + 0.6)
              if v.updated and v.parked_12v_ah_per_day is not None else v for v in cohort]
    (finding,) = compare(bigger).findings  # 35 mA more: relevant
    assert finding["indicator"] == "parked_12v_ah_per_day"


# ------------------------------------------------------------------------ offer expiry


def offered_campaign() -> tuple[Campaign, dict[str, Action]]:
    """A running campaign (1 h offers, 6 h gate age) whose canary car has an open offer."""
    c = campaign(offer_ttl_s=3600)
    actions = plan(c, VINS, NOW)
    canary = min(v for v, a in actions.items() if a.wave == 0)
    actions[canary] = actions[canary].moved(ActionState.OFFERED, NOW, "gate passed")
    return c, actions


def test_an_offer_expires_when_the_car_reported_past_it_without_answering() -> None:
    c, actions = offered_campaign()
    (vin,) = [v for v, a in actions.items() if a.state is ActionState.OFFERED]
    waiting = step(c, actions, {vin: parked(vin, ts=NOW + HOUR)}, NOW + HOUR + 1)
    assert waiting.actions[vin].state is ActionState.OFFERED  # not past the expiry yet
    expired = step(c, actions, {vin: parked(vin, ts=NOW + HOUR + 1)}, NOW + HOUR + 1)
    after = expired.actions[vin]
    assert (after.state, after.attempt) == (ActionState.SCHEDULED, 2)
    assert after.history[-1].reason == "offer expired unanswered; retrying"


@given(st.integers(0, 5 * HOUR), st.integers(0, HOUR))
def test_a_cloud_behind_the_car_never_expires_an_offer_too_early(lag: int, heard: int) -> None:
    """The store's view of the fleet may lag far behind the cars (a fleet simulated at 3600×
    lags hours behind in event time): while nothing the car sent after the expiry is in, and
    the fleet is within the gate's telemetry age of it, the offer stays open."""
    c, actions = offered_campaign()
    (vin,) = [v for v, a in actions.items() if a.state is ActionState.OFFERED]
    now = NOW + HOUR + lag
    result = step(c, actions, {vin: parked(vin, ts=NOW + heard)}, now)
    assert result.actions[vin].state is ActionState.OFFERED
    assert not [cmd for cmd in result.commands if cmd.vin == vin]


def test_a_silent_car_s_offer_expires_once_its_telemetry_could_not_vouch_for_it() -> None:
    c, actions = offered_campaign()
    (vin,) = [v for v, a in actions.items() if a.state is ActionState.OFFERED]
    limit = NOW + HOUR + int(c.gate.max_state_age_s * 1000)
    assert step(c, actions, {}, limit).actions[vin].state is ActionState.OFFERED
    assert step(c, actions, {}, limit + 1).actions[vin].state is ActionState.SCHEDULED


@given(st.integers(1, 30))
def test_a_small_fleet_with_the_default_waves_completes(n: int) -> None:
    """1 %, 10 %, 100 % of fewer than eleven cars leaves the 10 % wave empty (the canary
    already holds its one car): an empty wave is passed at once, never waited on."""
    vins = VINS[:n]
    c = replace(campaign(), waves=Campaign("d", RELEASE).waves, soak_s=3600)
    cars = {vin: parked(vin) for vin in vins}
    actions = plan(c, vins, NOW)
    now = NOW
    for _ in range(10):
        cars = {vin: replace(car, ts=now) for vin, car in cars.items()}
        result = step(c, actions, cars, now)
        c = result.campaign
        actions = run_wave(c, result.actions, dict.fromkeys(
            (cmd.vin for cmd in result.commands), "succeeded"), now)
        if c.status is CampaignStatus.COMPLETED:
            break
        now += HOUR
    assert c.status is CampaignStatus.COMPLETED
    assert all(a.state is ActionState.SUCCEEDED for a in actions.values())
