"""The VSS signal paths that more than one diagnostics module reads, each named once.

A path only one detector reads stays next to its physics in that detector's module; the tyre
paths come from the device contract (``ingest.contract.TIRE_PRESSURE_SIGNALS`` and
``TIRE_TEMPERATURE_SIGNALS``).
"""

from __future__ import annotations

from typing import Final

KEY_STATE: Final = "Vehicle.LowVoltageSystemState"  # values: ``helpers.ON_STATES`` / ``OFF_STATES``
VOLTAGE: Final = "Vehicle.LowVoltageBattery.CurrentVoltage"  # 12 V battery terminal voltage
CURRENT: Final = "Vehicle.LowVoltageBattery.CurrentCurrent"  # 12 V battery, positive = charging
AMBIENT: Final = "Vehicle.Exterior.AirTemperature"
SPEED: Final = "Vehicle.Speed"
CURB_WEIGHT: Final = "Vehicle.CurbWeight"
CHARGING: Final = "Vehicle.Powertrain.TractionBattery.Charging.IsCharging"
PACK: Final = "Vehicle.Powertrain.TractionBattery.Temperature.Average"
CELL_MIN: Final = "Vehicle.Powertrain.TractionBattery.CellVoltage.Min"
CELL_MAX: Final = "Vehicle.Powertrain.TractionBattery.CellVoltage.Max"
STATE_OF_HEALTH: Final = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
# A car with an engine: running or not (a stop-start pause is not running), and its speed.
ENGINE_RUNNING: Final = "Vehicle.Powertrain.CombustionEngine.IsRunning"
ENGINE_SPEED: Final = "Vehicle.Powertrain.CombustionEngine.Speed"  # rpm
