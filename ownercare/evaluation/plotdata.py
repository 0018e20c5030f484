"""What ``ownercare eval --plot`` draws of a faulty asset: the quantity its fault's detector
decided on, in that detector's units, read from the detector's own state while the scenario
runs (never recomputed here, so the plot cannot disagree with the detector).

Per fault type (the probe classes below):

* ``weak_12v``, ``alternator``, ``cell_drift``, ``slow_leak``, ``coolant_pump``: the trend
  detectors' samples (their state's ``hist``): resting voltage at 25 °C, the charging voltage
  at 25 °C while the engine runs (one sample per drive), the resting cell spread, each wheel's
  deficit against the other three at 20 °C, the coolant's rise above the pack per kW of road
  load (one sample per 12 h window: its lowest drive), with the detector's alert and failure
  levels;
* ``silent``, ``charger_silent``: hours since the last report the detector stored, against
  the threshold it learned from the asset's reporting gaps;
* ``dtc``: each trouble code the car reported, on a row of its own, held while the detector
  counts it active;
* ``charger_derating``: the sustained / early power of every session the detector judged;
* ``charger_fault``, ``inlet_fault``: the share of abnormal sessions in the asset's window of
  the charging attribution, each session marked.

Only faulty assets are followed, so memory stays small on large fleets.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from diagnostics.attribution import car_of, charger_key, vehicle_key
from diagnostics.offline import OfflineDiagnostics
from diagnostics.tyre_leak import WHEEL_NAMES
from ownercare.evaluation.scoring import asset_key
from simulators.faults import FAULTS
from vocab.eventtime import DAY_MS, HOUR_MS

Asset = tuple[str, str]  # (asset kind, asset id)
Point = tuple[int, float]  # (event time ms, value)


@dataclass
class Line:
    """A series of the plot. ``style``: ``samples`` are the detector's samples (markers,
    joined by a line that breaks at gaps); ``steps`` a value held until the next one;
    ``curve`` drawn as it is; ``limit`` a threshold that moves with the samples."""

    label: str
    points: list[Point] = field(default_factory=list)
    style: Literal["samples", "steps", "curve", "limit"] = "samples"
    # After the last point, until the end of the run: the value held, or growing one hour
    # per hour (a silence that lasts).
    to_end: Literal["hold", "ramp"] | None = None
    failure: bool = False  # a limit that is the failure (not where the detector alerts)


@dataclass(frozen=True)
class Level:
    """A fixed threshold of the detector: where it alerts, or the failure it predicts."""

    value: float
    label: str
    failure: bool = False


@dataclass(frozen=True)
class Mark:
    """One discrete event (a session, a reported code) at (``ts``, ``y``)."""

    ts: int
    y: float
    text: str = ""
    bad: bool = True  # an abnormal session or an active code; False: a normal one / cleared


@dataclass
class Trace:
    """Everything one faulty asset's plot shows."""

    fault: str
    alert_type: str
    detector: str = ""  # the detector's name ("" until its state was first seen)
    quantity: str = ""  # the y axis: what, and its unit
    rule: str = ""  # how the detector decides, in a line
    lines: list[Line] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    mark_labels: tuple[str, str] = ("", "")  # legend of the bad and the other marks
    categories: list[str] = field(default_factory=list)  # a categorical y axis (codes)
    zoom_on_onset: bool = False  # what matters are the hours around the onset (silence)
    # The evidence keys of a trend detector's fitted level and slope per day (at its last
    # sample, ``last_sample_ts``), and the slope's sign (a leak rate is a loss).
    trend_keys: tuple[str, str, float] | None = None
    # Upserts of the asset's alerts of its fault's type, in emission order.
    upserts: list[Mapping[str, Any]] = field(default_factory=list)

    def predicted_failure(self, first_seen: int | None) -> int | None:
        """The first prediction the alert first seen at ``first_seen`` carried."""
        for upsert in self.upserts:
            if upsert["first_seen"] == first_seen and upsert["predicted_failure_ts"]:
                return int(upsert["predicted_failure_ts"])
        return None

    def trend(self, first_seen: int | None) -> Line | None:
        """The trend the detector fitted when it opened the alert first seen at
        ``first_seen``: over the samples it used, on to the failure it predicted then."""
        opening = next((u for u in self.upserts if u["first_seen"] == first_seen), None)
        if self.trend_keys is None or opening is None:
            return None
        level_key, slope_key, sign = self.trend_keys
        evidence = opening["evidence"]
        level, slope, now = (evidence.get(k) for k in (level_key, slope_key, "last_sample_ts"))
        if level is None or slope is None or now is None:
            return None
        span = float(evidence.get("window_days") or 0.0)
        end = opening["predicted_failure_ts"] or now

        def at(ts: int) -> Point:
            return ts, float(level) + sign * float(slope) * (ts - now) / DAY_MS

        which = f" ({evidence['wheel']} wheel)" if evidence.get("wheel") else ""
        return Line(f"the detector's trend at the first alert{which}",
                    [at(int(now - span * DAY_MS)), at(int(end))], style="curve")


class _Probe:
    """Follows one faulty asset's detector state; ``trace()`` is what was seen."""

    def __init__(self, fault: str, asset: Asset) -> None:
        self.fault, self.asset = fault, asset
        self.head = Trace(fault, FAULTS[fault].alert_type)
        self.detector: Any = None  # the detector instance, once its state was first seen

    def after(self, record: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        """``record`` of this asset went through the detectors."""

    def session(self, outcome: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        """A charging session of this asset ended and went through the attribution."""

    def trace(self) -> Trace:
        return self.head

    def _vehicle_state(self, diagnostics: OfflineDiagnostics) -> dict[str, Any] | None:
        state = diagnostics.vehicle_states.get(self.asset[1])
        alert_type = self.head.alert_type
        if state is None or alert_type not in state["det"]:
            return None
        self._describe(diagnostics.vehicles.detectors[alert_type])
        det_state: dict[str, Any] = state["det"][alert_type]
        return det_state

    def _describe(self, detector: Any) -> None:
        if self.detector is None:
            self.detector = detector
            self.head.detector = detector.name
            self.describe(detector)

    def describe(self, detector: Any) -> None:
        """Fill in the axis, the rule and the thresholds from the detector's parameters."""


class _Samples(_Probe):
    """A trend detector's samples (its state's ``hist``), one line per column."""

    def __init__(self, fault: str, asset: Asset) -> None:
        super().__init__(fault, asset)
        self.last: list[Any] | None = None
        self.samples: dict[Any, list[Any]] = {}  # sample key -> sample, oldest first

    def after(self, record: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        state = self._vehicle_state(diagnostics)
        hist = state.get("hist") if state is not None else None
        if not hist or hist[-1] == self.last:
            return
        assert state is not None
        self.last = list(hist[-1])
        self.samples[self.key(state, self.last)] = self.last

    def key(self, state: Mapping[str, Any], sample: list[Any]) -> Any:
        """Which earlier sample a new one replaces (the same key): none by default."""
        return sample[0]

    def trace(self) -> Trace:
        trace = copy.copy(self.head)
        trace.lines = self.lines(list(self.samples.values()))
        return trace

    def lines(self, samples: list[list[Any]]) -> list[Line]:
        raise NotImplementedError


class _Battery12V(_Samples):
    def describe(self, d: Any) -> None:
        self.head.trend_keys = ("fitted_v25", "slope_v_per_day", 1.0)
        self.head.quantity = "resting 12 V voltage at 25 °C (V)"
        self.head.rule = (f"alert: the trend reaches {d.failure_v25:g} V within "
                          f"{d.horizon_days:g} days, or a sample below {d.warn_v25:g} V")
        self.head.levels = [Level(d.warn_v25, f"warn_v25 = {d.warn_v25:g} V: alert below"),
                            Level(d.failure_v25, f"failure_v25 = {d.failure_v25:g} V: "
                                  "cannot start", failure=True)]

    def lines(self, samples: list[list[Any]]) -> list[Line]:
        return [Line("V25, one sample per parking period",
                     [(int(s[0]), float(s[1])) for s in samples])]


class _ChargingVoltage(_Samples):
    def describe(self, d: Any) -> None:
        self.head.trend_keys = ("fitted_v25", "slope_v_per_day", 1.0)
        self.head.quantity = "12 V charging voltage at 25 °C, engine running (V)"
        self.head.rule = (f"alert: the trend reaches {d.failure_v:g} V within "
                          f"{d.horizon_days:g} days, or the last {d.level_samples} drives "
                          f"below {d.low_v:g} V")
        self.head.levels = [Level(d.low_v, f"low_v = {d.low_v:g} V: alert below"),
                            Level(d.failure_v, f"failure_v = {d.failure_v:g} V: a drive "
                                  "no longer recharges", failure=True)]

    def lines(self, samples: list[list[Any]]) -> list[Line]:
        return [Line("charging V25, one sample per drive",
                     [(int(s[0]), float(s[1])) for s in samples])]


class _CellSpread(_Samples):
    def describe(self, d: Any) -> None:
        self.head.trend_keys = ("fitted_spread_mv", "slope_mv_per_day", 1.0)
        self.head.quantity = "resting cell spread, cold-compensated (mV)"
        self.head.rule = (f"alert: the trend reaches {d.bms_limit_mv:g} mV within "
                          f"{d.horizon_days:g} days, or above {d.warn_mv:g} mV, "
                          "with the same cell the minimum")
        self.head.levels = [Level(d.warn_mv, f"warn_mv = {d.warn_mv:g} mV: alert above"),
                            Level(d.bms_limit_mv, f"bms_limit_mv = {d.bms_limit_mv:g} mV: "
                                  "BMS derates", failure=True)]

    def lines(self, samples: list[list[Any]]) -> list[Line]:
        return [Line("max - min cell voltage at rest, one sample per rest",
                     [(int(s[0]), float(s[1])) for s in samples])]


class _TyreDeficit(_Samples):
    def describe(self, d: Any) -> None:
        self.head.trend_keys = ("deficit_kpa", "leak_rate_kpa_per_day", -1.0)
        self.head.quantity = "pressure below the other three wheels, at 20 °C (kPa)"
        self.head.rule = (f"alert: a wheel's trend reaches the car's warning within "
                          f"{d.horizon_days:g} days, or it is {d.low_deficit_kpa:g} kPa "
                          "below the others")
        self.head.levels = [Level(-d.low_deficit_kpa, f"-low_deficit_kpa = "
                                  f"{-d.low_deficit_kpa:g} kPa: alert below")]

    def lines(self, samples: list[list[Any]]) -> list[Line]:
        d = self.detector
        lines = [Line(f"{name} wheel", [(int(s[0]), float(s[1 + i])) for s in samples])
                 for i, name in enumerate(WHEEL_NAMES)]
        # The car's own warning (the failure), as a deficit: it moves with the reference
        # pressure (the placard estimated as the healthy wheels' level, unless given).
        warning = [(int(s[0]), float(d.warning_fraction * (d.placard_kpa or s[5]) - s[5]))
                   for s in samples]
        if warning:
            lines.append(Line(f"the car's TPMS warning ({d.warning_fraction:.0%} of the "
                              "placard): failure", warning, style="limit", failure=True))
        return lines


class _CoolantRise(_Samples):
    def describe(self, d: Any) -> None:
        self.head.trend_keys = ("c_per_kw", "c_per_kw_growth_per_day", 1.0)
        self.head.quantity = "coolant rise above the pack per kW of road load (°C/kW)"
        self.head.rule = (f"alert: the trend reaches b_limit within {d.horizon_days:g} days "
                          f"(urgently within {d.critical_days:g}), or at it")
        self.head.levels = [Level(d.b_limit, f"b_limit = {d.b_limit:.2f} °C/kW: "
                                  f"{d.limit_c:g} °C at {d.ref_load_kw:g} kW on a "
                                  f"{d.ref_ambient_c:g} °C day (derate)", failure=True)]

    def key(self, state: Mapping[str, Any], sample: list[Any]) -> Any:
        # A window's sample is its lowest drive so far: a lower drive replaces it.
        return state["win"]

    def lines(self, samples: list[list[Any]]) -> list[Line]:
        return [Line("b, one sample per 12 h window (its lowest drive)",
                     [(int(s[0]), float(s[1])) for s in samples])]


class _Silence(_Probe):
    """Hours since the report time the detector stored, against its learned threshold."""

    def __init__(self, fault: str, asset: Asset) -> None:
        super().__init__(fault, asset)
        self.last: int | None = None
        self.since = Line("time since the last report", style="curve", to_end="ramp")
        self.threshold = Line("silence threshold (learned from the gaps)", style="limit",
                              to_end="hold")
        self.head.zoom_on_onset = True

    def after(self, record: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        if self.asset[0] == "vehicle":
            state = self._vehicle_state(diagnostics)
        else:
            held = diagnostics.silence_states.get(self.asset[1])
            state = None if held is None else held["det"]
            self._describe(diagnostics.charger_silence.detector)
        if state is None or state["last"] is None or state["last"] == self.last:
            return
        last = int(state["last"])
        if self.last is not None:
            self.since.points.append((last, (last - self.last) / HOUR_MS))
        self.since.points.append((last, 0.0))
        # The threshold the sweeps hold the silence after this report against.
        self.threshold.points.append((last, self.detector.threshold_ms(state, last) / HOUR_MS))
        self.last = last

    def describe(self, d: Any) -> None:
        self.head.quantity = "time since the last report (h)"
        self.head.rule = (f"alert at a sweep when silent longer than the threshold: "
                          f"{d.factor:g} x the longest normal gap, {d.floor_s / 3600:g}-"
                          f"{d.ceiling_s / 3600:g} h")

    def trace(self) -> Trace:
        trace = copy.copy(self.head)
        trace.lines = [self.since, self.threshold]
        return trace


class _Codes(_Probe):
    """Every trouble code the car reported, one row each, held while the detector has it
    active."""

    def __init__(self, fault: str, asset: Asset) -> None:
        super().__init__(fault, asset)
        self.rows: dict[str, Line] = {}
        self.head.mark_labels = ("code reported active", "code reported cleared")

    def after(self, record: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        data = record["data"]
        if record["kind"] != "vehicle_event" or data.get("type") != "dtc":
            return
        state = self._vehicle_state(diagnostics)
        code = data.get("code")
        if state is None or not isinstance(code, str):
            return
        row = float(len(self.rows))
        if code not in self.rows:
            self.rows[code] = Line(code, style="steps", to_end="hold")
            self.head.categories.append(f"{code} ({self.detector.severity(code)})")
        else:
            row = float(list(self.rows).index(code))
        reported = str(data.get("state", "active"))
        ts = int(record["ts"])
        self.head.marks.append(Mark(ts, row, f"{code} {reported}", reported != "cleared"))
        span = self.rows[code].points
        held = bool(span) and not math.isnan(span[-1][1])
        if code in state["active"] and not held:
            span.append((int(state["active"][code]), row))
        elif code not in state["active"] and held:
            span += [(ts, row), (ts, math.nan)]

    def describe(self, d: Any) -> None:
        self.head.quantity = "trouble code (severity by the detector)"
        self.head.rule = "alert at once on an active code; resolved when none is active"

    def trace(self) -> Trace:
        trace = copy.copy(self.head)
        # One legend entry stands for every row.
        trace.lines = [Line("code active for the detector" if i == 0 else "", line.points,
                            "steps", "hold") for i, line in enumerate(self.rows.values())]
        return trace


class _Derating(_Probe):
    """The sustained / early power of each session the charger derating detector judged."""

    def __init__(self, fault: str, asset: Asset) -> None:
        super().__init__(fault, asset)
        self.open: dict[str, dict[str, Any]] = {}  # the sessions it measured, as last seen
        self.ratios = Line("sustained / early power, one judged session each")

    def after(self, record: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        state = diagnostics.charger_states.get(self.asset[1])
        alert_type = self.head.alert_type
        if state is None or alert_type not in state["det"]:
            return
        self._describe(diagnostics.chargers.detectors[alert_type])
        now = state["det"][alert_type]["open"]
        for connector, before in self.open.items():
            current = now.get(connector)
            if current is None or current["first"] != before["first"]:
                # Judged with this record (its end, or a new transaction on the connector).
                ratio = self.detector.session_ratio(before)
                if ratio is not None:
                    self.ratios.points.append((int(record["ts"]), ratio))
        self.open = copy.deepcopy(now)

    def describe(self, d: Any) -> None:
        self.head.quantity = "sustained power of a session (fraction of its early power)"
        self.head.rule = (f"alert: {d.min_derated} of the last {d.window} sessions below "
                          f"derated_ratio")
        self.head.levels = [
            Level(d.derated_ratio, f"derated_ratio = {d.derated_ratio:g}: derated below"),
            Level(d.useful_ratio, f"useful_ratio = {d.useful_ratio:g}: no longer useful",
                  failure=True)]

    def trace(self) -> Trace:
        trace = copy.copy(self.head)
        trace.lines = [self.ratios]
        return trace


class _Sessions(_Probe):
    """The abnormal share of the asset's window in the charging attribution, per session."""

    def __init__(self, fault: str, asset: Asset) -> None:
        super().__init__(fault, asset)
        self.share = Line("abnormal share of the window", style="steps", to_end="hold")
        self.failed_at: set[str] = set()
        self.head.mark_labels = ("session ended abnormally", "session ended normally")

    def session(self, outcome: Mapping[str, Any], diagnostics: OfflineDiagnostics) -> None:
        kind, asset_id = self.asset
        state = diagnostics.attribution_states.get(
            charger_key(asset_id) if kind == "charger" else vehicle_key(asset_id))
        if state is None or not state["recent"]:
            return
        self._describe(diagnostics.attribution)
        recent = state["recent"]
        share = 100.0 * sum(e[2] for e in recent) / len(recent)
        ts, abnormal = int(outcome["ts"]), bool(outcome["abnormal"])
        self.share.points.append((ts, share))
        # Where a car failed first at each charger: failing at several is the inlet's pattern.
        charger = str(outcome["charger_id"])
        text = ""
        if abnormal and kind == "vehicle" and charger not in self.failed_at:
            self.failed_at.add(charger)
            text = f"first failure at {charger}"
        self.head.marks.append(Mark(ts, share, text, abnormal))

    def describe(self, d: Any) -> None:
        whose = "the charger's" if self.asset[0] == "charger" else "the car's"
        self.head.quantity = f"abnormal sessions in {whose} last {d.window} (%)"
        if self.asset[0] == "charger":
            self.head.rule = (f"alert: abnormal ends with {d.min_assets}+ cars that are not "
                              f"faulty themselves, and {d.min_share:.0%}+ of the window")
            self.head.levels = [Level(100 * d.min_share, f"min_share = {d.min_share:.0%}: "
                                      "alert from (with the cars)")]
        else:
            self.head.rule = (f"alert: abnormal ends at {d.min_assets}+ chargers that serve "
                              "other cars fine (or repeated visits, or slow starts)")
        self.head.levels = [*self.head.levels,
                            Level(100.0, "every session fails: out of service", failure=True)]

    def trace(self) -> Trace:
        trace = copy.copy(self.head)
        trace.lines = [self.share]
        return trace


PROBES: dict[str, type[_Probe]] = {
    "weak_12v": _Battery12V,
    "alternator": _ChargingVoltage,
    "cell_drift": _CellSpread,
    "slow_leak": _TyreDeficit,
    "coolant_pump": _CoolantRise,
    "silent": _Silence,
    "charger_silent": _Silence,
    "dtc": _Codes,
    "charger_derating": _Derating,
    "charger_fault": _Sessions,
    "inlet_fault": _Sessions,
}


def _asset_of(record: Mapping[str, Any]) -> Asset:
    return ("vehicle" if record["kind"].startswith("vehicle_") else "charger", record["id"])


class SeriesRecorder:
    """Follows every faulty asset's detector while the scenario runs (``observe`` is the
    :data:`~ownercare.evaluation.run.Observer` of ``run_scenario``)."""

    def __init__(self, truth: list[dict[str, Any]]) -> None:
        self.probes: dict[Asset, _Probe] = {}
        for entry in truth:
            probe = PROBES.get(entry["fault"], _Probe)
            asset = asset_key(entry)
            self.probes[asset] = probe(entry["fault"], asset)
        self.by_session = {a: p for a, p in self.probes.items() if isinstance(p, _Sessions)}
        self.outcomes_seen = 0

    def observe(self, record: Mapping[str, Any], diagnostics: OfflineDiagnostics,
                alerts: list[dict[str, Any]]) -> None:
        probe = self.probes.get(_asset_of(record))
        if probe is not None:
            probe.after(record, diagnostics)
        outcomes = diagnostics.session_outcomes
        if self.by_session and len(outcomes) > self.outcomes_seen:
            for outcome in outcomes[self.outcomes_seen:]:
                for asset in (("charger", outcome["charger_id"]), ("vehicle", car_of(outcome))):
                    if asset in self.by_session:
                        self.by_session[asset].session(outcome, diagnostics)
        self.outcomes_seen = len(outcomes)
        for alert in alerts:
            probe = self.probes.get((alert["asset_kind"], alert["asset_id"]))
            if probe is not None and alert["type"] == probe.head.alert_type:
                probe.head.upserts.append(alert)

    def trace(self, asset: Asset) -> Trace | None:
        probe = self.probes.get(asset)
        return None if probe is None else probe.trace()
