"""Charger derating: a charger that folds its power back a few minutes into every session.

Why it matters
--------------
A DC power stage whose cooling fails (a clogged filter, a dead fan, a coolant leak) or a power
module on its way out overheats under load; the charger's controller protects it by folding
the output current back. Cars still charge, only slower and slower, owners queue at a charger
that looks fine in every status report, and one day the stage gives up. Seeing the foldback
early lets the operator send a technician while the charger still works.

What the charger reports, and the look-alikes
--------------------------------------------
OCPP 1.6 ``MeterValues`` carry ``Power.Active.Import`` (delivered), ``Power.Offered`` and
usually the car's ``SoC``. ``Power.Offered`` is the charger's rating: the car decides how much
it takes. So delivered/offered says nothing by itself:

* an AC car (11 kW) on a 22 kW charger, or an 80 kW car on a 150 kW charger, takes a fraction
  of the offer for the whole session: healthy;
* a battery near full tapers (the car asks for less above ~80 % SoC): healthy;
* a car from outside the fleet (no VIN) is just another car: the rule must not need a VIN.

What a failing stage cannot hide is the *shape of a session*: a healthy charger delivers what
the car asks for from the first minute to the taper, while a folding-back one delivers the
car's power for the first minutes (the stage is still cool) and then much less, far from full.

Rule (the constructor defaults)
-------------------------------
Per connector and transaction, from meter values with power > 0 and SoC below ``taper_soc``:

* ``early`` = the largest power within ``early_ms`` (4 min) of the first reading;
* ``sustained`` = the median of the last ``tail_len`` (5) powers at least ``sustain_after_ms``
  (8 min) after the first reading (a stage that overheats folds back within minutes of
  load; the gap to the early window leaves it time to settle).

When the session ends (``Finishing`` / ``Available`` / ``Faulted`` / ``Unavailable``, or a
new transaction id on the connector) its ratio ``sustained / early`` is a verdict: derated
below ``derated_ratio`` (0.85; healthy sessions stay within meter noise, >= 0.95), healthy
otherwise. Sessions without an early power, with fewer than ``min_tail`` sustained readings
(short, near full, no SoC) give no verdict. Without SoC the taper cannot be told apart, so
such readings are not used.

Persistence: the alert is active while at least ``min_derated`` (2) of the last ``window``
(4) verdicts are derated, so one odd session (a car that limited itself) is not an alert and
a derating charger is flagged at its second session after the onset. Severity: critical when
the latest ratio is below ``critical_ratio`` (0.5), warning otherwise.

Failure prediction: the ratios of the last ``max_history`` derated sessions are fitted
against time (``diagnostics.trend.weighted_trend``, half-life ``half_life_days``); when the
ratio falls significantly (slope + stderr < 0), the predicted failure is when it reaches
``useful_ratio`` (0.3: a session then delivers less than a third of what the car asks for).

Evidence: the latest session's early and sustained power (W), ratio, SoC, offered power,
derated / judged session counts in the window, the ratio trend (per day, stderr).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from diagnostics.base import Assessment, Detector, Outcome
from diagnostics.charging import END_STATUSES, OFFERED, POWER
from diagnostics.helpers import as_number
from diagnostics.trend import weighted_trend
from vocab.eventtime import DAY_MS

SOC = "SoC"


def _new_session(tx: object, ts: int) -> dict[str, Any]:
    return {"tx": tx, "first": ts, "early": None, "tail": [], "soc": None, "offered": None}


class ChargerDerating(Detector):
    """Flags a charger whose delivered power folds back within sessions (see module doc)."""

    name: ClassVar[str] = "charger_derating"
    version: ClassVar[str] = "1"

    def __init__(self, early_ms: int = 240_000, sustain_after_ms: int = 480_000,
                 tail_len: int = 5, min_tail: int = 3, taper_soc: float = 80.0,
                 derated_ratio: float = 0.85, critical_ratio: float = 0.5,
                 useful_ratio: float = 0.3, window: int = 4, min_derated: int = 2,
                 max_history: int = 8, half_life_days: float = 7.0) -> None:
        self.early_ms = early_ms
        self.sustain_after_ms = sustain_after_ms
        self.tail_len = tail_len
        self.min_tail = min_tail
        self.taper_soc = taper_soc
        self.derated_ratio = derated_ratio
        self.critical_ratio = critical_ratio
        self.useful_ratio = useful_ratio
        self.window = window
        self.min_derated = min_derated
        self.max_history = max_history
        self.half_life_days = half_life_days

    def new_state(self) -> dict[str, Any]:
        # open: connector -> session being measured; verdicts: [1 derated / 0 healthy];
        # history: [ts, ratio] of recent derated sessions (the trend).
        return {"open": {}, "verdicts": [], "history": [], "active": False}

    # -- meter values -------------------------------------------------------------------
    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
               ) -> Outcome:
        measurands = signals.get("measurands")
        if not isinstance(measurands, Mapping):
            return False, None
        connector = str(signals.get("connectorId", 1))
        tx = signals.get("transactionId")
        power = as_number(measurands.get(POWER))
        soc = as_number(measurands.get(SOC))
        changed, assessment = False, None
        session = state["open"].get(connector)
        if session is not None and tx is not None and session["tx"] not in (None, tx):
            # A new transaction on the connector: the previous session's end was missed.
            changed, assessment = True, self._judge(state, connector, ts_ms)
            session = None
        if power is None or power <= 0 or soc is None or soc >= self.taper_soc:
            return changed, assessment
        if session is None:
            session = state["open"][connector] = _new_session(tx, ts_ms)
            changed = True
        elapsed = ts_ms - session["first"]
        if elapsed <= self.early_ms:
            if session["early"] is None or power > session["early"]:
                session["early"] = power
                changed = True
            return changed, assessment
        if elapsed >= self.sustain_after_ms:
            session["tail"] = [*session["tail"], power][-self.tail_len:]
            session["soc"] = soc
            session["offered"] = as_number(measurands.get(OFFERED))
            return True, assessment
        return changed, assessment  # between the windows: nothing to keep

    # -- status notifications -----------------------------------------------------------
    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        if event.get("status") not in END_STATUSES:
            return False, None
        connector = str(event.get("connectorId", 1))
        if connector not in state["open"]:
            return False, None
        return True, self._judge(state, connector, ts_ms)

    # -- verdicts -----------------------------------------------------------------------
    def session_ratio(self, session: Mapping[str, Any]) -> float | None:
        """A measured session's ``sustained / early`` power, the figure its verdict is on;
        None when it gives no verdict (too short, near full or without SoC)."""
        early, tail = session["early"], session["tail"]
        if early is None or early <= 0 or len(tail) < self.min_tail:
            return None
        return float(statistics.median(tail) / early)

    def _judge(self, state: dict[str, Any], connector: str, ts_ms: int) -> Assessment | None:
        session = state["open"].pop(connector)
        early, tail = session["early"], session["tail"]
        ratio = self.session_ratio(session)
        if ratio is None:
            return None  # too short, near full or without SoC: no verdict
        derated = ratio < self.derated_ratio
        state["verdicts"] = [*state["verdicts"], int(derated)][-self.window:]
        if derated:
            state["history"] = [*state["history"], [ts_ms, round(ratio, 4)]][-self.max_history:]
        count = sum(state["verdicts"])
        active = count >= self.min_derated
        if not active and not state["active"]:
            return None  # nothing to say: healthy, or one odd session
        state["active"] = active
        evidence: dict[str, Any] = {
            "early_power_w": round(early, 1),
            "sustained_power_w": round(statistics.median(tail), 1),
            "ratio": round(ratio, 3),
            "soc_pct": session["soc"],
            "offered_w": session["offered"],
            "derated_sessions": count,
            "judged_sessions": len(state["verdicts"]),
        }
        predicted, slope, stderr = self._predict(state["history"], ts_ms, ratio)
        evidence["ratio_trend_per_day"] = slope
        evidence["ratio_trend_stderr"] = stderr
        if not active:
            return Assessment(active=False, title="Charger delivers full power again",
                              evidence=evidence)
        pct = round(100 * ratio)
        return Assessment(
            active=True,
            severity="critical" if ratio < self.critical_ratio else "warning",
            title=f"Charger folds back to {pct} % of the car's power during sessions",
            evidence=evidence,
            predicted_failure_ts=predicted,
            recommended_action=(
                f"This charger delivers the full power for the first minutes and then only "
                f"about {pct} % of what the car asks for, well before the battery is full: a "
                "power stage that overheats (cooling fan, filter or coolant) or a failing power "
                "module. Send a technician to check the cooling and the power modules; until "
                "then tell drivers that sessions here take longer than usual."),
        )

    def _predict(self, history: list[list[float]], ts_ms: int, ratio: float
                 ) -> tuple[int | None, float | None, float | None]:
        if len(history) < 3:
            return None, None, None
        t = np.array([(h[0] - ts_ms) / DAY_MS for h in history], dtype=np.float64)
        values = np.array([h[1] for h in history], dtype=np.float64)
        slope, level, stderr, _dof = weighted_trend(t, values, self.half_life_days)
        if not math.isfinite(stderr):
            return None, None, None
        slope_r, stderr_r = round(slope, 4), round(stderr, 4)
        if slope + stderr >= 0 or level <= self.useful_ratio:
            return (ts_ms if level <= self.useful_ratio else None), slope_r, stderr_r
        days = (level - self.useful_ratio) / -slope
        return ts_ms + int(days * DAY_MS), slope_r, stderr_r
