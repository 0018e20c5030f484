"""Charging the traction battery: state of charge and energy of a session as functions of time.

Why it matters
--------------
The car and the charger report the same session from two sides (the car's ``IsCharging``,
SoC and ``CurrentPower``; the charger's OCPP MeterValues with power, energy and SoC). Both
must tell the same story at every timestamp, whichever device's generator reaches it first,
so a session is not stepped forward but evaluated: its SoC and energy are pure functions of
time.

Model
-----
* energy flows from ``start`` to ``end`` at ``power_kw``; the SoC rises by
  ``power * CHARGE_EFFICIENCY / capacity`` per hour until the target (or until ``latest_end``:
  the driver leaves, or the session is booked before another);
* a derating charger (``charger_derating``) delivers only ``fold_factor`` of that power from
  ``fold_at`` on; SoC, energy and the power follow;
* a session cut short by a charging fault ends at its shortened ``end`` with the fault's
  error code and status (set by ``simulators.public_charging``); public sessions also carry
  when the car leaves the charger (``unplug``).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.stream import NEVER
from vocab.eventtime import HOUR_MS

CHARGE_EFFICIENCY = 0.92


@dataclass
class ChargeSession:
    """Energy flows from ``start`` to ``end``; the SoC is a pure function of time."""

    start: int
    end: int
    soc0: float
    pct_per_ms: float
    power_kw: float
    charger_id: str | None = None
    started: bool = False  # charge_start reported
    ended: bool = False
    # Faults (healthy sessions keep the defaults): from ``fold_at`` on only ``fold_factor`` of
    # the power flows (a derating charger); a session with a ``fault_code`` ends at ``end``
    # with that OCPP error code and status ``fault_status`` instead of finishing normally.
    fold_at: int = NEVER
    fold_factor: float = 1.0
    fault_code: str | None = None
    fault_status: str = "Faulted"
    unplug: int = NEVER  # public sessions: when the car leaves the charger

    def _full_power_ms(self, ts: int) -> float:
        """Milliseconds of charging at the session's full power equivalent to [start, ts]."""
        t = min(max(ts, self.start), self.end)
        if t <= self.fold_at:
            return t - self.start
        return (self.fold_at - self.start) + self.fold_factor * (t - self.fold_at)

    def soc_at(self, ts: int) -> float:
        # A healthy session is one multiplication: the folded formula rounds differently in
        # the last bit.
        if self.fold_factor == 1.0:
            return self.soc0 + self.pct_per_ms * (min(max(ts, self.start), self.end) - self.start)
        return self.soc0 + self.pct_per_ms * self._full_power_ms(ts)

    def energy_kwh(self, ts: int) -> float:
        if self.fold_factor == 1.0:
            return self.power_kw * (min(max(ts, self.start), self.end) - self.start) / HOUR_MS
        return self.power_kw * self._full_power_ms(ts) / HOUR_MS

    def power_at(self, ts: int) -> float:
        """The power (kW) flowing at ``ts`` while the session charges."""
        return self.power_kw * self.fold_factor if ts >= self.fold_at else self.power_kw

    def charging(self, ts: int) -> bool:
        return self.start <= ts < self.end


def new_session(start: int, soc0: float, target: float, power_kw: float, capacity_kwh: float,
                latest_end: int, charger_id: str | None = None) -> ChargeSession:
    """A session from ``start`` until the SoC reaches ``target`` or ``latest_end`` comes."""
    pct_per_ms = power_kw * CHARGE_EFFICIENCY / capacity_kwh * 100 / HOUR_MS
    full = start + int(max(0.0, target - soc0) / pct_per_ms)
    return ChargeSession(start, min(full, latest_end), soc0, pct_per_ms, power_kw, charger_id)
