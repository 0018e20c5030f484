"""Every detector the worker runs, by the kind of asset it watches and the alert type it raises.

The one registry every pipeline reads (and the contract test checks, kind by kind):

* ``vehicle``: ``diagnostics.pipeline.VehiclePipeline`` runs them all, the sweeping ones
  (``Detector.sweeps``) also at its sweep boundaries;
* ``charger``: ``diagnostics.charger_pipeline.ChargerPipeline`` runs those that do not sweep,
  ``diagnostics.charger_silence.ChargerSilencePipeline`` the one that does (with its own states
  and sweep clocks).

The order within a kind is the order in which a record's alerts are emitted.
"""

from __future__ import annotations

from typing import Literal

from diagnostics.alternator import ChargingSystem
from diagnostics.base import Detector
from diagnostics.battery12v import WeakBattery12V
from diagnostics.cell_imbalance import CellImbalance
from diagnostics.charger_derating import ChargerDerating
from diagnostics.dtc import DiagnosticTroubleCodes
from diagnostics.signal_anomaly import SignalAnomaly
from diagnostics.silence import ChargerSilence, Silence
from diagnostics.thermal import DriveUnitCooling
from diagnostics.tyre_leak import SlowTyreLeak

AssetKind = Literal["vehicle", "charger"]

DETECTORS: dict[AssetKind, dict[str, type[Detector]]] = {
    "vehicle": {
        "weak_12v_battery": WeakBattery12V,
        "dtc": DiagnosticTroubleCodes,
        "slow_tyre_leak": SlowTyreLeak,
        "cell_imbalance": CellImbalance,
        "vehicle_silent": Silence,
        "signal_anomaly": SignalAnomaly,
        "thermal": DriveUnitCooling,
        "charging_system": ChargingSystem,
    },
    "charger": {
        "charger_derating": ChargerDerating,
        "charger_silent": ChargerSilence,
    },
}


def build(kind: AssetKind, *, sweeps: bool | None = None) -> dict[str, Detector]:
    """A new instance of each detector registered for ``kind``, by alert type, in registry
    order; only those whose ``sweeps`` equals ``sweeps`` when it is given."""
    return {alert_type: cls() for alert_type, cls in DETECTORS[kind].items()
            if sweeps is None or cls.sweeps is sweeps}
