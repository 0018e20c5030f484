"""Units, cells and the contract filter shared by the real-data converters."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.contract import MIN_TS_MS, SIGNALS, validate
from ownercare.realdata.convert import (
    Reading,
    Row,
    assemble,
    convert_unit,
    number,
)

VIN = "1N4AZ0CP5DC999999"
PRESSURE = "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"
UNKNOWN = "Vehicle.OBD.EngineLoad"  # VSS 4 only: not in the contract


def test_known_conversions() -> None:
    assert convert_unit(32.0, "fahrenheit", "celsius") == pytest.approx(0.0)
    assert convert_unit(212.0, "fahrenheit", "Celsius") == pytest.approx(100.0)
    assert convert_unit(36.0, "psi", "kPa") == pytest.approx(248.21, abs=0.01)
    assert convert_unit(52.5, "km", "m") == pytest.approx(52_500.0)
    assert convert_unit(3912.0, "mV", "V") == pytest.approx(3.912)
    assert convert_unit(60.0, "mph", "km/h") == pytest.approx(96.56, abs=0.01)


def test_unlike_or_unknown_units_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="cannot convert psi .pressure. to V .voltage."):
        convert_unit(1.0, "psi", "V")
    with pytest.raises(ValueError, match="unknown unit 'furlong'"):
        convert_unit(1.0, "furlong", "m")


_SAME_DIMENSION = st.sampled_from([("fahrenheit", "celsius"), ("km", "m"), ("mi", "km"),
                                   ("psi", "kPa"), ("mV", "V"), ("kW", "W"), ("mph", "km/h")])


@given(_SAME_DIMENSION, st.floats(-1e6, 1e6, allow_nan=False))
def test_a_conversion_and_its_inverse_give_the_value_back(pair: tuple[str, str],
                                                          value: float) -> None:
    there = convert_unit(value, *pair)
    assert convert_unit(there, pair[1], pair[0]) == pytest.approx(value, rel=1e-9, abs=1e-6)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_cell_reads_back_as_the_number_written(value: float) -> None:
    assert number(repr(value)) == value
    assert number(f" {value!r} ") == value


@pytest.mark.parametrize("cell", ["", "  ", "na", "N/A", "none", "nan", "-"])
def test_cells_the_logger_left_empty_are_missing_values(cell: str) -> None:
    assert number(cell) is None


@pytest.mark.parametrize("cell", ["abc", "1,5", "inf", "0x10", "12 V"])
def test_other_text_is_not_a_number(cell: str) -> None:
    with pytest.raises(ValueError, match="float|finite"):
        number(cell)


def _row(ts: int, *readings: Reading, line: int = 2) -> Row:
    return Row(ts, VIN, "log.csv", line, readings)


T0 = MIN_TS_MS + 1_000_000_000


def test_messages_take_the_contracts_units_and_types_and_replay_validates_them() -> None:
    out = assemble([_row(T0, Reading(PRESSURE, 36.0, "psi"),
                         Reading("Vehicle.Exterior.AirTemperature", 50.0, "fahrenheit"),
                         Reading("Vehicle.LowVoltageSystemState", "ON"))])
    (line,) = out.lines
    body = orjson.loads(line)
    record = validate(body["topic"], orjson.dumps(body["payload"]))
    signals = record["data"]["signals"]
    assert signals[PRESSURE] == pytest.approx(248.21, abs=0.5)  # a whole kPa in VSS 6.0
    assert signals["Vehicle.Exterior.AirTemperature"] == pytest.approx(10.0)
    assert signals["Vehicle.LowVoltageSystemState"] == "ON"
    assert body["topic"] == f"vehicles/{VIN}/telemetry"


def test_paths_the_contract_does_not_know_are_counted_and_left_out_unless_kept() -> None:
    rows = [_row(T0, Reading(UNKNOWN, 40.0, "percent"), Reading("Vehicle.Speed", 50.0, "km/h"))]
    out = assemble(rows)
    assert out.dropped == {(UNKNOWN, "not in the contract"): 1}
    assert UNKNOWN not in orjson.loads(out.lines[0])["payload"]["signals"]
    kept = assemble(rows, keep_unknown=True)
    assert orjson.loads(kept.lines[0])["payload"]["signals"][UNKNOWN] == 40.0
    assert not kept.dropped


def test_a_value_the_contract_rejects_is_dropped_alone_and_counted() -> None:
    out = assemble([_row(T0, Reading("Vehicle.Speed", 5000.0, "km/h"),
                         Reading("Vehicle.LowVoltageBattery.CurrentVoltage", 12.6, "V"))])
    assert out.dropped == {("Vehicle.Speed", "out_of_range"): 1}
    assert orjson.loads(out.lines[0])["payload"]["signals"] == {
        "Vehicle.LowVoltageBattery.CurrentVoltage": 12.6}


def test_a_row_left_without_signals_sends_nothing() -> None:
    out = assemble([_row(T0, Reading(UNKNOWN, 40.0, "percent"))])
    assert out.lines == []
    assert out.empty_rows == 1


def test_a_signal_without_a_contract_unit_gets_the_vss_one() -> None:
    cells = "Vehicle.Powertrain.TractionBattery.CellVoltage.CellVoltages"
    assert SIGNALS[cells].max == 5  # volts, though the catalogue names no unit
    out = assemble([_row(T0, Reading(cells, [3901.0, 3899.0], "mV", "V"))])
    assert orjson.loads(out.lines[0])["payload"]["signals"][cells] == pytest.approx(
        [3.901, 3.899])


@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from([VIN, "WVWZZZ1KZ6W000001"])),
                min_size=1, max_size=40))
def test_messages_come_in_event_time_order_with_each_cars_seq_counting_up(
        stamps: list[tuple[int, str]]) -> None:
    rows = [Row(T0 + ts, vin, "log.csv", n, (Reading("Vehicle.Speed", 1.0, "km/h"),))
            for n, (ts, vin) in enumerate(stamps, start=2)]
    out = assemble(rows)
    payloads = [(orjson.loads(x)["topic"], orjson.loads(x)["payload"]) for x in out.lines]
    assert [p["ts"] for _t, p in payloads] == sorted(T0 + ts for ts, _v in stamps)
    for vin in {v for _t, v in stamps}:
        seqs = [p["seq"] for t, p in payloads if t == f"vehicles/{vin}/telemetry"]
        assert seqs == list(range(len(seqs)))
    assert out.vehicle_days == len({(v, (T0 + ts) // 86_400_000) for ts, v in stamps})
    assert out.first_ts == min(
        T0 + ts for ts, _v in stamps)
