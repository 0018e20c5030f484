"""Every vehicle detector the worker runs, by the alert type it raises."""

from __future__ import annotations

from diagnostics.base import Detector
from diagnostics.battery12v import WeakBattery12V
from diagnostics.cell_imbalance import CellImbalance
from diagnostics.dtc import DiagnosticTroubleCodes
from diagnostics.signal_anomaly import SignalAnomaly
from diagnostics.silence import Silence
from diagnostics.thermal import DriveUnitCooling
from diagnostics.tyre_leak import SlowTyreLeak

DETECTORS: dict[str, type[Detector]] = {
    "weak_12v_battery": WeakBattery12V,
    "dtc": DiagnosticTroubleCodes,
    "slow_tyre_leak": SlowTyreLeak,
    "cell_imbalance": CellImbalance,
    "vehicle_silent": Silence,
    "signal_anomaly": SignalAnomaly,
    "thermal": DriveUnitCooling,
}
