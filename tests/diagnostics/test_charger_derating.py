"""Charger derating: the foldback within sessions, not delivered/offered, and its look-alikes."""

from __future__ import annotations

from typing import Any

from diagnostics.charger_derating import ChargerDerating
from diagnostics.charger_pipeline import ChargerPipeline
from tests.diagnostics.charger_series import DAY_MS, T0, Charger, folding, sessions, steady


def run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pipeline = ChargerPipeline({"charger_derating": ChargerDerating()})
    alerts, _, _ = pipeline.process(records, {})
    return alerts


def opened(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["status"] == "open"]


def test_a_healthy_charger_delivering_what_cars_take_raises_nothing() -> None:
    c = Charger(offered_w=150_000)
    assert run(list(sessions(c, 10, steady(120_000)))) == []


def test_an_ac_car_on_a_dc_charger_takes_a_fraction_of_the_offer_all_session() -> None:
    """Delivered/offered = 7 % for the whole session: the car's limit, not a derating."""
    c = Charger(offered_w=150_000)
    assert run(list(sessions(c, 10, steady(11_000)))) == []


def test_taper_near_full_is_not_a_derating() -> None:
    """The car asks for less as its battery fills (from 80 % SoC on here): healthy."""
    c = Charger(offered_w=50_000)

    def taper(m: int) -> float:
        soc = 62.0 + 1.0 * m
        return 48_000.0 if soc < 80 else 48_000.0 * max(0.15, 1 - (soc - 80) / 25)

    records = list(sessions(c, 8, taper, soc0=62.0, soc_per_min=1.0))
    assert run(records) == []


def test_a_folding_charger_is_flagged_at_its_second_session() -> None:
    c = Charger(offered_w=150_000)
    first = c.session(T0, 40, folding(120_000, 0.7))
    assert run(first) == []  # one odd session is not an alert
    second = c.session(T0 + DAY_MS, 40, folding(120_000, 0.7))
    alerts = opened(run(first + second))
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["asset_kind"] == "charger"
    assert alert["asset_id"] == "CP-0001"
    assert alert["type"] == "charger_derating"
    assert alert["severity"] == "warning"
    assert alert["first_seen"] == second[-2]["ts"]  # at the end of the second session
    ev = alert["evidence"]
    assert 0.65 < ev["ratio"] < 0.75
    assert ev["derated_sessions"] == 2
    assert ev["offered_w"] == 150_000


def test_walk_in_cars_without_vin_are_enough() -> None:
    c = Charger(offered_w=22_000)
    alerts = opened(run(list(sessions(c, 3, folding(11_000, 0.6)))))
    assert len(alerts) >= 1
    assert alerts[0]["evidence"]["derated_sessions"] == 2


def test_one_car_limiting_itself_mid_session_among_healthy_ones_is_no_alert() -> None:
    c = Charger(offered_w=150_000)
    records = list(sessions(c, 3, steady(100_000)))
    records += c.session(T0 + 10 * 3_600_000, 40, folding(100_000, 0.5))  # a cold car
    records += list(sessions(c, 3, steady(100_000), start=T0 + DAY_MS))
    assert run(records) == []


def test_without_soc_there_is_no_verdict() -> None:
    """A taper cannot be told from a foldback without the SoC: the detector does not guess."""
    c = Charger(offered_w=150_000)
    assert run(list(sessions(c, 5, folding(120_000, 0.5), with_soc=False))) == []


def test_severe_foldback_is_critical_and_a_worsening_one_predicts_the_failure() -> None:
    c = Charger(offered_w=150_000)
    records: list[dict[str, Any]] = []
    for day, factor in enumerate((0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45)):
        records += c.session(T0 + day * DAY_MS, 40, folding(120_000, factor))
    alerts = opened(run(records))
    last = alerts[-1]
    assert last["severity"] == "critical"  # ratio 0.45 < 0.5
    assert last["evidence"]["ratio_trend_per_day"] < 0
    # About 0.05 per day down to the useful ratio 0.3 from 0.45: some three days ahead.
    predicted = last["predicted_failure_ts"]
    assert predicted is not None
    assert 1.5 * DAY_MS < predicted - last["last_seen"] < 5 * DAY_MS
    assert len({a["id"] for a in alerts}) == 1  # one alert, updated


def test_a_repaired_charger_resolves_the_alert() -> None:
    c = Charger(offered_w=150_000)
    records = list(sessions(c, 3, folding(120_000, 0.6)))
    records += list(sessions(c, 4, steady(120_000), start=T0 + 5 * DAY_MS))
    alerts = run(records)
    assert [a["status"] for a in alerts][0] == "open"
    assert alerts[-1]["status"] == "resolved"


def test_a_missed_session_end_is_judged_at_the_next_transaction() -> None:
    c = Charger(offered_w=150_000)
    records: list[dict[str, Any]] = []
    for i in range(3):  # the end statuses were lost
        records += [r for r in c.session(T0 + i * DAY_MS, 40, folding(120_000, 0.6))
                    if r["kind"] == "charger_meter"]
    assert len(opened(run(records))) == 1


def test_redelivered_records_change_nothing() -> None:
    c = Charger(offered_w=150_000)
    records = list(sessions(c, 3, folding(120_000, 0.6)))
    pipeline = ChargerPipeline()
    states: dict[str, Any] = {}
    first, _, outcomes = pipeline.process(records, states)
    again, changed, outcomes_again = pipeline.process(records, states)
    assert first
    assert again == []
    assert outcomes_again == []
    assert changed == set()
    assert len(outcomes) == 3
    assert pipeline.duplicates == len(records)
