"""Silence: an asset that stops reporting for longer than its own reporting pattern explains.

Why it matters
--------------
A car whose telematics unit stops sending (a failed modem or antenna, a blown fuse, a 12 V
battery too flat to power the unit) is invisible to every other detector: no data, no alert.
The same holds for a charger whose link or controller died: it cannot report a fault at all.
Care staff should hear about the silence itself, and hear it once.

The clock
---------
A silent asset sends no message that could tell us it is silent, so "now" must come from the
rest of the fleet: the pipeline keeps a *watermark* (the newest event time it has seen, per
source partition in the worker) and whenever the watermark passes a sweep boundary (every
``SWEEP_INTERVAL_MS`` of event time) it asks this detector about every asset it holds, at the
boundary. Sweeps happen at fixed boundaries of event time and the alert's time is the
boundary, so a replay or a restarted worker raises the same alerts with the same ids
(``sweep_due``). The sweeps come between records, before the record that moved the watermark
past the boundary; when one record moves it past several (the fleet resumes after a gap), the
detector is asked at each boundary where its answer can change (``Silence.sweep_times``). So
the alert's time is the first boundary at which the silence was detectable, however the
records were batched. A partition whose every asset falls silent has no clock left; with more
than a handful of assets per partition that does not happen. One asset cannot move the clock
far (``Watermark``): a report far ahead of it waits for another asset to agree.

Reporting pattern
-----------------
A parked car sleeps and reports every half hour or so (or less often in a deep sleep), a
driving car every few seconds, a charger heartbeats while idle and sends meter values while
charging. What counts is the longest gap the asset *normally* leaves: ``normal_gap`` is the
longest gap seen between its reports, forgotten slowly (it halves every ``gap_half_life_days``
unless a gap as long comes again), so the threshold follows a changed reporting interval.

* threshold = clamp(``factor`` x normal_gap, ``floor_s``, ``ceiling_s``); the floor keeps a few
  lost messages from alerting (0.5 % of messages lost means three in a row about once in eight
  million), the ceiling bounds the delay for an asset that has learned very long gaps;
* a sweep at ``t`` with ``t - last_report > threshold`` raises the alert (warning; critical
  once silent for ``critical_after_s``); the evidence (last report, threshold, learned gap)
  stays the same while the silence lasts, so alarm hygiene sends one alert, not one per sweep;
* the next report resolves it. The silent gap is then learned only up to the threshold, so a
  real outage does not teach the detector that outages are normal (an asset that keeps going
  quiet for longer raises its threshold one step per episode, up to the ceiling);
* until ``min_gaps`` gaps are known the detector abstains: it has no pattern to compare with.

Restart safety: the last report time is stored only when it moved at least ``quantum_s``
(a car at 1 Hz costs one state write per ``quantum_s``, not one per message); every figure
above is computed from the stored value, so a restarted worker sees exactly what an
uninterrupted one saw. The stored time lags the true last report by less than ``quantum_s``:
silences look up to that much longer and learned gaps up to that much longer (conservative).

Evidence: ``last_report_ts`` (epoch ms, within ``quantum_s``), ``silent_hours`` at the first
sweep that saw it, ``threshold_hours``, ``normal_gap_hours``, ``gaps_learned``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from diagnostics.base import Assessment, Detector, Outcome
from vocab.eventtime import DAY_MS, HOUR_MS, MINUTE_MS

SWEEP_INTERVAL_MS = 15 * MINUTE_MS  # event time between sweeps: the detection delay's granularity

VEHICLE_ACTION = (
    "Ask the owner whether the car is in use and where it is: it has stopped reporting. If it "
    "is parked somewhere without mobile coverage (underground garage, abroad) nothing is wrong. "
    "Otherwise it may have a flat 12 V battery or a failed connectivity module: offer a check "
    "of the telematics unit and the 12 V battery, and roadside assistance if the car will not "
    "start.")
CHARGER_ACTION = (
    "The charger has stopped reporting: check on site or with the operator whether it is "
    "powered and online (network link, controller, circuit breaker); until then owners cannot "
    "rely on it, so point them to another charger nearby.")


REPORTING = Assessment(active=False, title="Reporting within its usual pattern")


class Silence(Detector):
    """Silence against the asset's own learned reporting pattern (see the module docstring):
    a car's; ``ChargerSilence`` is a charger's."""

    name: ClassVar[str] = "silence"
    version: ClassVar[str] = "1.0.0"
    sweeps: ClassVar[bool] = True  # a silent asset sends nothing: only a sweep can tell
    asset: ClassVar[str] = "vehicle"  # what the titles and the recommended action speak of

    def __init__(self, floor_s: float = 3 * 3600.0, factor: float = 4.0,
                 ceiling_s: float = 48 * 3600.0, gap_half_life_days: float = 14.0,
                 min_gaps: int = 3, quantum_s: float = 600.0,
                 critical_after_s: float = 24 * 3600.0) -> None:
        if not (0 < floor_s <= ceiling_s and factor >= 1 and gap_half_life_days > 0
                and min_gaps >= 1 and 0 < quantum_s < floor_s and critical_after_s > 0):
            raise ValueError("need 0 < floor_s <= ceiling_s, factor >= 1, "
                             "gap_half_life_days > 0, min_gaps >= 1, 0 < quantum_s < floor_s "
                             "and critical_after_s > 0")
        self.floor_s = floor_s
        self.factor = factor
        self.ceiling_s = ceiling_s
        self.gap_half_life_days = gap_half_life_days
        self.min_gaps = min_gaps
        self.quantum_s = quantum_s
        self.critical_after_s = critical_after_s

    def new_state(self) -> dict[str, Any]:
        # last: stored report time; gap: learned normal gap (ms) as of last; n: gaps learned
        return {"last": None, "gap": 0, "n": 0}

    def normal_gap_ms(self, state: Mapping[str, Any], ts_ms: int) -> float:
        """The learned longest normal gap, decayed to ``ts_ms``."""
        last = state["last"]
        age_days = 0.0 if last is None else max(0, ts_ms - int(last)) / DAY_MS
        return float(state["gap"]) * float(0.5 ** (age_days / self.gap_half_life_days))

    def threshold_ms(self, state: Mapping[str, Any], ts_ms: int) -> float:
        learned = self.factor * self.normal_gap_ms(state, ts_ms)
        return min(self.ceiling_s * 1000, max(self.floor_s * 1000, learned))

    def update(self, state: dict[str, Any], ts_ms: int, signals: Mapping[str, object]
               ) -> Outcome:
        return self.report(state, ts_ms)

    def on_event(self, state: dict[str, Any], ts_ms: int, event: Mapping[str, Any]) -> Outcome:
        return self.report(state, ts_ms)

    def report(self, state: dict[str, Any], ts_ms: int) -> Outcome:
        """The asset reported at ``ts_ms`` (any message counts)."""
        last = state["last"]
        if last is None:
            state["last"] = ts_ms
            return True, None
        gap = ts_ms - last
        if gap < self.quantum_s * 1000:
            return False, None  # within the storage quantum (or a late message): nothing new
        # Measured against the pattern as it was *before* this gap: was it a silence?
        threshold = self.threshold_ms(state, last)
        decayed = self.normal_gap_ms(state, ts_ms)
        state["gap"] = int(max(decayed, min(gap, threshold)))
        state["last"] = ts_ms
        state["n"] = min(int(state["n"]) + 1, 1_000_000)
        if gap <= threshold:
            return True, None
        return True, Assessment(
            active=False, title=f"{self.asset.capitalize()} reports again",
            evidence={"last_report_ts": last, "silent_hours": round(gap / HOUR_MS, 2),
                      "threshold_hours": round(threshold / HOUR_MS, 2)})

    def sweep_times(self, state: Mapping[str, Any], since_ms: int, upto_ms: int,
                    interval_ms: int) -> list[int]:
        """Between two reports the answer of ``sweep`` is a step function of the boundary:
        reporting, then silent (a warning, or an abstention), then critical. So these
        boundaries in (``since_ms``, ``upto_ms``] give every answer an uninterrupted sweep
        would: the first (an open alert resolved by a late report), the first past the
        threshold, the first at the critical age, and the last."""
        first = since_ms + interval_ms  # ``since_ms`` is a boundary
        times = {first, upto_ms}
        last = state["last"]
        if last is not None:
            beyond = last + self.threshold_ms(state, last)  # silent when strictly past it
            times.add((int(beyond // interval_ms) + 1) * interval_ms)
            critical = last + int(self.critical_after_s * 1000)
            times.add(-(-critical // interval_ms) * interval_ms)
        return sorted(t for t in times if first <= t <= upto_ms)

    def sweep(self, state: dict[str, Any], ts_ms: int) -> Outcome:
        """Asked at a sweep boundary ``ts_ms``: is the asset silent for longer than it should?

        Never changes the state (the answer is a function of the state and ``ts_ms``).
        """
        last = state["last"]
        if last is None:
            return False, None
        threshold = self.threshold_ms(state, last)
        silent = ts_ms - last
        if silent <= threshold:
            # Reporting: resolves an open alert whose resolving report could not (it arrived
            # late, older than the alert); alarm hygiene ignores it when nothing is open.
            return False, REPORTING
        if int(state["n"]) < self.min_gaps:
            return False, Assessment(
                active=False, title="Reporting pattern not learned yet",
                abstain_reason=f"{state['n']} reporting gaps seen, need {self.min_gaps}")
        severity = "critical" if silent >= self.critical_after_s * 1000 else "warning"
        what = "Car" if self.asset == "vehicle" else "Charger"
        return False, Assessment(
            active=True, severity=severity,
            title=f"{what} has stopped reporting",
            evidence={"last_report_ts": last,
                      "threshold_hours": round(threshold / HOUR_MS, 2),
                      "normal_gap_hours": round(self.normal_gap_ms(state, last) / HOUR_MS, 2),
                      "gaps_learned": int(state["n"])},
            recommended_action=VEHICLE_ACTION if self.asset == "vehicle" else CHARGER_ACTION)


class ChargerSilence(Silence):
    """A charger's silence (alert ``charger_silent``): the same rules and parameters as a car's.

    A charger heartbeats every few minutes while idle and sends meter values while charging,
    so any record counts as a report and a long session is not a silence. It runs in the
    charger silence pipeline (``diagnostics/charger_silence.py``), not the charger pipeline.
    """

    asset: ClassVar[str] = "charger"


Span = tuple[int, int]  # (the last boundary swept before, the newest boundary to sweep)


def sweep_due(clock: dict[str, Any], ts_ms: int,
              interval_ms: int = SWEEP_INTERVAL_MS) -> Span | None:
    """Advance the event-time ``clock`` to ``ts_ms``; return the span of boundaries to sweep
    (``since`` excluded, ``upto`` included), or None.

    Sweeps are due at every boundary (a multiple of ``interval_ms``) at or below the watermark
    (the newest event time seen) that was not swept yet; the detectors choose which of them
    they need (``Detector.sweep_times``). The clock only stores the last boundary swept
    (``swept``): the watermark's own boundary always equals it after a call, so the watermark
    need not be stored and the clock changes once per sweep, not per record. The first
    boundary is not swept: there is nothing to compare with yet.
    """
    boundary = int(ts_ms) - int(ts_ms) % interval_ms
    swept = clock.get("swept")
    if swept is not None and boundary <= swept:
        return None
    clock["swept"] = boundary
    return None if swept is None else (int(swept), boundary)



def new_clock() -> dict[str, Any]:
    return {"swept": None}


# How far ahead of a partition's clock one record may be and still move it on its own: two
# sweep intervals, far below the 3 h silence floor, so one record can bring a sweep forward by
# at most this much. A record further ahead waits for a second asset to report as far ahead
# (``Watermark``): an asset cannot speak for the whole partition.
CLOCK_LEAD_MS = 2 * SWEEP_INTERVAL_MS
HELD_MAX = 8  # reports held ahead of a partition's clock (one per asset, the earliest kept)


class Watermark:
    """One pass of a partition's reports over its sweep ``clock`` (``{"swept", "ahead"}``).

    ``report(asset, ts)`` says whether ``ts`` is *confirmed*: within ``lead_ms`` of the
    watermark (the newest confirmed time; before the first, no time is confirmed). A time
    further ahead is held in the clock (``ahead``: [[asset, ts], ...]) until a report of
    another asset within ``lead_ms`` of it confirms the partition moved on; the watermark then
    moves to the earlier of the two. So one asset -- a wrong device clock, a hostile sender --
    never moves the clock more than ``lead_ms``, and a late or backdated report never moves it
    back. ``sweep_at`` ends the
    pass: it moves the clock to the newest confirmed time and returns the boundary to sweep at.
    """

    def __init__(self, clock: dict[str, Any], interval_ms: int = SWEEP_INTERVAL_MS,
                 lead_ms: int = CLOCK_LEAD_MS) -> None:
        self.clock = clock
        self.interval_ms = interval_ms
        self.lead_ms = lead_ms
        self.top: int | None = None  # the newest confirmed time of this pass

    def _limit(self) -> int | None:
        swept = self.clock.get("swept")
        marks = [m for m in (swept, self.top) if m is not None]
        if not marks:
            return None
        newest = max(marks)
        return newest - newest % self.interval_ms + self.interval_ms + self.lead_ms

    def _confirm(self, ts: int) -> None:
        self.top = ts if self.top is None else max(self.top, ts)

    def report(self, asset: str | None, ts: int) -> bool:
        """Note a report of ``asset`` at ``ts`` (asset None: a time the caller vouches for, such
        as the end of a recorded stream); True when ``ts`` is confirmed."""
        limit = self._limit()
        if asset is None or (limit is not None and ts <= limit):
            self._confirm(ts)
            return True
        # Held times the clock has since passed are void. Each asset holds its latest report,
        # not its furthest: one record far ahead (a wrong clock, a hostile sender) would
        # otherwise stand for the asset from then on, and two assets reporting hourly would
        # never agree again. A redelivered older report only makes the asset agree later.
        held = {str(a): int(t) for a, t in self.clock.get("ahead", ())
                if limit is None or int(t) > limit}
        held[asset] = ts
        partners = [t for a, t in held.items() if a != asset and abs(t - ts) <= self.lead_ms]
        confirmed = False
        if partners:
            # Two assets agree: the partition's time really moved on (a resumed fleet, a gap
            # in the stream), as far as the earlier of the two.
            self._confirm(min(min(partners), ts))
            limit = self._limit()
            assert limit is not None
            held = {a: t for a, t in held.items() if t > limit}
            if ts <= limit:
                self._confirm(ts)
                confirmed = True
        while len(held) > HELD_MAX:
            # The furthest ahead goes first: the likeliest to be wrong, the last needed.
            del held[max(held, key=lambda a: (held[a], a))]
        if held:
            self.clock["ahead"] = sorted([a, t] for a, t in held.items())
        else:
            self.clock.pop("ahead", None)
        return confirmed

    def sweep_at(self) -> Span | None:
        return None if self.top is None else sweep_due(self.clock, self.top, self.interval_ms)
