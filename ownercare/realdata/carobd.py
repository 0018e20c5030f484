"""carOBD CSVs (a 2014 Toyota Etios 1.5 l petrol car's OBD-II PIDs, about 2 rows a second) -> rows.

Each file is one engine run: a header of 27 ``NAME ()`` columns, then rows of numbers (each
ending in a comma). Some files leave the last header columns out of every row (an older
logger); the first row sets the file's width, which must cover every mapped column, and a row
of another width (a line cut short when the logger stopped) is an error.

There is no date, VIN or odometer: event time is ``--start`` plus the file's
``ENGINE_RUN_TINE`` seconds (sic), the next file starting ``--gap-hours`` after the previous
one's last row, in the order given; the VIN is ``--vin``. So the timeline between recordings
is made up, and the silence detector learns its gaps from that choice.

The ECU only answers with the ignition on, so every row also says
``Vehicle.LowVoltageSystemState`` ``ON``, and ``...CombustionEngine.IsRunning`` is whether the
engine turns (``ENGINE_RPM`` above 0). Mapping (column, VSS 6.0 path, unit):

* ``VEHICLE_SPEED`` -> ``Vehicle.Speed`` (km/h)
* ``ENGINE_RPM`` -> ``Vehicle.Powertrain.CombustionEngine.Speed`` (rpm)
* ``COOLANT_TEMPERATURE`` -> ``Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature``
  (celsius)
* ``INTAKE_MANIFOLD_PRESSURE`` -> ``Vehicle.Powertrain.CombustionEngine.MAP`` (kPa)
* ``THROTTLE`` -> ``Vehicle.Powertrain.CombustionEngine.TPS`` (percent)
* ``FUEL_TANK`` -> ``Vehicle.Powertrain.FuelSystem.RelativeLevel`` (percent)
* ``CONTROL_MODULE_VOLTAGE`` -> ``Vehicle.LowVoltageBattery.CurrentVoltage`` (V): the ECU's
  supply is the 12 V system's voltage, with the engine running the alternator's charging
  voltage, never a resting one
* ``ENGINE_LOAD``, ``INTAKE_AIR_TEMP``, ``ABSOLUTE_BAROMETRIC_PRESSURE`` -> the VSS 4
  ``Vehicle.OBD.EngineLoad``, ``.IntakeTemp``, ``.BarometricPressure``: VSS 5 moved the OBD
  branch out of the standard, so a contract pinned to a later release drops them unless an
  overlay brings them back

The other columns (run time: the event time already says it; fuel trims, pedal and throttle
positions B/D/E, catalyst temperatures, evaporative purge, the since-codes-cleared counters)
are not mapped: no VSS signal or detector reads them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from ownercare.realdata.convert import (
    ConversionError,
    Reading,
    Row,
    check_ts,
    check_vin,
    number,
)
from ownercare.replay import parse_timestamp

RUN_TIME = "ENGINE_RUN_TINE"
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("VEHICLE_SPEED", "Vehicle.Speed", "km/h"),
    ("ENGINE_RPM", "Vehicle.Powertrain.CombustionEngine.Speed", "rpm"),
    ("COOLANT_TEMPERATURE", "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
     "celsius"),
    ("INTAKE_MANIFOLD_PRESSURE", "Vehicle.Powertrain.CombustionEngine.MAP", "kPa"),
    ("THROTTLE", "Vehicle.Powertrain.CombustionEngine.TPS", "percent"),
    ("FUEL_TANK", "Vehicle.Powertrain.FuelSystem.RelativeLevel", "percent"),
    ("CONTROL_MODULE_VOLTAGE", "Vehicle.LowVoltageBattery.CurrentVoltage", "V"),
    ("ENGINE_LOAD", "Vehicle.OBD.EngineLoad", "percent"),
    ("INTAKE_AIR_TEMP", "Vehicle.OBD.IntakeTemp", "celsius"),
    ("ABSOLUTE_BAROMETRIC_PRESSURE", "Vehicle.OBD.BarometricPressure", "kPa"),
)


def start_ms(text: str) -> int:
    """``--start`` as epoch ms; ValueError naming the option."""
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None


def _name(column: str) -> str:
    """``ENGINE_RPM ()`` -> ``ENGINE_RPM``."""
    return column.strip().removesuffix("()").strip()


def rows(paths: Iterable[Path], vin: str, first_ms: int, gap_hours: float
         ) -> Iterator[Row | ConversionError]:
    """Every row of the files, one engine run each, laid end to end with ``gap_hours``
    between them from ``first_ms``, or the error that row is; ValueError at once for a bad
    ``vin`` or ``gap_hours``."""
    car = check_vin(vin)
    if not gap_hours > 0:
        raise ValueError(f"--gap-hours must be positive, got {gap_hours}")
    return _rows(paths, car, first_ms, gap_hours)


def _rows(paths: Iterable[Path], car: str, first_ms: int, gap_hours: float
          ) -> Iterator[Row | ConversionError]:
    start = first_ms
    for path in paths:
        last = start
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.reader(handle)
            header = [_name(c) for c in next(reader, [])]
            if RUN_TIME not in header:
                yield ConversionError(str(path), 1, f"the header has no {RUN_TIME!r} column; "
                                      "is this a carOBD recording?")
                continue
            if header[-1] == "":
                header.pop()
            needed = max(header.index(c) for c, _p, _u in COLUMNS if c in header) + 1
            width: int | None = None
            for cells in reader:
                line = reader.line_num
                if cells and cells[-1].strip() == "":
                    cells = cells[:-1]  # each row ends in a comma
                if not cells:
                    continue
                if width is None:
                    width = len(cells)
                if len(cells) != width or not needed <= width <= len(header):
                    yield ConversionError(str(path), line, f"{len(cells)} columns, the header "
                                          f"has {len(header)} and the file's first row {width}")
                    continue
                try:
                    row = _row(dict(zip(header, cells, strict=False)), start, car,
                               str(path), line)
                except ValueError as exc:
                    yield ConversionError(str(path), line, str(exc))
                    continue
                last = max(last, row.ts_ms)
                yield row
        start = last + round(gap_hours * 3_600_000)


def _row(cells: dict[str, str], start: int, vin: str, source: str, line: int) -> Row:
    def get(column: str) -> float | None:
        try:
            return number(cells[column]) if column in cells else None
        except ValueError:
            raise ValueError(f"column {column!r}: {cells[column]!r} is not a number") from None

    run_time = get(RUN_TIME)
    if run_time is None or run_time < 0:
        raise ValueError(f"column {RUN_TIME!r}: no run time (seconds since engine start)")
    readings = [Reading("Vehicle.LowVoltageSystemState", "ON")]
    rpm = get("ENGINE_RPM")
    if rpm is not None:
        readings.append(Reading("Vehicle.Powertrain.CombustionEngine.IsRunning", rpm > 0))
    for column, path, unit in COLUMNS:
        value = get(column)
        if value is not None:
            readings.append(Reading(path, value, unit))
    return Row(check_ts(start + round(run_time * 1000)), vin, source, line, tuple(readings))
