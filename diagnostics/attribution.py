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

Input: finished session outcomes from the charger pipeline (``session_id``, ``charger_id``,
``vin`` or None for a car outside the fleet, ``abnormal``, ``end_status``, ``error_code``,
``startup_ms`` (None when unknown), ``ts`` = the session's end, event time). State: one small
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
from diagnostics.pipeline import table_writes
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS, HOUR_MS

CHARGER_FAULT = "charger_fault"
INLET_FAULT = "charging_inlet_fault"
AssetState = dict[str, Any]


def charger_key(charger_id: str) -> str:
    return f"charger/{charger_id}"


def vehicle_key(vin: str) -> str:
    return f"vehicle/{vin}"


def car_of(outcome: Mapping[str, Any]) -> str:
    """The car of a session: its VIN, or a walk-in car of its own."""
    vin = outcome.get("vin")
    return str(vin) if vin else f"walk-in:{outcome['session_id']}"


def new_asset_state() -> AssetState:
    # recent: [session_id, other asset (car or charger), abnormal 0/1, error code, ts,
    #          startup ms or None]
    return {"recent": [], "alert": alerting.new_alert_state()}


class ChargingAttribution:
    """Decides charger fault vs vehicle inlet fault from finished session outcomes."""

    name: ClassVar[str] = "charging_attribution"
    # 2: a car failing at one other vouching charger is excused; 3: a car failing on separate
    # visits to one cleanly vouching charger is blamed; 4: slow starts count as evidence
    version: ClassVar[str] = "4"

    def __init__(self, window: int = 12, min_assets: int = 2, min_share: float = 0.2,
                 min_others: int = 2, half_life_days: float = 7.0,
                 visit_gap_h: float = 6.0, clean_others: int = 4,
                 slow_start_s: float = 10.0, very_slow_start_s: float = 45.0,
                 min_worn: int = 3, max_start_up_s: float = 180.0) -> None:
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
        local = _Overlay(states)
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
        sid, charger, car = str(outcome["session_id"]), str(outcome["charger_id"]), car_of(outcome)
        ts, abnormal = int(outcome["ts"]), int(bool(outcome["abnormal"]))
        code = outcome.get("error_code")
        startup = outcome.get("startup_ms")
        startup = int(startup) if startup is not None else None
        ckey = charger_key(charger)
        cstate = self._state(states, ckey, changed)
        if any(entry[0] == sid for entry in cstate["recent"]):
            return  # a redelivered outcome
        cstate["recent"] = [*cstate["recent"], [sid, car, abnormal, code, ts, startup]][
            -self.window:]
        changed.add(ckey)
        vin = outcome.get("vin")
        judge: list[tuple[str, str]] = [("charger", charger)]
        if vin:
            vkey = vehicle_key(str(vin))
            vstate = self._state(states, vkey, changed)
            vstate["recent"] = [*vstate["recent"], [sid, charger, abnormal, code, ts, startup]][
                -self.window:]
            changed.add(vkey)
            judge.append(("vehicle", str(vin)))
            # The car's excuse at other chargers may have changed.
            judge += [("charger", e[1]) for e in vstate["recent"] if e[2] and e[1] != charger]
        # This charger's voucher for the cars that failed (or started slowly) here may have
        # changed, and with it their excuse at the other chargers where they failed.
        for failed_here in dict.fromkeys(e[1] for e in cstate["recent"]
                                         if (e[2] or self._slow(
                                             self._start_excess(e, charger, e[1], states)))
                                         and not e[1].startswith("walk-in:") and e[1] != vin):
            judge.append(("vehicle", failed_here))
            other = states.get(vehicle_key(failed_here))
            if other is not None:
                judge += [("charger", e[1]) for e in other["recent"] if e[2] and e[1] != charger]
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
    def _excused(self, car: str, at_charger: str, states: Mapping[str, AssetState]) -> bool:
        if car.startswith("walk-in:"):
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
        vouching = sum(self._vouches(c, car, states) for c in others)
        return vouching >= max(1, self.min_assets - 1)

    def _vouches(self, charger: str, without_car: str, states: Mapping[str, AssetState]
                 ) -> bool:
        cstate = states.get(charger_key(charger))
        if cstate is None:
            return False
        others = [e for e in cstate["recent"] if e[1] != without_car]
        if len(others) < self.min_others:
            return False
        abnormal: int = sum(e[2] for e in others)
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
        failed = [e for e in recent if e[2]]
        blamed = sorted({e[1] for e in failed if not self._excused(e[1], charger, states)})
        excused = sorted({e[1] for e in failed} - set(blamed))
        share = len(failed) / len(recent)
        was_open = states[charger_key(charger)]["alert"]["open"] is not None
        # Hysteresis: raised with a share, held while several cars still fail here.
        active = len(blamed) >= self.min_assets and (was_open or share >= self.min_share)
        evidence: dict[str, Any] = {
            "sessions": len(recent),
            "abnormal_sessions": len(failed),
            "abnormal_share": round(share, 3),
            "cars_failing_here": len(blamed),
            "fleet_cars_failing_here": [c for c in blamed if not c.startswith("walk-in:")],
            "walk_in_cars_failing_here": sum(c.startswith("walk-in:") for c in blamed),
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
            vstate = states.get(vehicle_key(car)) if not car.startswith("walk-in:") else None
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
        share = len(failed) / len(recent)
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


class _Overlay(MutableMapping[str, AssetState]):
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
