"""Public charging: what a car and a charger share, and the rule that couples their timelines.

Why it matters
--------------
A session at a public charger is seen from both sides: the car reports ``IsCharging``, its SoC
and ``charge_start`` / ``charge_end``; the charger reports OCPP StatusNotification
(``Preparing`` -> ``Charging`` -> ``Finishing`` -> ``Available``) and MeterValues with the
VIN. Attributing a charging fault to the charger or to the car works only on the cross
pattern: the same car failing at several chargers, or several cars failing at one. So the
two sides must describe the same session, and each side's faults must shape it.

Coupling
--------
Each device is a generator walking its own timeline, merged by time. A car books a charger only
from the charger's committed time on (``ChargerRun.committed_until``: the timestamp of the
message the charger's generator has already handed to the merge; ``free_from``), so the
charger always learns of a session before its own clock reaches it. Chargers also serve cars
outside the fleet (walk-ins, no VIN, ``simulators.charger``), and a walk-in leaves before a
booked fleet car comes.

Start-up
--------
From plug-in (``Preparing``) to energy flowing (``Charging``): control pilot and lock, and for
DC the SLAC / ISO 15118 link, the cable's isolation check and the precharge. Each charger has
its own pace (drawn once: 6-14 s AC, 20-40 s DC), with seconds of jitter per session. Now and
then a step fails once on healthy equipment and the charger repeats it (``STARTUP_RETRY_PROB``,
either side: nobody is at fault). Worn contacts (``inlet_fault`` on the car, ``charger_fault``
on the charger) fail a step as often as their sessions fail, and the step is repeated up to
``STARTUP_MAX_RETRIES`` times, 15-30 s each; start-up then goes through (``startup_ms``).

Charging faults
---------------
A fault shapes a session when it is booked (fleet car) or begins (walk-in), so the car and
the charger see the same session. Their draws come from RNGs of their own, so a fault changes
no other draw.

* ``charger_derating``: five minutes into each session after the onset the charger delivers
  only ``derating_fraction`` of what the car draws (the SoC, energy and the car's
  ``CurrentPower`` follow; DC chargers report a hotter stage; ``Power.Offered`` stays the
  rating).
* ``charger_fault``: with ``session_fault_prob`` a session ends early (2-50 % of its planned
  length) ``Faulted`` with one of the fault's error codes; the connector is ``Available``
  again when the car leaves.
* ``inlet_fault``: the same for the faulty car's sessions at any charger
  (``EVCommunicationError`` ends as ``Finishing`` with the code, the others ``Faulted``).

A session cut short is unplugged 1-5 minutes after it stopped (the driver's app says so), as
is a session that ran its course (``UNPLUG_AFTER_MIN``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from simulators.faults import (
    DERATING_FOLDBACK_AFTER_MS,
    FaultInstance,
    derating_fraction,
    session_fault_prob,
)
from simulators.physics.charging import ChargeSession
from simulators.spec import ChargerSpec
from simulators.stream import NEVER
from vocab.eventtime import HOUR_MS, MINUTE_MS, SECOND_MS

PUBLIC_MIN_SESSION_MS = 15 * MINUTE_MS
PUBLIC_MAX_SESSION_MS = 3 * HOUR_MS
PLUG_TO_CHARGE_MS = 30 * SECOND_MS  # the plan's start-up allowance (booking arithmetic)
UNPLUG_AFTER_MIN = (1.0, 5.0)  # from the end of charging to unplugging
CHARGER_GAP_MS = 5 * MINUTE_MS
STARTUP_AC_S = (6.0, 14.0)
STARTUP_DC_S = (20.0, 40.0)
STARTUP_JITTER_S = 3.0
STARTUP_RETRY_PROB = 0.02
STARTUP_RETRY_S = (15.0, 30.0)
STARTUP_MAX_RETRIES = 3


@dataclass
class Booking:
    plug: int
    unplug: int
    vin: str
    session: ChargeSession


@dataclass
class ChargerRun:
    """A charger's state during one run (``Fleet.messages`` makes a fresh one)."""

    spec: ChargerSpec
    rng: random.Random
    committed_until: int = -NEVER  # ts of the last message handed to the merge
    busy_until: int = -NEVER
    bookings: list[Booking] = field(default_factory=list)
    seq: int = 0
    energy_wh: float = 0.0
    transaction: int = 0
    fault_rng: random.Random | None = None  # draws of an injected fault, apart from ``rng``
    startup_rng: random.Random | None = None  # start-up draws (``startup_ms``), apart too
    startup_s: float = 0.0  # this charger's start-up pace

    def __post_init__(self) -> None:
        if self.startup_rng is not None:
            self.startup_s = self.startup_rng.uniform(
                *(STARTUP_DC_S if self.spec.dc else STARTUP_AC_S))


def free_from(c: ChargerRun, wanted: int) -> int:
    """The earliest plug-in time at ``c`` from ``wanted`` on: after what its generator has
    committed, the session it runs and the bookings it has (the coupling rule)."""
    plug = max(wanted, c.committed_until, c.busy_until)
    if c.bookings:
        plug = max(plug, c.bookings[-1].unplug + CHARGER_GAP_MS)
    return plug


def startup_ms(c: ChargerRun, plug: int, car_fault: FaultInstance | None = None,
               car_rng: random.Random | None = None) -> int:
    """Plug-in to energy flowing at ``c`` (see ``STARTUP_*``): the charger's pace, jitter, a
    healthy repeat now and then, and the repeats worn contacts need on either side."""
    rng = c.startup_rng
    if rng is None:
        return PLUG_TO_CHARGE_MS
    seconds = c.startup_s + rng.uniform(-STARTUP_JITTER_S, STARTUP_JITTER_S)
    retries = int(rng.random() < STARTUP_RETRY_PROB)
    for fault, draws in ((c.spec.fault, rng), (car_fault, car_rng)):
        if fault is None or draws is None or fault.name not in ("charger_fault", "inlet_fault"):
            continue
        worn = session_fault_prob(fault, plug)
        while retries < STARTUP_MAX_RETRIES and draws.random() < worn:
            retries += 1
    seconds += sum(rng.uniform(*STARTUP_RETRY_S) for _ in range(retries))
    return int(seconds * SECOND_MS)


def maybe_fail(session: ChargeSession, fault: FaultInstance, rng: random.Random,
               soft_status: str) -> None:
    """With the fault's probability at the session's start, end it early with an error code.

    Codes that stop the hardware (ground fault, lock, temperature, meter) fault the connector;
    ``EVCommunicationError`` is reported with ``soft_status`` (a car that stops talking ends
    the session, the connector itself is fine).
    """
    if session.fault_code is not None or rng.random() >= session_fault_prob(fault, session.start):
        return
    codes = list(fault.params["codes"])
    code = codes[rng.randrange(len(codes))]
    session.end = session.start + int((session.end - session.start) * rng.uniform(0.02, 0.5))
    session.fault_code = code
    session.fault_status = soft_status if code == "EVCommunicationError" else "Faulted"


def apply_charger_fault(c: ChargerRun, session: ChargeSession) -> None:
    """An injected charger fault shapes the session before either side runs it."""
    fault = c.spec.fault
    if fault is None or c.fault_rng is None:
        return
    if fault.name == "charger_derating" and session.start >= fault.onset_ts:
        session.fold_at = session.start + DERATING_FOLDBACK_AFTER_MS
        session.fold_factor = derating_fraction(fault, session.start)
    elif fault.name == "charger_fault":
        maybe_fail(session, fault, c.fault_rng, "Faulted")


def unplug_after_ms(rng: random.Random) -> int:
    """How long after the end of charging the driver unplugs (one draw)."""
    return int(rng.uniform(*UNPLUG_AFTER_MIN) * MINUTE_MS)
