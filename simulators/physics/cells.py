"""Traction-battery cells: the min / max cell voltage the BMS reports, and a drifting cell.

Why it matters
--------------
A traction battery is a string of cells in series; one cell that self-discharges faster than
the others drifts below them, and when the spread between the highest and the lowest cell
reaches the BMS limit the BMS derates the car. The spread also widens for harmless reasons
(a steep OCV curve at low and high SoC, the cold, load and charging current), which the
detector has to tell from a drift.

Model (``diagnostics/cell_imbalance.py`` is written against the same physics)
----------------------------------------------------------------------------
Reported (``CellVoltage.Min/Max/IdMin/IdMax`` in every telemetry message) only by cars with
the ``cell_drift`` fault and by the healthy share ``cell_report_fraction`` of the fleet (0 by
default). Every draw comes from the pack's own RNG, so reporting cells shifts no other signal.

* ``ModelSpec.cells`` cells in series; open-circuit cell voltage ``3.0 + 1.2 * SoC / 100`` V;
* the healthy resting spread (max - min) at 25 °C and mid SoC is drawn in 8-16 mV
  (``CELL_SPREAD_MV_RANGE``); it widens where the OCV curve is steep (below 20 % SoC up to
  x3.5, above 95 % up to x2.5), in the cold (x ``1 + 0.03 * (15 - T)`` below 15 °C, T the
  lagged pack temperature), under load while driving (+5-25 mV, cell resistances differ) and
  while charging (+3-15 mV); BMS readings carry 1.5 mV noise and mV resolution; the lowest
  cell is one of three "weakest" cells of that pack 60 % of the time, otherwise any cell;
* fault ``cell_drift``: from its onset one cell self-discharges, the spread at reference
  conditions growing ``rate_mv_per_day`` (2.5-6); that cell is the pack's minimum once its
  drift exceeds half the healthy spread; the truth's ``failure_ts`` is when the reference
  spread reaches the BMS limit (``BMS_SPREAD_LIMIT_MV`` = 100 mV) and the BMS would derate
  the car (the simulated car keeps driving: the detector is scored on the lead time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from vocab.eventtime import DAY_MS

CELL_SPREAD_MV_RANGE = (8.0, 16.0)
CELL_NOISE_MV = 1.5


@dataclass
class CellPack:
    """Min / max cell voltage of the traction battery, with its own RNG."""

    cells: int
    base_spread_mv: float
    weak: tuple[int, int, int]
    rng: random.Random
    drift_onset: int | None = None
    drift_rate_mv_per_day: float = 0.0
    drift_cell: int = 0

    @classmethod
    def draw(cls, cells: int, base_spread_mv: float, rng: random.Random) -> CellPack:
        """A pack whose three weakest cells are drawn from ``rng`` (the pack keeps it)."""
        weak = (rng.randrange(cells), rng.randrange(cells), rng.randrange(cells))
        return cls(cells, base_spread_mv, weak, rng)

    def drift_mv(self, ts: int) -> float:
        if self.drift_onset is None or ts <= self.drift_onset:
            return 0.0
        return self.drift_rate_mv_per_day * (ts - self.drift_onset) / DAY_MS

    def signals(self, ts: int, soc: float, temp_c: float, driving: bool,
                charging: bool) -> dict[str, Any]:
        rng = self.rng
        factor = (1.0 + 2.5 * max(0.0, (20.0 - soc) / 20.0)
                  + 1.5 * max(0.0, (soc - 95.0) / 5.0)) * (1.0 + 0.03 * max(0.0, 15.0 - temp_c))
        drift = self.drift_mv(ts)
        spread = (self.base_spread_mv + drift) * factor + rng.gauss(0, CELL_NOISE_MV)
        if driving:
            spread += rng.uniform(5.0, 25.0)
        elif charging:
            spread += rng.uniform(3.0, 15.0)
        spread = max(1.0, spread)
        ocv_mv = 3000.0 + 12.0 * soc
        if drift > self.base_spread_mv / 2:
            low = self.drift_cell
        elif rng.random() < 0.6:
            low = self.weak[rng.randrange(3)]
        else:
            low = rng.randrange(self.cells)
        high = rng.randrange(self.cells)
        if high == low:
            high = (high + 1) % self.cells
        vmax = ocv_mv + spread * 0.4
        vmin = vmax - spread
        return {
            "Vehicle.Powertrain.TractionBattery.CellVoltage.Min": round(vmin / 1000, 3),
            "Vehicle.Powertrain.TractionBattery.CellVoltage.Max": round(vmax / 1000, 3),
            "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMin": low,
            "Vehicle.Powertrain.TractionBattery.CellVoltage.IdMax": high,
        }
