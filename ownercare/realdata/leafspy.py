"""LeafSpy Pro logs (a Nissan Leaf's CAN data, read by the LeafSpy app over OBD-II) -> rows.

A LeafSpy log is a CSV file, one row every few seconds while the app is connected (the car on,
or charging). Its header starts with ``Date/Time``; a day's later files may come without a
header (the app goes on logging the same columns): such a file takes the header of the file
before it on the command line. The app's versions add columns at the end, so columns are
found by name, and up to ``MAX_EXTRA_CELLS`` cells past the header's last column (a version
that added columns without writing a new header) are ignored; a row shorter than its header,
or far longer, is an error.

Event time is the ``epoch time`` column (UTC seconds, with a fraction in newer versions);
``Date/Time`` is the phone's local time.
Empty, ``na`` and ``none`` cells are values the app did not get. Location (``Lat``, ``Long``,
``Elv``) is left out: no detector uses it and it is where somebody lives.

The mapping (column, VSS path, unit); derived values say how:

* ``Speed`` (km/h) -> ``Vehicle.Speed``, its magnitude (reversing reads negative)
* ``Odo(km)`` -> ``Vehicle.TraveledDistance`` (km)
* ``Power SW`` 1 / 0 -> ``Vehicle.LowVoltageSystemState`` ``ON`` / ``OFF``
* ``12v Bat Volts`` -> ``Vehicle.LowVoltageBattery.CurrentVoltage`` (V); ``12v Bat Amps`` is
  not mapped (its sign is not documented, and it is almost always ``na``)
* ``SOC`` (ten-thousandths of a percent) -> ``...TractionBattery.StateOfCharge.Current``
* ``SOH`` -> ``...TractionBattery.StateOfHealth`` (percent)
* ``Pack Volts`` -> ``...TractionBattery.CurrentVoltage`` (V); ``Pack Amps`` negated ->
  ``...TractionBattery.CurrentCurrent`` (A; LeafSpy counts discharge positive, VSS charge)
* ``Max CP mV`` / ``Min CP mV`` -> ``...TractionBattery.CellVoltage.Max`` / ``.Min``;
  ``CP1`` .. ``CP96`` -> ``...CellVoltage.CellVoltages`` (V) and the numbers of the lowest and
  highest cells -> ``...CellVoltage.IdMin`` / ``.IdMax`` (1 = ``CP1``). LeafSpy writes a cell
  whose balancing shunt is on as a negative value; its magnitude is the voltage (``Max CP mV``
  and ``Min CP mV`` agree with the magnitudes)
* ``Pack T1 C`` .. ``Pack T4 C`` (the sensors that read) -> ``...TractionBattery.Temperature``
  ``.Average``, ``.Min``, ``.Max`` (celsius)
* ``Charge Mode`` not 0 -> ``...TractionBattery.Charging.IsCharging``
* ``TP-FL``, ``TP-FR``, ``TP-RL``, ``TP-RR`` (psi; 0 = no TPMS reading yet) ->
  ``Vehicle.Chassis.Axle.Row{1,2}.Wheel.{Left,Right}.Tire.Pressure``
* ``Ambient`` (fahrenheit) -> ``Vehicle.Exterior.AirTemperature``
* ``Motor Pwr(100w)`` (newer versions: ``Motor Pwr(w)``) ->
  ``Vehicle.Powertrain.ElectricMotor.Power``: watts under both names (the values top out at
  80000, the Leaf's 80 kW motor)
* ``Motor Temp`` (fahrenheit) -> ``Vehicle.Powertrain.ElectricMotor.Temperature`` (the motor,
  not its coolant)
"""

from __future__ import annotations

import csv
import re
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

TIME = "epoch time"
REQUIRED = (TIME, "VIN")
# An app version adds a few columns at a time; many more cells than the header names is two
# rows written on one line.
MAX_EXTRA_CELLS = 5
_CELL = re.compile(r"CP(\d+)")
_TYRES = (("TP-FL", "Row1.Wheel.Left"), ("TP-FR", "Row1.Wheel.Right"),
          ("TP-RL", "Row2.Wheel.Left"), ("TP-RR", "Row2.Wheel.Right"))
_PACK_TEMPS = ("Pack T1 C", "Pack T2 C", "Pack T3 C", "Pack T4 C")
BATTERY = "Vehicle.Powertrain.TractionBattery"


def rows(paths: Iterable[Path], vin: str | None = None) -> Iterator[Row | ConversionError]:
    """Every data row of the files, in file order, or the error that row is; ``vin``
    replaces the log's own VIN (to publish results without it)."""
    header: list[str] | None = None
    for path in paths:
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.reader(handle)
            for cells in reader:
                line = reader.line_num
                if not cells or all(not c.strip() for c in cells):
                    continue
                if cells[0].strip().lstrip("\ufeff") == "Date/Time":
                    header = [c.strip().lstrip("\ufeff") for c in cells]
                    missing = [c for c in REQUIRED if c not in header]
                    if missing:
                        yield ConversionError(str(path), line, "the header has no "
                                              + ", ".join(repr(m) for m in missing)
                                              + " column; is this a LeafSpy Pro log?")
                        header = None
                        break
                    continue
                if header is None:
                    yield ConversionError(str(path), line, "no LeafSpy header (a line "
                                          "starting with Date/Time) in this file or before it")
                    break
                if not len(header) <= len(cells) <= len(header) + MAX_EXTRA_CELLS:
                    yield ConversionError(str(path), line, f"{len(cells)} columns, the header "
                                          f"has {len(header)}" + (
                                              "; two rows run together?"
                                              if len(cells) > len(header) else ""))
                    continue
                try:  # cells past the header: a newer app version's columns, unnamed here
                    yield row(dict(zip(header, cells[:len(header)], strict=True)), str(path),
                              line, vin)
                except ValueError as exc:
                    yield ConversionError(str(path), line, str(exc))


def row(cells: dict[str, str], source: str, line: int, vin: str | None) -> Row:
    """One LeafSpy row as readings; ValueError naming the column at fault."""
    def get(column: str) -> float | None:
        if column not in cells:
            return None
        try:
            return number(cells[column])
        except ValueError:
            raise ValueError(f"column {column!r}: {cells[column]!r} is not a number") from None

    seconds = get(TIME)
    if seconds is None:
        raise ValueError(f"column {TIME!r} is empty")
    ts_ms = check_ts(round(seconds * 1000))
    car = check_vin(vin if vin is not None else cells["VIN"].strip())
    out: list[Reading] = []

    def put(path: str, value: float | None, unit: str | None) -> None:
        if value is not None:
            out.append(Reading(path, value, unit))

    speed = get("Speed")
    put("Vehicle.Speed", abs(speed) if speed is not None else None, "km/h")
    put("Vehicle.TraveledDistance", get("Odo(km)"), "km")
    switch = get("Power SW")
    if switch is not None:
        if switch not in (0, 1):
            raise ValueError(f"column 'Power SW': {cells['Power SW']!r} is neither 0 nor 1")
        out.append(Reading("Vehicle.LowVoltageSystemState", "ON" if switch else "OFF"))
    put("Vehicle.LowVoltageBattery.CurrentVoltage", get("12v Bat Volts"), "V")
    soc = get("SOC")
    put(f"{BATTERY}.StateOfCharge.Current", soc / 10_000 if soc is not None else None,
        "percent")
    put(f"{BATTERY}.StateOfHealth", get("SOH"), "percent")
    put(f"{BATTERY}.CurrentVoltage", get("Pack Volts"), "V")
    amps = get("Pack Amps")
    put(f"{BATTERY}.CurrentCurrent", -amps if amps is not None else None, "A")
    put(f"{BATTERY}.CellVoltage.Max", get("Max CP mV"), "mV")
    put(f"{BATTERY}.CellVoltage.Min", get("Min CP mV"), "mV")
    cells_mv = _cell_voltages(cells)
    if cells_mv:
        out.append(Reading(f"{BATTERY}.CellVoltage.CellVoltages", cells_mv, "mV", "V"))
        out.append(Reading(f"{BATTERY}.CellVoltage.IdMin",
                           float(cells_mv.index(min(cells_mv)) + 1)))
        out.append(Reading(f"{BATTERY}.CellVoltage.IdMax",
                           float(cells_mv.index(max(cells_mv)) + 1)))
    temps = [t for t in (get(c) for c in _PACK_TEMPS) if t is not None]
    if temps:
        put(f"{BATTERY}.Temperature.Average", sum(temps) / len(temps), "celsius")
        put(f"{BATTERY}.Temperature.Min", min(temps), "celsius")
        put(f"{BATTERY}.Temperature.Max", max(temps), "celsius")
    mode = get("Charge Mode")
    if mode is not None:
        out.append(Reading(f"{BATTERY}.Charging.IsCharging", mode != 0))
    for column, wheel in _TYRES:
        psi = get(column)
        put(f"Vehicle.Chassis.Axle.{wheel}.Tire.Pressure", psi or None, "psi")
    put("Vehicle.Exterior.AirTemperature", get("Ambient"), "fahrenheit")
    power = get("Motor Pwr(100w)")
    put("Vehicle.Powertrain.ElectricMotor.Power",
        power if power is not None else get("Motor Pwr(w)"), "W")
    put("Vehicle.Powertrain.ElectricMotor.Temperature", get("Motor Temp"), "fahrenheit")
    return Row(ts_ms, car, source, line, tuple(out))


def _cell_voltages(cells: dict[str, str]) -> list[float]:
    """CP1..CPn in cell order, all of them or none (a partial pack would misplace cells)."""
    numbered = sorted((int(m.group(1)), c) for c in cells if (m := _CELL.fullmatch(c)))
    values: list[float] = []
    for _n, column in numbered:
        try:
            value = number(cells[column])
        except ValueError:
            raise ValueError(f"column {column!r}: {cells[column]!r} is not a number") from None
        if value is None:
            return []
        values.append(abs(value))
    return values
