"""A simulated public charger: OCPP status and meter values, for fleet cars and walk-ins.

Why it matters
--------------
Chargers are assets of their own: care staff are told when one derates, faults or falls
silent, and a charging fault is attributed to the charger or the car by comparing what
chargers report for many cars. So a charger reports every session it runs, the fleet's
booked sessions and those of cars outside the fleet alike, the way an OCPP 1.6 charge point
does.

Rules
-----
* Idle, the connector sends an ``Available`` heartbeat every ``parked_ms``.
* A session: StatusNotification ``Preparing`` at plug-in, ``Charging`` when energy flows,
  MeterValues every ``drive_ms`` (power, offered power, current, voltage, energy register,
  SoC, for DC the power stage's temperature; the VIN for a fleet car), ``Finishing`` (or the
  fault's status and error code) when it ends, ``Available`` when the car leaves.
* Cars outside the fleet (no VIN) arrive at exponential gaps (``ChargerSpec.mean_gap_h``)
  and leave before a booked fleet car comes (``simulators.public_charging``); a walk-in
  session too short to be worth it does not happen.
* Every draw comes from the charger's ``charger-run`` RNG (faults and start-up from RNGs of
  their own), in the order of the code below.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson

from ingest.contract import Kind, topic_for
from simulators.physics.charging import ChargeSession, new_session
from simulators.public_charging import (
    CHARGER_GAP_MS,
    PLUG_TO_CHARGE_MS,
    PUBLIC_MIN_SESSION_MS,
    ChargerRun,
    apply_charger_fault,
    startup_ms,
    unplug_after_ms,
)
from simulators.state import RunSettings, World
from simulators.stream import NEVER, Message
from vocab.eventtime import HOUR_MS, MINUTE_MS


class ChargerSim:
    """The chargers of one run: ``stream(c)`` is one charger's message stream."""

    def __init__(self, settings: RunSettings, world: World) -> None:
        self.settings = settings
        self.world = world

    def anon_gap(self, c: ChargerRun) -> int:
        return int(max(0.5, c.rng.expovariate(1 / c.spec.mean_gap_h)) * HOUR_MS)

    def stream(self, c: ChargerRun) -> Iterator[Message]:
        """The charger's messages from the start of the run, unbounded."""
        rng = c.rng
        parked_ms = self.settings.parked_ms
        c.energy_wh = rng.uniform(1e5, 1e7)
        heartbeat = self.settings.start_ms + rng.randrange(parked_ms)
        walk_in = heartbeat + self.anon_gap(c)  # next car from outside the fleet
        while True:
            booking = c.bookings[0] if c.bookings else None
            booked = booking.plug if booking is not None else NEVER
            t = min(heartbeat, walk_in, booked)
            if booking is not None and t == booked:
                c.bookings.pop(0)
                yield from self.session(c, booking.plug, booking.session, booking.unplug,
                                        booking.vin)
                after = booking.unplug
            elif t == walk_in:
                minutes = rng.uniform(20, 60) if c.spec.dc else rng.uniform(60, 240)
                power = min(c.spec.power_kw, rng.choice((50.0, 80.0, 120.0)) if c.spec.dc
                            else rng.choice((11.0, 22.0))) * rng.uniform(0.92, 0.98)
                latest = walk_in + PLUG_TO_CHARGE_MS + int(minutes * MINUTE_MS)
                if booking is not None:  # a fleet car has booked: be gone before it comes
                    latest = min(latest, booking.plug - CHARGER_GAP_MS - 5 * MINUTE_MS)
                session = new_session(walk_in + startup_ms(c, walk_in), rng.uniform(10, 60),
                                      95.0,
                                      power, rng.uniform(50, 90), latest)
                if session.end - session.start < PUBLIC_MIN_SESSION_MS:
                    walk_in = (booking.unplug if booking else walk_in) + self.anon_gap(c)
                    continue
                linger = unplug_after_ms(rng)
                apply_charger_fault(c, session)
                # After the faults, as for a fleet car (``booking.reserve``): a driver whose
                # session stopped early unplugs minutes later, not at the planned end.
                unplug = session.end + linger
                yield from self.session(c, walk_in, session, unplug, None)
                after = unplug
            else:
                yield self.status(c, heartbeat, "Available")
                heartbeat += parked_ms
                continue
            heartbeat = after + parked_ms
            if walk_in <= after:
                walk_in = after + self.anon_gap(c)

    def message(self, c: ChargerRun, kind: Kind, ts: int, body: dict[str, Any]) -> Message:
        c.seq += 1
        c.committed_until = ts
        return ts, topic_for(kind, c.spec.charger_id), orjson.dumps(
            {"ts": ts, "seq": c.seq, **body})

    def status(self, c: ChargerRun, ts: int, status: str,
               error_code: str = "NoError") -> Message:
        return self.message(c, Kind.CHARGER_STATUS, ts, {
            "connectorId": 1, "status": status, "errorCode": error_code})

    def session(self, c: ChargerRun, plug: int, session: ChargeSession, unplug: int,
                vin: str | None) -> Iterator[Message]:
        rng = c.rng
        c.busy_until = unplug
        c.transaction += 1
        transaction = (c.spec.index + 1) * 100_000 + c.transaction % 100_000
        energy0 = c.energy_wh
        offered = c.spec.power_kw * 1000
        yield self.status(c, plug, "Preparing")
        yield self.status(c, session.start, "Charging")
        t = session.start
        while True:
            last = t >= session.end
            t = min(t, session.end)
            soc = session.soc_at(t)
            power = session.power_at(t) * 1000 * rng.uniform(0.97, 1.01) if not last else 0.0
            volts = (330 + 0.8 * soc + rng.gauss(0, 1.5)) if c.spec.dc else 400 + rng.gauss(0, 2)
            amps = power / volts if c.spec.dc else power / (math.sqrt(3) * volts)
            measurands = {
                "Power.Active.Import": round(min(power, offered), 1),
                "Power.Offered": offered,
                "Current.Import": round(amps, 2),
                "Voltage": round(volts, 1),
                "Energy.Active.Import.Register": round(
                    energy0 + session.energy_kwh(t) * 1000, 1),
                "SoC": round(soc, 1),
            }
            if c.spec.dc:
                # A folded-back stage is hot: that is why it folds back.
                hot = 30.0 * (1.0 - session.fold_factor) if t >= session.fold_at else 0.0
                measurands["Temperature"] = round(self.world.weather.ambient(t) + 8 + hot
                                                  + 17 * power / offered + rng.gauss(0, 0.5), 1)
            body: dict[str, Any] = {"connectorId": 1, "transactionId": transaction,
                                    "measurands": measurands}
            if vin is not None:
                body["vin"] = vin
            yield self.message(c, Kind.CHARGER_METER, t, body)
            if last:
                break
            t += self.settings.drive_ms
        c.energy_wh = energy0 + session.energy_kwh(session.end) * 1000
        if session.fault_code is not None:
            yield self.status(c, session.end, session.fault_status, session.fault_code)
        else:
            yield self.status(c, session.end, "Finishing")
        yield self.status(c, unplug, "Available")
