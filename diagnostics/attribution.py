"""Charging-fault attribution across the fleet: is the charger or the car at fault?

A charging session that ends abnormally (``Faulted``, or an OCPP error code) says something is
wrong, not what. The error codes do not settle it: a residual-current device trips
(``GroundFailure``) on a car's on-board charger as readily as on the charger's own, a connector
lock fails on either side, and ``EVCommunicationError`` is as often a charger's broken
control-pilot line as a car's inlet. The cross pattern does settle it:

* **one charger failing with several cars** is the charger (alert ``charger_fault`` on the
  charger);
* **one car failing at several chargers**, which serve other cars fine, is the car's inlet or
  on-board charger (alert ``charging_inlet_fault`` on the vehicle).

Input: finished session outcomes from the charger pipeline, and the fleet cars' own accounts
of their public sessions (``car_accounts``: charge events naming a charger; they stand for
the sessions a charger never reports, see ``_car_account``). An outcome has ``session_id``,
``charger_id``, ``vin`` or None for a car outside the fleet, ``abnormal``, ``end_status``,
``error_code``, ``startup_ms`` (None when unknown), ``ts`` = the session's end, event time.
State: one small
JSON dict per asset (keys ``charger/<id>`` and ``vehicle/<vin>``), each with its last
``window`` outcomes and its alert state, so the worker keeps them in a changelogged table on a
single-partition topic.

Rules (the constructor defaults)
--------------------------------
* A car without a VIN is a different car every session (``walk-in:<session id>``): it is never
  blamed, and its failures count against the charger like any other car's.
* A car is **excused** at a charger when it also failed at ``min_assets`` (2) *other* chargers
  within its window, or at ``min_assets - 1`` other chargers that vouch (below): its failure
  here is explained by the car.
* **Charger fault**: within the charger's last ``window`` (12) sessions, abnormal ends from at
  least ``min_assets`` distinct cars that are not excused, and at least ``min_share`` (20 %) of
  the sessions abnormal. One glitch is not an alert, nor is one faulty car failing here twice.
  Once raised it holds while ``min_assets`` cars still fail in the window (hysteresis).
* A charger **vouches** for its sessions when, without the car in question, it has at least
  ``min_others`` (2) sessions in its window and at most ``min_share`` of them ended abnormally.
* **Inlet fault**: within the car's last ``window`` sessions, abnormal ends at at least
  ``min_assets`` distinct chargers that vouch. A car that was unlucky at two broken chargers
  is not blamed; those chargers do not vouch. Once raised it holds while the car still fails
  at ``min_assets`` chargers in its window.
* **Inlet fault, one charger, separate visits**: or abnormal ends on at least ``min_assets``
  separate visits (failed sessions ending ``visit_gap_h`` apart or more: the car left and
  came back, not a re-plug within minutes) at one charger that *cleanly* vouches: at least
  ``clean_others`` sessions of other cars in its window, none abnormal. A car whose inlet
  fails charges rarely in public, and its retries go to the nearest charger, which can be the
  same one on the next day (two failures at one charger two days apart, other cars'
  sessions there all fine, then no public session until the inlet has failed for good).
  Separate visits are independent trials (the plug re-seated, the car and the charger
  woken anew); a charger whose own fault hit the same car on both would have to fail a large
  share of its sessions, and ``clean_others`` clean sessions in a row say it does not. A
  re-plug within minutes is the same visit and still counts once (a charger that failed
  just then may fail again). The charger is not blamed either way (one car fails there).
* **Inlet fault, slow starts**: or a worn score of at least ``min_worn`` (3) in the car's
  window, from at least ``min_assets`` distinct chargers, with at least one slow start and at
  least one abnormal end at a charger that vouches (slow starts alone could be a driver's
  habit of starting the session late, see below; one failure alone a glitch). A
  session is worn when it ended abnormally at a charger that vouches, or when it started
  slowly: its start-up (``startup_ms``, plug-in to energy flowing) took more than
  ``slow_start_s`` (10 s) longer than the charger's typical start-up with other cars (their
  median, from at least ``min_others`` sessions), at a charger that starts other cars quickly
  (at most ``min_share`` of the other cars there slow by the same rule; counted by car, so one
  other faulty car's visits do not make the charger look slow). A worn session scores 1; a
  start-up more than ``very_slow_start_s`` (45 s) over the charger's typical repeated more
  than one step and scores 2. Worn contacts in an inlet fail a start-up step (pilot, lock,
  isolation check) as they fail sessions, and the charger repeats the step: clean sessions
  carry the evidence too, so a car whose retry after its first failure went through is still
  seen. A healthy car repeats one step now and then (one slow start, 15-30 s), which is why it
  takes a score of three and two chargers; each charger's own pace (AC seconds, DC tens of
  seconds) is why slowness is measured against the charger. A car's slow start at another
  charger also excuses its failure at a charger, as a failure at a vouching one does: two
  faulty cars failing at one good charger before either is known do not blame it. A start-up
  longer than ``max_start_up_s`` (3 min) is not counted at all: that is a driver who has not
  started the session yet (``Preparing`` lasts until the charger is authorised) or a car
  waiting for its charging schedule, not repeated steps. Shorter waits of that kind are
  measured too (the contract carries no transaction-start time); requiring a failure is what
  keeps a habitually late driver from being blamed.
* Retries: a driver whose session failed usually tries again within minutes, at another
  charger or re-plugged at the same one. A repeat at the same charger is the same charger
  (chargers and cars are counted distinct); a car that failed here and then charged normally
  elsewhere is listed in the charger's evidence (``cars_charging_fine_elsewhere_since``):
  for care staff, that car is fine and this charger is the problem.

Each outcome re-judges the charger and the car it names, the chargers where that car failed
and the cars that failed at that charger (their excuses and vouchers may have changed). A
decision that disappears (the failures left the window) resolves the alert.

Severity: critical when at least half of the asset's window ended abnormally, warning
otherwise. Failure prediction: the abnormal share of the window is fitted against time
(``diagnostics.trend.weighted_trend``); when it rises significantly the predicted failure is
when every session would fail (out of service / cannot charge).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import numpy as np

from diagnostics import alerting
from diagnostics.base import Assessment
from diagnostics.charging import connector_of
from diagnostics.pipeline import table_writes
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS, HOUR_MS

CHARGER_FAULT = "charger_fault"
INLET_FAULT = "charging_inlet_fault"
AssetState = dict[str, Any]
# A car's own account of a public session (``car_accounts``), as the attributor receives it.
CAR_CHARGE = "car_charge"
ACCOUNT_PREFIX = "car:"
CUT_SHORT = "CutShortThenRetried"  # the car's account: no charger error code exists
WALK_IN = "walk-in:"


def charger_key(charger_id: str) -> str:
    return f"charger/{charger_id}"


def vehicle_key(vin: str) -> str:
    return f"vehicle/{vin}"


def car_of(outcome: Mapping[str, Any]) -> str:
    """The car of a session: its VIN, or a walk-in car of its own."""
    vin = outcome.get("vin")
    return str(vin) if vin else f"{WALK_IN}{outcome['session_id']}"


def car_accounts(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fleet cars' own accounts of their public charging sessions in ``records``
    (canonical vehicle records): each ``charge_start`` / ``charge_end`` event that names its
    charger, for the attributor."""
    accounts = []
    for record in records:  # every vehicle record the worker reads passes here: kind first
        if record["kind"] != "vehicle_event":
            continue
        data = record.get("data") or {}
        if data.get("charger_id") and data.get("type") in ("charge_start", "charge_end"):
            accounts.append({"kind": CAR_CHARGE, "vin": record["id"],
                             "charger_id": data["charger_id"],
                             "event": "start" if data["type"] == "charge_start" else "end",
                             "ts": int(record["ts"]), "duration_ms": data.get("duration_ms")})
    return accounts


def new_asset_state() -> AssetState:
    # recent: [session_id, other asset (car or charger), abnormal 0/1, error code, ts (end),
    #          startup ms or None, start ts]; a car's account has a session id
    #          ``car:<vin>:<end ts>``. Entries of version 4 states have no start ts.
    return {"recent": [], "alert": alerting.new_alert_state()}


def _is_account(entry: list[Any]) -> bool:
    return str(entry[0]).startswith(ACCOUNT_PREFIX)


def _overlaps(entry: list[Any], start: int, end: int) -> bool:
    """Whether the entry's session overlaps [start, end] (one connector, one car at a time)."""
    entry_start = entry[6] if len(entry) > 6 else entry[4]
    return bool(entry_start <= end and start <= entry[4])


def _redelivered(state: AssetState, mark: str, ts: int) -> bool:
    """Whether an input at ``ts`` is at or below the asset's high-water ``mark``, and so a
    redelivery: each kind of input comes from one pipeline per asset in strictly increasing
    time (a connector's sessions start one after another, a car's charge events follow each
    other), however long ago the first copy went by. The windows alone would forget a
    session after ``window`` newer ones, and a redelivered report would count twice."""
    marks = state.get("marks") or {}
    return mark in marks and ts <= int(marks[mark])


def _advance(state: AssetState, mark: str, ts: int) -> None:
    marks = state.setdefault("marks", {})
    marks[mark] = max(ts, int(marks.get(mark, ts)))


def _cut_short(entry: list[Any]) -> list[Any]:
    return [entry[0], entry[1], 1, CUT_SHORT, *entry[4:]]


class ChargingAttribution:
    """Decides charger fault vs vehicle inlet fault from finished session outcomes."""

    name: ClassVar[str] = "charging_attribution"
    # 2: a car failing at one other vouching charger is excused; 3: a car failing on separate
    # visits to one cleanly vouching charger is blamed; 4: slow starts count as evidence;
    # 5: the cars' own accounts of sessions their chargers do not report
    version: ClassVar[str] = "5"

    def __init__(self, window: int = 12, min_assets: int = 2, min_share: float = 0.2,
                 min_others: int = 2, half_life_days: float = 7.0,
                 visit_gap_h: float = 6.0, clean_others: int = 4,
                 slow_start_s: float = 10.0, very_slow_start_s: float = 45.0,
                 min_worn: int = 3, max_start_up_s: float = 180.0,
                 retry_gap_min: float = 45.0) -> None:
        self.window = window
        self.min_assets = min_assets
        self.min_share = min_share
        self.min_others = min_others
        self.half_life_days = half_life_days
        self.visit_gap_h = visit_gap_h
        self.clean_others = clean_others
        self.slow_start_ms = slow_start_s * 1000.0
        self.very_slow_start_ms = very_slow_start_s * 1000.0
        self.min_worn = min_worn
        self.max_start_up_ms = max_start_up_s * 1000.0
        self.retry_gap_ms = retry_gap_min * 60_000.0
        if retry_gap_min <= 0:
            raise ValueError("retry_gap_min must be > 0")
        if visit_gap_h <= 0 or clean_others < 1:
            raise ValueError("visit_gap_h must be > 0 and clean_others >= 1")
        if (slow_start_s <= 0 or very_slow_start_s <= slow_start_s or min_worn < 2
                or max_start_up_s <= very_slow_start_s):
            raise ValueError("need slow_start_s > 0, very_slow_start_s > slow_start_s, "
                             "max_start_up_s > very_slow_start_s and min_worn >= 2")

    def process(self, outcomes: Iterable[Mapping[str, Any]],
                states: MutableMapping[str, AssetState]
                ) -> tuple[list[dict[str, Any]], set[str]]:
        """Return (alert upserts, keys of the asset states that changed)."""
        alerts: list[dict[str, Any]] = []
        changed: set[str] = set()
        for outcome in outcomes:
            self._observe(outcome, states, alerts, changed)
        return alerts, changed

    def process_source(self, states: Mapping[str, Any], partition: int, offset: int,
                       outcomes: Iterable[Mapping[str, Any]]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Process the outcome record at (``partition``, ``offset``) without writing
        ``states`` (the worker's table): returns (alert upserts, table writes), to be applied
        in that order, the partition's position last (as ``VehiclePipeline.process_source``).
        """
        local = TableOverlay(states)
        alerts, changed = self.process(outcomes, local)
        return alerts, table_writes(states, local, changed, partition, offset)

    # -- bookkeeping ----------------------------------------------------------------------
    def _state(self, states: MutableMapping[str, AssetState], key: str,
               changed: set[str]) -> AssetState:
        state = states.get(key)
        if state is None:
            state = states[key] = new_asset_state()
            changed.add(key)
        return state

    def _observe(self, outcome: Mapping[str, Any], states: MutableMapping[str, AssetState],
                 alerts: list[dict[str, Any]], changed: set[str]) -> None:
        if outcome.get("kind") == CAR_CHARGE:
            touched = self._car_account(outcome, states, changed)
        else:
            touched = self._charger_outcome(outcome, states, changed)
        if touched is not None:
            chargers, cars = touched
            self._rejudge(chargers, cars, int(outcome["ts"]), states, alerts, changed)

    def _charger_outcome(self, outcome: Mapping[str, Any],
                         states: MutableMapping[str, AssetState], changed: set[str]
                         ) -> tuple[list[str], list[str]] | None:
        """Record a session the charger reported; it replaces the car's own account of it."""
        sid, charger, car = str(outcome["session_id"]), str(outcome["charger_id"]), car_of(outcome)
        ts, abnormal = int(outcome["ts"]), int(bool(outcome["abnormal"]))
        code = outcome.get("error_code")
        startup = outcome.get("startup_ms")
        startup = int(startup) if startup is not None else None
        start = outcome.get("start_ts")
        start = int(start) if start is not None else ts
        ckey = charger_key(charger)
        cstate = self._state(states, ckey, changed)
        connector = f"connector:{connector_of(sid)}"
        if any(entry[0] == sid for entry in cstate["recent"]) \
                or _redelivered(cstate, connector, start):
            return None  # a redelivered outcome
        _advance(cstate, connector, start)
        vin = outcome.get("vin")
        # The charger's word on a session replaces the car's account of it (a charger that
        # does not know the car's VIN: any car's overlapping account, the charger's word is
        # the one the rules were built on).
        replaced = [e for e in cstate["recent"] if _is_account(e)
                    and (not vin or e[1] == vin) and _overlaps(e, start, ts)]
        cars: list[str] = []
        for entry in replaced:
            self._drop(states, entry[0], charger, entry[1], changed)
            cars.append(entry[1])
        self._record(states, ckey, [sid, car, abnormal, code, ts, startup, start], changed)
        if vin:
            self._record(states, vehicle_key(str(vin)),
                         [sid, charger, abnormal, code, ts, startup, start], changed)
            cars.insert(0, str(vin))
        return [charger], cars

    def _car_account(self, event: Mapping[str, Any], states: MutableMapping[str, AssetState],
                     changed: set[str]) -> tuple[list[str], list[str]] | None:
        """A fleet car's own account of a public session (``car_accounts``).

        Its end is a session outcome, normal as far as the car says, unless the charger
        reports the session itself (then the charger's word stands). Its start, within
        ``retry_gap_min`` of such a session's end, says that session was cut short: the driver,
        still short of charge, plugged in again (at another charger, or re-plugged at the same
        one). A charger that is offline from the back office, as many keep charging while they
        are, reports nothing of its sessions; the cars that charge there do.
        """
        vin, charger, ts = str(event["vin"]), str(event["charger_id"]), int(event["ts"])
        vstate = self._state(states, vehicle_key(vin), changed)
        mark = f"account_{event['event']}"
        if _redelivered(vstate, mark, ts):
            return None
        _advance(vstate, mark, ts)
        changed.add(vehicle_key(vin))
        if event["event"] == "start":
            return self._cut_short_before(vin, ts, states, changed)
        sid = f"{ACCOUNT_PREFIX}{vin}:{ts}"
        start = ts - int(event.get("duration_ms") or 0)
        ckey = charger_key(charger)
        cstate = self._state(states, ckey, changed)
        if any(e[0] == sid or (not _is_account(e) and (e[1] == vin or e[1].startswith(WALK_IN))
                               and _overlaps(e, start, ts)) for e in cstate["recent"]):
            return None  # redelivered, or the charger reported this session itself
        self._record(states, ckey, [sid, vin, 0, None, ts, None, start], changed)
        self._record(states, vehicle_key(vin), [sid, charger, 0, None, ts, None, start], changed)
        return [charger], [vin]

    def _cut_short_before(self, vin: str, ts: int, states: MutableMapping[str, AssetState],
                          changed: set[str]) -> tuple[list[str], list[str]] | None:
        vkey = vehicle_key(vin)
        vstate = states.get(vkey)
        if vstate is None:
            return None
        cut = {e[0]: e[1] for e in vstate["recent"] if _is_account(e) and not e[2]
               and ts - self.retry_gap_ms <= e[4] < ts}
        if not cut:
            return None
        vstate["recent"] = [_cut_short(e) if e[0] in cut else e for e in vstate["recent"]]
        changed.add(vkey)
        for charger in set(cut.values()):
            ckey = charger_key(charger)
            cstate = states.get(ckey)
            if cstate is not None:
                cstate["recent"] = [_cut_short(e) if e[0] in cut else e
                                    for e in cstate["recent"]]
                changed.add(ckey)
        return sorted(set(cut.values())), [vin]

    def _record(self, states: MutableMapping[str, AssetState], key: str, entry: list[Any],
                changed: set[str]) -> None:
        """Append a session to an asset's window (its last ``window`` sessions)."""
        state = self._state(states, key, changed)
        state["recent"] = [*state["recent"], entry][-self.window:]
        changed.add(key)

    @staticmethod
    def _drop(states: MutableMapping[str, AssetState], sid: str, charger: str, vin: str,
              changed: set[str]) -> None:
        """Remove a car's account from its charger's and its car's windows."""
        for key in (charger_key(charger), vehicle_key(vin)):
            state = states.get(key)
            if state is not None:
                state["recent"] = [e for e in state["recent"] if e[0] != sid]
                changed.add(key)

    def _rejudge(self, chargers: list[str], cars: list[str], ts: int,
                 states: MutableMapping[str, AssetState], alerts: list[dict[str, Any]],
                 changed: set[str]) -> None:
        """Judge the assets a new or changed session names, and every asset whose excuse or
        voucher it may have changed."""
        judge: list[tuple[str, str]] = [("charger", c) for c in chargers]
        for vin in cars:
            vstate = states.get(vehicle_key(vin))
            if vstate is None:
                continue
            judge.append(("vehicle", vin))
            # The car's excuse at other chargers may have changed.
            judge += [("charger", e[1]) for e in vstate["recent"]
                      if e[2] and e[1] not in chargers]
        # Each charger's voucher for the cars that failed (or started slowly) there may have
        # changed, and with it their excuse at the other chargers where they failed.
        for charger in chargers:
            cstate = states.get(charger_key(charger))
            if cstate is None:
                continue
            for failed_here in dict.fromkeys(
                    e[1] for e in cstate["recent"]
                    if (e[2] or self._slow(self._start_excess(e, charger, e[1], states)))
                    and not e[1].startswith(WALK_IN) and e[1] not in cars):
                judge.append(("vehicle", failed_here))
                other = states.get(vehicle_key(failed_here))
                if other is not None:
                    judge += [("charger", e[1]) for e in other["recent"]
                              if e[2] and e[1] != charger]
        seen: set[tuple[str, str]] = set()
        for kind, asset in judge:
            if (kind, asset) in seen:
                continue
            seen.add((kind, asset))
            key = charger_key(asset) if kind == "charger" else vehicle_key(asset)
            state = states.get(key)
            if state is None:
                continue
            assessment = (self._judge_charger(asset, states, ts) if kind == "charger"
                          else self._judge_vehicle(asset, states, ts))
            alert = alerting.apply(
                state["alert"], asset_kind=kind, asset_id=asset,
                alert_type=CHARGER_FAULT if kind == "charger" else INLET_FAULT,
                detector=self.name, detector_version=self.version, assessment=assessment,
                ts_ms=ts)
            if alert is not None:
                alerts.append(alert)
                changed.add(key)

    # -- the cross pattern ----------------------------------------------------------------
    def _excused(self, car: str, at_charger: str, states: Mapping[str, AssetState],
                 plain: bool = False) -> bool:
        """Whether ``car``'s failures elsewhere explain its failure at ``at_charger``; with
        ``plain``, its vouchers are judged without excusing anyone (one level deep)."""
        if car.startswith(WALK_IN):
            return False
        vstate = states.get(vehicle_key(car))
        if vstate is None:
            return False
        others = {e[1] for e in vstate["recent"] if e[2] and e[1] != at_charger}
        if len(others) >= self.min_assets:
            return True
        # A slow start at another charger that starts other cars quickly is the car's own
        # wear showing (the slow-start rule): it explains a failure here as a voucher does.
        if any(e[1] != at_charger and self._slow(self._start_excess(e, e[1], car, states))
               for e in vstate["recent"]):
            return True
        # Fewer other chargers suffice when they serve other cars fine: two faulty cars that
        # both failed at the same two good chargers (retrying at the nearest one) explain each
        # other's failures there; a charger that fails with everyone does not vouch, so an
        # innocent car unlucky at two broken chargers is not excused at either.
        vouching = sum(self._vouches(c, car, states, excuse=not plain) for c in others)
        return vouching >= max(1, self.min_assets - 1)

    def _vouches(self, charger: str, without_car: str, states: Mapping[str, AssetState],
                 excuse: bool = True) -> bool:
        """At least ``min_others`` sessions of other cars in the charger's window, at most
        ``min_share`` of them abnormal; with ``excuse``, not counting the failures of cars
        their own failures elsewhere explain (two faulty cars that both charge at one good
        charger do not take its voucher from each other)."""
        cstate = states.get(charger_key(charger))
        if cstate is None:
            return False
        others = [e for e in cstate["recent"] if e[1] != without_car]
        if len(others) < self.min_others:
            return False
        abnormal = sum(1 for e in others if e[2] and not (
            excuse and self._excused(e[1], charger, states, plain=True)))
        return abnormal <= self.min_share * len(others)

    def _vouches_cleanly(self, charger: str, without_car: str,
                         states: Mapping[str, AssetState]) -> bool:
        """At least ``clean_others`` sessions of other cars in the charger's window, none
        abnormal."""
        cstate = states.get(charger_key(charger))
        if cstate is None:
            return False
        others = [e for e in cstate["recent"] if e[1] != without_car]
        return len(others) >= self.clean_others and not any(e[2] for e in others)

    def _typical_startup(self, charger: str, without_car: str,
                         states: Mapping[str, AssetState]) -> float | None:
        """The charger's start-up time with other cars (median), when it starts them quickly:
        None when it has fewer than ``min_others`` known start-ups of other cars or more than
        ``min_share`` of them were slow (a charger slow with everyone says nothing of a car)."""
        cstate = states.get(charger_key(charger))
        if cstate is None:
            return None
        known = [(e[1], s) for e in cstate["recent"]
                 if e[1] != without_car and (s := self._startup(e)) is not None]
        if len(known) < self.min_others:
            return None
        typical = float(np.median([s for _, s in known]))
        # Counted by car: one other faulty car starting slowly on each of its visits here
        # does not make the charger slow with everyone.
        cars = {car for car, _ in known}
        slow = {car for car, s in known if s > typical + self.slow_start_ms}
        return typical if len(slow) <= self.min_share * len(cars) else None

    def _start_excess(self, entry: list[Any], charger: str, car: str,
                      states: Mapping[str, AssetState]) -> float | None:
        """How much longer than with other cars (ms) ``car``'s start-up in ``entry`` (from
        the car's or the charger's list) took at ``charger``, when that charger starts other
        cars quickly; None when that cannot be told."""
        startup = self._startup(entry)
        if startup is None:
            return None
        typical = self._typical_startup(charger, car, states)
        return None if typical is None else startup - typical

    def _slow(self, excess: float | None) -> bool:
        return excess is not None and excess > self.slow_start_ms

    def _startup(self, entry: list[Any]) -> int | None:
        """An entry's start-up time (ms), None when unknown (entries of version 3 states have
        none) or longer than ``max_start_up_s``: minutes between plug-in and energy are a
        driver who has not started the session yet or a car waiting for its charging
        schedule, not repeated steps."""
        startup = entry[5] if len(entry) > 5 else None
        return startup if startup is not None and startup <= self.max_start_up_ms else None

    def _failed_visits(self, failed: list[list[Any]], charger: str) -> int:
        """Separate visits with an abnormal end at ``charger``: failures at least
        ``visit_gap_h`` after the previous one counted (a re-plug minutes later is the same
        visit)."""
        visits, last = 0, None
        for ts in sorted(int(e[4]) for e in failed if e[1] == charger):
            if last is None or ts - last >= self.visit_gap_h * HOUR_MS:
                visits += 1
            last = ts
        return visits

    def _judge_charger(self, charger: str, states: Mapping[str, AssetState], ts: int
                       ) -> Assessment:
        recent = states[charger_key(charger)]["recent"]
        # Only the charger's own reports blame it. A car's account of a session cut short has
        # no start-up time to excuse a worn inlet by, so two faulty cars cut short here before
        # either is known would blame a good charger; and a charger that reports nothing is
        # raised as ``charger_silent`` already.
        failed = [e for e in recent if e[2] and not _is_account(e)]
        blamed = sorted({e[1] for e in failed if not self._excused(e[1], charger, states)})
        excused = sorted({e[1] for e in failed} - set(blamed))
        share = len(failed) / max(1, len(recent))
        was_open = states[charger_key(charger)]["alert"]["open"] is not None
        # Hysteresis: raised with a share, held while several cars still fail here.
        active = len(blamed) >= self.min_assets and (was_open or share >= self.min_share)
        evidence: dict[str, Any] = {
            "sessions": len(recent),
            "abnormal_sessions": len(failed),
            "abnormal_share": round(share, 3),
            "cars_failing_here": len(blamed),
            "fleet_cars_failing_here": [c for c in blamed if not c.startswith(WALK_IN)],
            "walk_in_cars_failing_here": sum(c.startswith(WALK_IN) for c in blamed),
            "cars_excused_as_faulty_themselves": excused,
            "cars_charging_fine_elsewhere_since": self._fine_elsewhere(charger, blamed, states),
            "error_codes": _codes(failed),
        }
        predicted, slope, stderr = self._predict(recent, ts)
        evidence["abnormal_share_trend_per_day"] = slope
        evidence["abnormal_share_trend_stderr"] = stderr
        if not active:
            return Assessment(active=False, title="Charger sessions end normally again",
                              evidence=evidence)
        return Assessment(
            active=True, severity="critical" if share >= 0.5 else "warning",
            title=f"Charger fault: {len(failed)} of its last {len(recent)} sessions ended "
                  f"abnormally, with {len(blamed)} different cars",
            evidence=evidence, predicted_failure_ts=predicted,
            recommended_action=(
                "Several different cars had their sessions cut short at this charger (codes: "
                f"{', '.join(evidence['error_codes']) or 'none reported'}), while those cars "
                "charge normally elsewhere: the charger is at fault, not the cars. Send a "
                "technician (connector, residual-current device, contactors, meter) and mark "
                "it out of service in the app if it keeps failing; drivers who were affected "
                "can be told their car is fine."),
        )

    def _fine_elsewhere(self, charger: str, cars: list[str],
                        states: Mapping[str, AssetState]) -> list[str]:
        """Fleet cars that failed here and later charged normally at another charger (a
        driver's retry nearby, or a later stop): their car is fine, so this charger is not."""
        fine = []
        for car in cars:
            vstate = states.get(vehicle_key(car)) if not car.startswith(WALK_IN) else None
            if vstate is None:
                continue
            failed_here = [e[4] for e in vstate["recent"] if e[1] == charger and e[2]]
            if not failed_here:  # that failure has left the car's own window
                continue
            if any(e[1] != charger and not e[2] and e[4] > min(failed_here)
                   for e in vstate["recent"]):
                fine.append(car)
        return fine

    def _judge_vehicle(self, vin: str, states: Mapping[str, AssetState], ts: int
                       ) -> Assessment:
        recent = states[vehicle_key(vin)]["recent"]
        failed = [e for e in recent if e[2]]
        vouched = sorted({e[1] for e in failed if self._vouches(e[1], vin, states)})
        unvouched = sorted({e[1] for e in failed} - set(vouched))
        share = len(failed) / max(1, len(recent))  # a car whose only account was replaced
        # One charger that serves every other car fine, failing with this one on separate
        # visits (module docstring): the car, as much as failures at two chargers are.
        revisited = sorted(c for c in vouched
                           if self._failed_visits(failed, c) >= self.min_assets
                           and self._vouches_cleanly(c, vin, states))
        excess = [self._start_excess(e, e[1], vin, states) for e in recent]
        slow = [e for e, x in zip(recent, excess, strict=True) if self._slow(x)]
        very_slow = [e for e, x in zip(recent, excess, strict=True)
                     if x is not None and x > self.very_slow_start_ms]
        worn = [e for e in recent if e in slow or (e[2] and e[1] in vouched)]
        worn_chargers = sorted({e[1] for e in worn})
        # A very slow start repeated several steps: it weighs as two worn sessions. Slow
        # starts alone never raise: a driver who habitually starts the session late is slow
        # at every charger too, but their sessions do not fail.
        slow_starts = (bool(slow) and bool(vouched)
                       and len(worn) + len(very_slow) >= self.min_worn
                       and len(worn_chargers) >= self.min_assets)
        was_open = states[vehicle_key(vin)]["alert"]["open"] is not None
        # Hysteresis: raised on vouching chargers, held while it still fails or starts slowly
        # at several chargers (a voucher can lapse while the car is still faulty: another
        # faulty car failing at the same charger), or fails on several visits to one.
        active = (len(vouched) >= self.min_assets or bool(revisited) or slow_starts
                  or (was_open and (len({e[1] for e in failed} | {e[1] for e in slow})
                                    >= self.min_assets
                                    or any(self._failed_visits(failed, c) >= self.min_assets
                                           for c in {e[1] for e in failed}))))
        evidence: dict[str, Any] = {
            "sessions": len(recent),
            "abnormal_sessions": len(failed),
            "abnormal_share": round(share, 3),
            "chargers_failing_with_this_car": vouched,
            "chargers_failing_for_others_too": unvouched,
            "chargers_failing_on_separate_visits": revisited,
            "slow_starts": len(slow),
            "very_slow_starts": len(very_slow),
            "start_up_excess_s": [round(x / 1000, 1) for x in excess
                                  if x is not None and self._slow(x)],
            "chargers_slow_to_start_with_this_car": sorted({e[1] for e in slow}),
            "chargers_failing_or_slow_with_this_car": worn_chargers,
            "error_codes": _codes(failed),
        }
        predicted, slope, stderr = self._predict(recent, ts)
        evidence["abnormal_share_trend_per_day"] = slope
        evidence["abnormal_share_trend_stderr"] = stderr
        if not active:
            return Assessment(active=False, title="The car's charging sessions end normally "
                              "again", evidence=evidence)
        if len(vouched) >= self.min_assets:
            title = (f"Charging inlet / on-board charger fault: sessions fail at "
                     f"{len(vouched)} chargers that charge other cars fine")
            what = (f"{len(failed)} of this car's last {len(recent)} public charging sessions "
                    f"ended abnormally (at {len(vouched)} different chargers that work for "
                    "other cars)")
        elif revisited:
            title = ("Charging inlet / on-board charger fault: sessions fail on separate "
                     "visits to a charger that charges other cars fine")
            what = (f"{len(failed)} of this car's last {len(recent)} public charging sessions "
                    f"ended abnormally (on separate visits to {revisited[0]}, which charges "
                    "every other car fine)")
        elif slow_starts:
            title = (f"Charging inlet / on-board charger fault: sessions start slowly or fail "
                     f"at {len(worn_chargers)} chargers that start other cars quickly")
            what = (f"{len(worn)} of this car's last {len(recent)} public charging sessions "
                    f"were slow to start ({len(slow)}: the charger had to repeat start-up "
                    "steps such as the plug lock or the isolation check) or ended abnormally "
                    f"({len(failed)}), at {len(worn_chargers)} chargers that serve other cars "
                    "fine")
        else:  # held (hysteresis): the rule that raised it may no longer hold on its own
            title = ("Charging inlet / on-board charger fault: sessions still fail or start "
                     "slowly")
            what = (f"{len(failed)} of this car's last {len(recent)} public charging sessions "
                    f"ended abnormally and {len(slow)} were slow to start, at "
                    f"{len({e[1] for e in failed} | set(worn_chargers))} chargers")
        return Assessment(
            active=True, severity="critical" if share >= 0.5 else "warning",
            title=title, evidence=evidence, predicted_failure_ts=predicted,
            recommended_action=(
                f"{what}, so the car's charging inlet or on-board charger is the likely "
                "cause. "
                "Ask the owner whether charging stops early or the plug will not lock, and "
                "book a workshop check of the inlet, its lock and the on-board charger before "
                "the car can no longer charge at all."),
        )

    def _predict(self, recent: list[list[Any]], ts: int
                 ) -> tuple[int | None, float | None, float | None]:
        """When the abnormal share would reach 1 (every session failing), from its trend."""
        if len(recent) < 4:
            return None, None, None
        t = np.array([(e[4] - ts) / DAY_MS for e in recent], dtype=np.float64)
        values = np.array([float(e[2]) for e in recent], dtype=np.float64)
        slope, level, stderr, _dof = weighted_trend(t, values, self.half_life_days)
        if not math.isfinite(stderr):
            return None, None, None
        # Two decimals: finer moves of the trend are not news for care staff (no upsert).
        slope_r, stderr_r = round(slope, 2), round(stderr, 2)
        if level >= 1.0:
            return ts, slope_r, stderr_r
        if slope - stderr <= 0:
            return None, slope_r, stderr_r
        return ts + int((1.0 - level) / slope * DAY_MS), slope_r, stderr_r


def _codes(failed: list[list[Any]]) -> list[str]:
    return sorted({str(e[3]) for e in failed if e[3]})


class TableOverlay(MutableMapping[str, AssetState]):
    """Reads through to the table, keeps new entries local until the caller writes them."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        self.base = base
        self.local: dict[str, AssetState] = {}

    def __getitem__(self, key: str) -> AssetState:
        if key in self.local:
            return self.local[key]
        value: AssetState | None = self.base.get(key)
        if value is None:
            raise KeyError(key)
        self.local[key] = value
        return value

    def __setitem__(self, key: str, value: AssetState) -> None:
        self.local[key] = value

    def __delitem__(self, key: str) -> None:
        del self.local[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.local)

    def __len__(self) -> int:
        return len(self.local)
