"""carOBD CSVs -> rows, on the real excerpt in tests/fixtures/realdata/carobd."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownercare.realdata import carobd
from ownercare.realdata.convert import ConversionError, Row

FIXTURES = Path(__file__).parents[2] / "fixtures" / "realdata" / "carobd"
VIN = "MBJB29BT000000001"
START = carobd.start_ms("2019-01-07T07:00:00Z")
HOUR = 3_600_000


def test_each_recording_is_an_engine_run_laid_after_the_previous_one() -> None:
    files = [FIXTURES / "drive1.csv", FIXTURES / "live6.csv"]
    got = list(carobd.rows(files, VIN, START, gap_hours=12))
    assert all(isinstance(r, Row) for r in got)
    rows = [r for r in got if isinstance(r, Row)]
    drive, live = rows[:120], rows[120:]
    assert len(live) == 40  # live6's rows have 24 cells: the last 3 columns are not logged
    assert drive[0].ts_ms == START
    assert drive[-1].ts_ms == START + 56_000
    assert live[0].ts_ms == drive[-1].ts_ms + 12 * HOUR
    first = {r.path: r for r in drive[-1].readings}
    assert first["Vehicle.Speed"].value == 13.0
    assert first["Vehicle.Powertrain.CombustionEngine.Speed"].value == 980.25
    assert first["Vehicle.Powertrain.CombustionEngine.IsRunning"].value is True
    assert first["Vehicle.LowVoltageBattery.CurrentVoltage"].value == 13.652
    assert first["Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature"].unit == \
        "celsius"
    assert first["Vehicle.LowVoltageSystemState"].value == "ON"
    assert (drive[0].source, drive[0].line) == (str(files[0]), 2)
    before_start = {r.path: r for r in drive[0].readings}
    assert before_start["Vehicle.Powertrain.CombustionEngine.IsRunning"].value is False


def test_a_row_cut_short_is_an_error_with_its_line(tmp_path: Path) -> None:
    lines = (FIXTURES / "drive1.csv").read_text().splitlines()
    cut = tmp_path / "drive.csv"
    cut.write_text("\n".join([*lines[:5], lines[5][:40], *lines[6:8]]) + "\n")
    got = list(carobd.rows([cut], VIN, START, 12))
    errors = [str(e) for e in got if isinstance(e, ConversionError)]
    assert errors == [f"{cut}:6: 4 columns, the header has 27 and the file's first row 27"]
    assert len([r for r in got if isinstance(r, Row)]) == 6


def test_a_file_that_is_not_carobd_says_so(tmp_path: Path) -> None:
    other = tmp_path / "x.csv"
    other.write_text("timestamp,vin,signal,value\n")
    (error,) = carobd.rows([other], VIN, START, 12)
    assert str(error) == (f"{other}:1: the header has no 'ENGINE_RUN_TINE' column; is this a "
                          "carOBD recording?")


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="--start: timestamp 'yesterday' is neither"):
        carobd.start_ms("yesterday")
    with pytest.raises(ValueError, match="--gap-hours must be positive, got 0"):
        carobd.rows([], VIN, START, 0)
    with pytest.raises(ValueError, match="VIN 'ABC' is not 17 characters"):
        carobd.rows([], "ABC", START, 12)
