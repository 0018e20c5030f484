"""Where and when a fleet car charges: its home wallbox, a public booking, a retry.

Why it matters
--------------
Charging decides which chargers a car meets and how often, and so what the fleet can say about
a charging fault: a car with a worn inlet that only charged at home would never show a
pattern across chargers; a driver who gives up after one failed session would hide a
charger's fault rate. The decisions follow what real drivers do.

Rules
-----
* At home: when the car arrives with SoC below its habit threshold (~35-55 %), 2-15 minutes
  later, at the wallbox's power, until its target (80, 85 or 90 %) or until the car leaves.
* Away from home (work or an outing) and with a next departure planned: when the SoC is
  below ``PUBLIC_BELOW_SOC`` (30 %), or now and then anyway (``PUBLIC_ANYWAY_PROB``, 4 %), the
  car books the public charger where it can plug in soonest (2-8 minutes after arriving),
  if a session of ``PUBLIC_MIN_SESSION_MS`` fits before it leaves and it needs the charge
  (5 points below the target: 80 % on DC).
* A car with an ``inlet_fault`` is modelled as one without a home wallbox: it charges
  publicly at ``INLET_FAULT_PUBLIC_PROB`` (70 %) of its arrivals away from home, so the
  fleet sees its sessions at several chargers (attribution); its home sessions are not
  simulated as failing.
* Retries: a driver whose public session ends abnormally and who still needs charge does not
  drive off: if the SoC is still 5 points below the target and a session of at least
  ``RETRY_MIN_SESSION_MS`` (10 minutes; a booking on arrival wants 15) fits before the next
  departure, they try again, at most ``MAX_RETRIES_PER_STOP`` (2) times per stop. Mostly at
  another charger (not one that already failed at this stop): the one where they can plug in
  soonest, counting the short drive there (``ROUTE_FACTOR`` x the straight distance at
  ``RETRY_HOP_KMH``, plus 2-5 minutes to park); ``SAME_CHARGER_RETRY_PROB`` (15 %) re-plug at
  the same charger 1-3 minutes after unplugging. The retry is booked when the failed session
  ends, under the coupling rule (``simulators.public_charging``), and faults shape it like any
  session. The short hop is not reported as a trip (no ignition, no telemetry while moving):
  the car reports from the next charger. Walk-in cars (no VIN) do not retry.
* Retries draw from the car's own ``charge-retry`` RNG, so a retry shifts no other draw of
  the car.
"""

from __future__ import annotations

import random

from simulators.geo import ROUTE_FACTOR, distance_km
from simulators.physics.charging import ChargeSession, new_session
from simulators.public_charging import (
    PLUG_TO_CHARGE_MS,
    PUBLIC_MAX_SESSION_MS,
    PUBLIC_MIN_SESSION_MS,
    Booking,
    ChargerRun,
    apply_charger_fault,
    free_from,
    maybe_fail,
    startup_ms,
    unplug_after_ms,
)
from simulators.state import VehicleRun
from simulators.stream import NEVER
from vocab.eventtime import HOUR_MS, MINUTE_MS

PUBLIC_BELOW_SOC = 30.0
PUBLIC_ANYWAY_PROB = 0.04
INLET_FAULT_PUBLIC_PROB = 0.7  # cars with an inlet fault have no wallbox: public most days
MAX_RETRIES_PER_STOP = 2
SAME_CHARGER_RETRY_PROB = 0.15
REPLUG_MIN = (1.0, 3.0)  # unplug, check the cable, plug in again at the same charger
RETRY_HOP_KMH = 25.0  # the short drive to another charger in town
RETRY_PARK_MIN = (2.0, 5.0)  # finding the bay and plugging in at the other charger
# A booking on arrival skips a session under PUBLIC_MIN_SESSION_MS (not worth the detour); a
# driver already standing at a charger with too little charge takes a shorter one (a fast
# charger tops 45 -> 80 % up in ~11 minutes). Still longer than a derating charger's foldback.
RETRY_MIN_SESSION_MS = 10 * MINUTE_MS


def plug_in(chargers: list[ChargerRun], v: VehicleRun, arrive: int,
            next_depart: int | None) -> None:
    """The car arrived at ``arrive``: charge at home, book a public charger, or neither."""
    s, rng = v.spec, v.rng
    if v.dead(arrive) or not s.plugs_in:
        return
    inlet_fault = s.fault is not None and s.fault.name == "inlet_fault"
    if v.place == "home":
        # A car with an inlet fault is modelled as one without a home wallbox: it charges
        # publicly, so the fleet sees its sessions at several chargers (attribution).
        if v.soc < s.charge_below_soc and not inlet_fault:
            start = arrive + int(rng.uniform(2, 15) * MINUTE_MS)
            power = s.home_kw * rng.uniform(0.95, 1.0)
            v.charge = new_session(start, v.soc, s.charge_target_soc, power,
                                   s.spec.capacity_kwh, NEVER)
        return
    if next_depart is None or not chargers:
        return
    anyway = INLET_FAULT_PUBLIC_PROB if inlet_fault else PUBLIC_ANYWAY_PROB
    if v.soc < PUBLIC_BELOW_SOC or rng.random() < anyway:
        v.stop_depart, v.retries_left = next_depart, MAX_RETRIES_PER_STOP
        v.stop_failed_at = []
        v.charge = book_public(chargers, v, arrive, next_depart)


def book_public(chargers: list[ChargerRun], v: VehicleRun, arrive: int,
                depart: int) -> ChargeSession | None:
    """Book the first free public charger; its generator will run the session."""
    rng = v.rng
    n = len(chargers)
    first = rng.randrange(n)
    wanted = arrive + int(rng.uniform(2, 8) * MINUTE_MS)
    best: tuple[int, ChargerRun] | None = None
    for k in range(n):
        c = chargers[(first + k) % n]
        plug = free_from(c, wanted)
        if best is None or plug < best[0]:
            best = (plug, c)
    assert best is not None
    return reserve(v, best[1], best[0], depart, rng, PUBLIC_MIN_SESSION_MS)


def retry_public(chargers: list[ChargerRun], v: VehicleRun,
                 failed: ChargeSession) -> ChargeSession | None:
    """After an abnormal end the driver, still short of charge, tries again: usually the
    charger free soonest (the drive there included) other than the one that failed, now
    and then the same one after re-plugging. Every draw comes from ``v.retry_rng``."""
    rng, depart = v.retry_rng, v.stop_depart
    if rng is None or depart is None or v.retries_left <= 0 or not chargers:
        return None
    v.retries_left -= 1
    v.stop_failed_at.append(str(failed.charger_id))
    was = next(c for c in chargers if c.spec.charger_id == failed.charger_id)
    # Not back to a charger that already failed at this stop.
    untried = [c for c in chargers if c.spec.charger_id not in v.stop_failed_at]
    same = not untried or rng.random() < SAME_CHARGER_RETRY_PROB
    if same:
        plug, charger = free_from(was, failed.unplug + int(
            rng.uniform(*REPLUG_MIN) * MINUTE_MS)), was
    else:
        park = int(rng.uniform(*RETRY_PARK_MIN) * MINUTE_MS)
        plug, charger = min(
            ((free_from(c, failed.unplug + park + int(
                distance_km(was.spec.location, c.spec.location) * ROUTE_FACTOR / RETRY_HOP_KMH
                * HOUR_MS)), c)
             for c in untried),
            key=lambda pc: (pc[0], pc[1].spec.index))
    return reserve(v, charger, plug, depart, rng, RETRY_MIN_SESSION_MS)


def reserve(v: VehicleRun, charger: ChargerRun, plug: int, depart: int,
            rng: random.Random, min_session_ms: int) -> ChargeSession | None:
    """Book ``charger`` from ``plug`` if a session of ``min_session_ms`` fits before
    ``depart`` and the car needs it."""
    s = v.spec
    target = 80.0 if charger.spec.dc else s.charge_target_soc
    if v.soc >= target - 5:
        return None
    power = min(charger.spec.power_kw, s.spec.dc_kw if charger.spec.dc else s.spec.ac_kw)
    power *= rng.uniform(0.92, 0.98)
    latest = min(depart - 10 * MINUTE_MS, plug + PLUG_TO_CHARGE_MS + PUBLIC_MAX_SESSION_MS)
    linger = unplug_after_ms(rng)
    inlet = s.fault if s.fault is not None and s.fault.name == "inlet_fault" else None
    session = new_session(plug + startup_ms(charger, plug, inlet, v.startup_rng), v.soc,
                          target, power, s.spec.capacity_kwh, latest,
                          charger.spec.charger_id)
    if session.end - session.start < min_session_ms:
        return None
    apply_charger_fault(charger, session)
    if s.fault is not None and s.fault.name == "inlet_fault" and v.fault_rng is not None:
        maybe_fail(session, s.fault, v.fault_rng, "Finishing")
    # After the faults: a session that stopped early is unplugged minutes after it stopped.
    session.unplug = session.end + linger
    charger.bookings.append(Booking(plug, session.unplug, s.vin, session))
    return session
