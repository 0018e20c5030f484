"""Daily health indicators: mergeable aggregates, the 12 V rest clock, split independence."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.daily import (
    CELL_SPREAD,
    INDICATORS,
    PARKED_DRAW_12V,
    RESTING_12V,
    SOH,
    TIRE_INDICATORS,
    DailyIndicators,
    DayAggregate,
    utc_day,
)
from diagnostics.signals import (
    CELL_MAX,
    CELL_MIN,
    CHARGING,
    CURRENT,
    KEY_STATE,
    STATE_OF_HEALTH,
    VOLTAGE,
)
from ingest.contract import TIRE_PRESSURE_SIGNALS
from vocab.eventtime import DAY_MS

VIN = "WCRAAAAAAAAAAAAA1"
HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FRONT_LEFT = TIRE_PRESSURE_SIGNALS[0]


def tele(ts: int, vin: str = VIN, **signals: Any) -> dict[str, Any]:
    return {"kind": "vehicle_telemetry", "id": vin, "ts": ts, "seq": ts,
            "data": {"signals": signals}}


def sig(**named: Any) -> dict[str, Any]:
    names = {"key": KEY_STATE, "volts": VOLTAGE, "amps": CURRENT, "fl": FRONT_LEFT,
             "cmax": CELL_MAX, "cmin": CELL_MIN, "soh": STATE_OF_HEALTH,
             "hv_charging": CHARGING}
    return {names[k]: v for k, v in named.items()}


def ignition(ts: int, state: str) -> dict[str, Any]:
    return {"kind": "vehicle_event", "id": VIN, "ts": ts, "seq": ts,
            "data": {"type": "ignition", "state": state}}


def named(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The named health indicators' rows (the per-signal trends are keyed by VSS path)."""
    return [r for r in rows if r[3] in INDICATORS]


def by_indicator(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r[2], r[3]): r[4:] for r in rows}


def test_utc_day_is_the_event_times_calendar_day() -> None:
    assert utc_day(T0) == "2026-01-01"
    assert utc_day(T0 - 1) == "2025-12-31"
    assert utc_day(T0 + DAY_MS - 1) == "2026-01-01"


def test_indicators_are_aggregated_per_day() -> None:
    daily = DailyIndicators()
    daily.add([tele(T0 + 1, **sig(fl=250.0, cmax=4.10, cmin=4.05, soh=97.5)),
               tele(T0 + 2, **sig(fl=240.0)),
               tele(T0 + 3, **sig(fl=245.0, cmax=4.0)),  # spread needs both ends
               tele(T0 + DAY_MS, **sig(fl=230.0))])
    rows = by_indicator(daily.drain())
    fl = TIRE_INDICATORS[FRONT_LEFT]
    assert rows[("2026-01-01", fl)] == (3, 240.0, 250.0, 735.0, 245.0, T0 + 3)
    assert rows[("2026-01-02", fl)] == (1, 230.0, 230.0, 230.0, 230.0, T0 + DAY_MS)
    assert rows[("2026-01-01", CELL_SPREAD)][0] == 1
    assert abs(rows[("2026-01-01", CELL_SPREAD)][1] - 0.05) < 1e-9
    assert rows[("2026-01-01", SOH)] == (1, 97.5, 97.5, 97.5, 97.5, T0 + 1)
    assert daily.drain() == []  # drained


def test_resting_voltage_follows_the_12v_detectors_definition() -> None:
    daily = DailyIndicators()
    daily.add([
        tele(T0, **sig(key="ON", volts=14.1)),  # driving: DC-DC charging
        tele(T0 + HOUR, **sig(key="OFF", volts=12.9)),  # key-off: the rest starts
        tele(T0 + 3 * HOUR, **sig(volts=12.7)),  # 2 h: surface charge, not resting
        tele(T0 + 5 * HOUR, **sig(volts=12.62)),  # 4 h+: resting
        tele(T0 + 6 * HOUR, **sig(volts=13.9, amps=5.0)),  # top-up: restarts the rest
        tele(T0 + 9 * HOUR, **sig(volts=12.7)),  # 3 h after the top-up: not yet
        tele(T0 + 10 * HOUR + 1, **sig(volts=12.6)),  # resting again
    ])
    row = by_indicator(daily.drain())[("2026-01-01", RESTING_12V)]
    assert row == (2, 12.6, 12.62, 12.62 + 12.6, 12.6, T0 + 10 * HOUR + 1)


def test_rest_clock_survives_flushes_and_honours_ignition_events() -> None:
    daily = DailyIndicators()
    daily.add([ignition(T0, "OFF")])
    assert daily.drain() == []
    daily.add([tele(T0 + 4 * HOUR, **sig(volts=12.5))])
    assert by_indicator(daily.drain())[("2026-01-01", RESTING_12V)][0] == 1
    daily.add([ignition(T0 + 5 * HOUR, "ON"), tele(T0 + 10 * HOUR, **sig(volts=12.5))])
    assert ("2026-01-01", RESTING_12V) not in by_indicator(daily.drain())


def test_parked_draw_is_the_dark_current_per_parked_day() -> None:
    daily = DailyIndicators()
    daily.add([
        tele(T0, **sig(key="ON", volts=14.1, amps=9.0)),  # driving: DC-DC charging
        tele(T0 + HOUR, **sig(key="OFF", volts=12.9, amps=-0.8)),  # key-off: modules awake
        tele(T0 + HOUR + 20 * 60_000, **sig(volts=12.8, amps=-0.3)),  # still settling
        tele(T0 + 2 * HOUR, **sig(volts=12.7, amps=-0.05)),  # asleep: 1.2 Ah/day
        tele(T0 + 3 * HOUR, **sig(amps=-0.06)),  # the voltage may be dropped: still counts
        tele(T0 + 4 * HOUR, **sig(volts=13.9, amps=5.0)),  # top-up: not a draw
        tele(T0 + 4 * HOUR + 10 * 60_000, **sig(volts=12.9, amps=-0.4)),  # settling again
        tele(T0 + 6 * HOUR, **sig(volts=12.7, amps=-0.04, hv_charging=True)),  # charging
        tele(T0 + 7 * HOUR, **sig(volts=12.7, amps=-0.04)),
    ])
    n, lo, hi, total, last, last_ts = by_indicator(daily.drain())[("2026-01-01",
                                                                   PARKED_DRAW_12V)]
    assert (n, last_ts) == (3, T0 + 7 * HOUR)
    assert (lo, hi) == (0.96, 1.44)
    assert abs(total / n - (1.2 + 1.44 + 0.96) / 3) < 1e-9


def test_a_module_kept_awake_shows_in_the_parked_draw_but_a_long_drive_does_not() -> None:
    """The look-alike: a car that drives a lot draws big currents from the 12 V while ON, and
    a long HV charge keeps electronics awake; neither is parked draw. A car whose module
    stays awake while parked (the bad release) draws ~29 Ah/day."""
    healthy, awake = DailyIndicators(), DailyIndicators()
    records_healthy = [tele(T0, **sig(key="ON", volts=14.0, amps=-25.0))]
    records_healthy += [tele(T0 + h * HOUR, **sig(key="ON", volts=14.0, amps=-20.0))
                        for h in range(1, 6)]  # an ON car with a heavy load: not parked
    records_healthy += [tele(T0 + 6 * HOUR, **sig(key="OFF", volts=12.8, amps=-0.05))]
    records_healthy += [tele(T0 + h * HOUR, **sig(volts=12.7, amps=-1.5, hv_charging=True))
                        for h in range(7, 12)]  # awake because it charges
    records_healthy += [tele(T0 + h * HOUR, **sig(volts=12.7, amps=-0.05))
                        for h in range(12, 20)]
    healthy.add(records_healthy)
    awake.add([tele(T0, **sig(key="OFF", volts=12.8, amps=-1.2))]
              + [tele(T0 + h * HOUR, **sig(volts=12.5, amps=-1.2)) for h in range(1, 20)])
    healthy_row = by_indicator(healthy.drain())[("2026-01-01", PARKED_DRAW_12V)]
    awake_row = by_indicator(awake.drain())[("2026-01-01", PARKED_DRAW_12V)]
    assert healthy_row[2] == 1.2
    assert healthy_row[0] == 8
    assert abs(awake_row[3] / awake_row[0] - 28.8) < 1e-9


def test_unknown_key_state_gives_no_parked_draw() -> None:
    daily = DailyIndicators()  # a fresh worker: nothing known about the key
    daily.add([tele(T0 + 10 * HOUR, **sig(amps=-0.05, key="UNDEFINED"))])
    assert named(daily.drain()) == []


def test_unknown_key_state_gives_no_resting_voltage() -> None:
    daily = DailyIndicators()  # a fresh worker: nothing known about the key
    daily.add([tele(T0 + 10 * HOUR, **sig(volts=12.5, key="UNDEFINED"))])
    assert named(daily.drain()) == []


def test_records_are_ordered_by_event_time_within_a_flush() -> None:
    daily = DailyIndicators()
    # Arrival order differs from event order: the key-off must still come first.
    daily.add([tele(T0 + 5 * HOUR, **sig(volts=12.6)), tele(T0, **sig(key="OFF"))])
    assert by_indicator(daily.drain())[("2026-01-01", RESTING_12V)][0] == 1


def test_non_numeric_and_foreign_records_are_ignored() -> None:
    daily = DailyIndicators()
    daily.add([tele(T0, **sig(fl=True)),
               {"kind": "charger_status", "id": "CP-1", "ts": T0, "seq": 1,
                "data": {"connectorId": 1, "status": "Available", "errorCode": "NoError"}}])
    assert daily.drain() == []


def test_every_numeric_signal_gets_a_daily_trend_under_its_path() -> None:
    daily = DailyIndicators()
    daily.add([tele(T0 + 1, **{"Vehicle.Speed": 50.0, "Vehicle.TraveledDistance": 1000,
                               "Vehicle.Acme.HeatPump.Cop": 3.0, "Vehicle.IsMoving": True,
                               "Vehicle.LowVoltageSystemState": "ON"}),
               tele(T0 + 2, **{"Vehicle.Speed": 70.0, "Vehicle.TraveledDistance": 1500}),
               tele(T0 + DAY_MS, **{"Vehicle.Speed": 10.0})])
    rows = by_indicator(daily.drain())
    assert rows[("2026-01-01", "Vehicle.Speed")] == (2, 50.0, 70.0, 120.0, 70.0, T0 + 2)
    assert rows[("2026-01-02", "Vehicle.Speed")] == (1, 10.0, 10.0, 10.0, 10.0, T0 + DAY_MS)
    assert rows[("2026-01-01", "Vehicle.TraveledDistance")] == (
        2, 1000.0, 1500.0, 2500.0, 1500.0, T0 + 2)
    assert rows[("2026-01-01", "Vehicle.Acme.HeatPump.Cop")][0] == 1  # a private signal too
    assert ("2026-01-01", "Vehicle.IsMoving") not in rows  # booleans and strings: no trend
    assert ("2026-01-01", "Vehicle.LowVoltageSystemState") not in rows
    assert daily.drain() == []


def test_signal_trends_can_wait_for_a_later_drain_or_be_forgotten() -> None:
    daily = DailyIndicators()
    daily.add([tele(T0 + 1, **{"Vehicle.Speed": 50.0, FRONT_LEFT: 250.0})])
    named = by_indicator(daily.drain(signals=False))
    assert ("2026-01-01", "tire_pressure_row1_left_kpa") in named
    assert ("2026-01-01", "Vehicle.Speed") not in named
    daily.add([tele(T0 + 2, **{"Vehicle.Speed": 70.0})])
    rows = by_indicator(daily.drain())
    assert rows[("2026-01-01", "Vehicle.Speed")] == (2, 50.0, 70.0, 120.0, 70.0, T0 + 2)
    assert rows[("2026-01-01", FRONT_LEFT)][0] == 1
    daily.add([tele(T0 + 3, **{"Vehicle.Speed": 90.0})])
    daily.forget_signal_trends()
    assert daily.drain() == []


# ---------------------------------------------------------------------------- properties

readings = st.lists(
    st.tuples(st.integers(0, 3 * DAY_MS), st.floats(100, 400, allow_nan=False)),
    min_size=1, max_size=40)


@given(readings, st.data())
@settings(max_examples=200, deadline=None)
def test_any_flush_split_gives_the_same_daily_aggregate(
        values: list[tuple[int, float]], data: st.DataObject) -> None:
    """Flushing at any points, with or without the signal trends (the last one with), and
    merging the rows (as the database upsert does) gives the aggregate of one big flush:
    same n, min, max, last; the same sum up to rounding."""
    records = [tele(T0 + ts, **sig(fl=v)) for ts, v in values]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records)), max_size=5)))
    with_trends = [*data.draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts))),
                   True]

    whole = DailyIndicators()
    whole.add(records)
    expected = {k: DayAggregate(*v) for k, v in by_indicator(whole.drain()).items()}

    split = DailyIndicators()
    merged: dict[tuple[str, str], DayAggregate] = {}
    start = 0
    for cut, trends in zip([*cuts, len(records)], with_trends, strict=True):
        split.add(records[start:cut])
        start = cut
        for key, value in by_indicator(split.drain(signals=trends)).items():
            agg = DayAggregate(*value)
            merged[key] = merged[key].merge(agg) if key in merged else agg
    assert merged.keys() == expected.keys()
    for key, agg in expected.items():
        got = merged[key]
        assert (got.n, got.min, got.max, got.last_ts) == (agg.n, agg.min, agg.max, agg.last_ts)
        assert abs(got.sum - agg.sum) <= 1e-9 * abs(agg.sum)
        if len({ts for ts, _ in values if T0 + ts == agg.last_ts}) == 1:
            assert got.last == agg.last


@given(st.lists(st.tuples(st.integers(0, 10), st.floats(-1e6, 1e6, allow_nan=False)),
                min_size=1, max_size=20))
def test_merging_a_reading_again_keeps_min_max_last(values: list[tuple[int, float]]) -> None:
    """The redelivery guarantee: replaying readings can inflate n and sum only."""
    agg = DayAggregate.of(values[0][1], values[0][0])
    for ts, v in values[1:]:
        agg.add(v, ts)
    again = agg.merge(agg)
    assert (again.min, again.max, again.last, again.last_ts) == (agg.min, agg.max, agg.last,
                                                                agg.last_ts)
    assert again.n == 2 * agg.n
