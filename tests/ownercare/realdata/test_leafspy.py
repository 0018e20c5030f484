"""LeafSpy Pro logs -> rows, on logs written here in the app's format (see leafspy_logs)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ownercare.realdata import leafspy
from ownercare.realdata.convert import ConversionError, Reading, Row, assemble
from tests.ownercare.realdata.leafspy_logs import HEADER, VIN, row, write

T = 1_546_300_800  # 2019-01-01T00:00:00Z
BATTERY = "Vehicle.Powertrain.TractionBattery"


def readings(item: Row | ConversionError) -> dict[str, Reading]:
    assert isinstance(item, Row), item
    return {r.path: r for r in item.readings}


def test_a_row_maps_to_vss_paths_in_the_recordings_units(tmp_path: Path) -> None:
    cells = [3900] * 96
    cells[10], cells[40] = -3950, 3850  # cell 11 balancing (negative), cell 41 the lowest
    log = write(tmp_path / "Log_1.csv", [row(T, Speed="-3.6", SOC="352086", **{
        "Pack Amps": "-14.5", "TP-FL": "36.5", "TP-RR": "0", "Ambient": "77",
        "Power SW": "0", "Charge Mode": "2", "cells": cells})])
    (item,) = leafspy.rows([log])
    got = readings(item)
    assert isinstance(item, Row)
    assert item.ts_ms == T * 1000
    assert item.vin == VIN
    assert item.source == str(log)
    assert item.line == 2
    assert got["Vehicle.Speed"] == Reading("Vehicle.Speed", 3.6, "km/h")
    assert got[f"{BATTERY}.StateOfCharge.Current"].value == pytest.approx(35.2086)
    assert got[f"{BATTERY}.CurrentCurrent"].value == 14.5  # charging is positive in VSS
    assert got["Vehicle.LowVoltageSystemState"].value == "OFF"
    assert got[f"{BATTERY}.Charging.IsCharging"].value is True
    assert got["Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"] == Reading(
        "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure", 36.5, "psi")
    assert "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure" not in got  # 0: no reading
    assert got["Vehicle.Exterior.AirTemperature"] == Reading(
        "Vehicle.Exterior.AirTemperature", 77.0, "fahrenheit")
    voltages = got[f"{BATTERY}.CellVoltage.CellVoltages"]
    assert voltages.unit == "mV"
    assert voltages.vss_unit == "V"
    assert isinstance(voltages.value, list)
    assert voltages.value[10] == 3950
    assert got[f"{BATTERY}.CellVoltage.IdMin"].value == 41
    assert got[f"{BATTERY}.CellVoltage.IdMax"].value == 11
    temps = (got[f"{BATTERY}.Temperature.{k}"].value for k in ("Min", "Average", "Max"))
    assert list(temps) == [21.0, 22.0, 23.0]  # sensor 3 reads "none"
    assert not any(p.startswith("Vehicle.CurrentLocation") for p in got)


def test_a_headerless_file_continues_with_the_header_before_it(tmp_path: Path) -> None:
    first = write(tmp_path / "Log_1.csv", [row(T)])
    second = write(tmp_path / "Log_2.csv", [row(T + 5), row(T + 10)], header=False)
    got = list(leafspy.rows([first, second]))
    assert [r.ts_ms for r in got if isinstance(r, Row)] == [T * 1000, (T + 5) * 1000,
                                                             (T + 10) * 1000]
    assert [(r.source, r.line) for r in got if isinstance(r, Row)][1:] == [
        (str(second), 1), (str(second), 2)]


def test_a_log_without_any_header_is_an_error_on_its_first_line(tmp_path: Path) -> None:
    log = write(tmp_path / "Log_2.csv", [row(T)], header=False)
    (error,) = leafspy.rows([log])
    assert isinstance(error, ConversionError)
    assert str(error) == f"{log}:1: no LeafSpy header (a line starting with Date/Time) in this " \
                         "file or before it"


def test_a_csv_that_is_not_a_leafspy_log_says_so(tmp_path: Path) -> None:
    log = tmp_path / "other.csv"
    log.write_text("Date/Time,Speed\n01/01/2019 0:00:00,3\n")
    (error,) = leafspy.rows([log])
    assert str(error) == (f"{log}:1: the header has no 'epoch time', 'VIN' column; is this a "
                          "LeafSpy Pro log?")


def test_short_glued_and_garbled_rows_are_errors_naming_their_line(tmp_path: Path) -> None:
    good = row(T)
    glued = row(T + 1) + row(T + 2)
    garbled = row(T + 3, **{"Power SW": "-4010"})
    log = write(tmp_path / "Log_1.csv", [good, good[:100], glued, garbled,
                                         row(T + 4, SOH="eighty"), row(T + 5) + ["0"]])
    got = list(leafspy.rows([log]))
    assert [str(e) for e in got if isinstance(e, ConversionError)] == [
        f"{log}:3: 100 columns, the header has {len(HEADER)}",
        f"{log}:4: {2 * len(HEADER)} columns, the header has {len(HEADER)}; two rows run "
        "together?",
        f"{log}:5: column 'Power SW': '-4010' is neither 0 nor 1",
        f"{log}:6: column 'SOH': 'eighty' is not a number",
    ]
    # an extra cell past the header (a newer app version) is ignored
    assert [r.line for r in got if isinstance(r, Row)] == [2, 7]


def test_the_vin_can_be_replaced_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    log = write(tmp_path / "Log_1.csv", [row(T), row(T + 1, VIN="(1N4AZ0CP5DC999999)")])
    renamed = list(leafspy.rows([log], vin="WVWZZZ1KZ6W000001"))
    assert {r.vin for r in renamed if isinstance(r, Row)} == {"WVWZZZ1KZ6W000001"}
    errors = [str(e) for e in leafspy.rows([log]) if isinstance(e, ConversionError)]
    assert errors == [f"{log}:3: VIN '(1N4AZ0CP5DC999999)' is not 17 characters of A-H, J-N, "
                      "P, R-Z and 0-9"]


@given(st.floats(946_684_800, 4_102_444_799, allow_nan=False).map(lambda s: round(s, 3)))
def test_event_time_is_the_epoch_column_to_the_millisecond(seconds: float) -> None:
    cells = dict(zip(HEADER, row(seconds), strict=True))
    assert leafspy.row(cells, "log.csv", 2, None).ts_ms == round(seconds * 1000)


def test_an_event_time_outside_the_contracts_window_is_an_error() -> None:
    cells = dict(zip(HEADER, row(-4008), strict=True))
    with pytest.raises(ValueError, match="outside 2000-2100"):
        leafspy.row(cells, "log.csv", 2, None)


@given(psi=st.floats(0.25, 60).map(lambda v: round(v * 4) / 4),
       fahrenheit=st.floats(-40, 155).map(lambda v: round(v, 1)),
       cells=st.lists(st.tuples(st.integers(2500, 4200), st.booleans()).map(
           lambda c: -c[0] if c[1] else c[0]), min_size=96, max_size=96))
def test_converted_values_reach_the_message_in_the_contracts_units(
        psi: float, fahrenheit: float, cells: list[int]) -> None:
    cells_row = dict(zip(HEADER, row(T, cells=cells, Ambient=str(fahrenheit),
                                     **{"TP-FR": str(psi)}), strict=True))
    (line,) = assemble([leafspy.row(cells_row, "log.csv", 2, None)]).lines
    signals = orjson.loads(line)["payload"]["signals"]
    assert signals["Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure"] == round(
        psi * 6.894757293168)
    assert signals["Vehicle.Exterior.AirTemperature"] == pytest.approx(
        (fahrenheit - 32) * 5 / 9)
    voltages = signals[f"{BATTERY}.CellVoltage.CellVoltages"]
    assert voltages == pytest.approx([abs(c) / 1000 for c in cells])
    magnitudes = [abs(c) for c in cells]
    assert signals[f"{BATTERY}.CellVoltage.IdMin"] == magnitudes.index(min(magnitudes)) + 1
