"""``ownercare eval --plot``: every fault type's plot shows what its detector decided on.

One small simulated fleet with every fault type runs through the detectors once (the module
fixture); the plots are drawn from what the recorder saw and checked against the detectors'
own states and alerts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon, Rectangle

from diagnostics.offline import OfflineDiagnostics
from ownercare.evaluation.plot import break_gaps, figure, plot_detections
from ownercare.evaluation.plotdata import Line, SeriesRecorder, Trace
from ownercare.evaluation.run import run_scenario
from ownercare.evaluation.scenario import Scenario
from ownercare.evaluation.scoring import score_run
from simulators.faults import FAULTS
from vocab.eventtime import DAY_MS, HOUR_MS

EVERY_FAULT = {name: 1 for name in FAULTS}
UNIT = re.compile(r"\(.+\)$")  # an axis label ends with its unit (or kind) in brackets


@dataclass
class Evaluated:
    report: dict[str, Any]
    recorder: SeriesRecorder
    diagnostics: OfflineDiagnostics


@pytest.fixture(scope="module")
def evaluated() -> Evaluated:
    scenario = Scenario(1, 20, 6, 14, EVERY_FAULT)
    recorder = SeriesRecorder(scenario.fleet().truth())
    seen: list[OfflineDiagnostics] = []

    def observe(record: Mapping[str, Any], diagnostics: OfflineDiagnostics,
                alerts: list[dict[str, Any]]) -> None:
        if not seen:
            seen.append(diagnostics)
        recorder.observe(record, diagnostics, alerts)

    report = score_run(run_scenario(scenario, processes=1, observe=observe))
    return Evaluated(report, recorder, seen[0])


def row(evaluated: Evaluated, fault: str) -> dict[str, Any]:
    rows = [d for d in evaluated.report["detections"] if d["fault"] == fault]
    assert len(rows) == 1
    return rows[0]


def draw(evaluated: Evaluated, fault: str) -> tuple[Axes, Trace, dict[str, Any]]:
    d = row(evaluated, fault)
    trace = evaluated.recorder.trace((d["asset_kind"], d["asset_id"]))
    assert trace is not None
    fig = figure(d, trace, evaluated.report["start_ms"], evaluated.report["end_ms"])
    return fig.axes[0], trace, d


def line(ax: Axes, label: str) -> Line2D:
    found = [a for a in ax.get_lines() if a.get_label() == label]
    assert len(found) == 1, [a.get_label() for a in ax.get_lines()]
    return found[0]


def finite(values: Any) -> list[float]:
    return [float(v) for v in values if math.isfinite(float(v))]


def test_every_fault_type_gets_a_plot_with_labelled_axes(evaluated: Evaluated,
                                                         tmp_path: Path) -> None:
    written = plot_detections(evaluated.report, evaluated.recorder, tmp_path)
    assert sorted(p.name.split("-")[0] for p in written) == sorted(FAULTS)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    for fault in FAULTS:
        ax, trace, d = draw(evaluated, fault)
        assert UNIT.search(ax.get_xlabel()), ax.get_xlabel()
        assert UNIT.search(ax.get_ylabel()), (fault, ax.get_ylabel())
        assert ax.get_ylabel() == trace.quantity
        title = ax.get_title(loc="left")
        assert fault in title
        assert d["asset_id"] in title
        assert trace.detector
        assert f"detector {trace.detector} " in title
        # The detector's quantity is drawn: some data, not just markers of time.
        data = [v for artist in ax.get_lines() if artist.get_label() in
                {x.label for x in trace.lines if x.label}
                for v in finite(artist.get_ydata())]
        assert data or trace.marks, fault


def test_every_legend_entry_has_something_drawn_inside_the_axes(evaluated: Evaluated) -> None:
    for fault in FAULTS:
        ax, _trace, _d = draw(evaluated, fault)
        left, right = ax.get_xlim()
        legend = ax.get_legend()
        assert legend is not None
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            label = text.get_text()
            artist = next(a for a in [*ax.get_lines(), *ax.collections, *ax.patches]
                          if a.get_label() == label)
            if isinstance(artist, Line2D):
                xs = [x for x, y in zip(artist.get_xdata(), artist.get_ydata(), strict=True)
                      if math.isfinite(float(y))]
                assert any(left <= float(x) <= right for x in xs), (fault, label)
            elif isinstance(artist, PathCollection):
                assert len(artist.get_offsets()) > 0, (fault, label)
            else:
                assert isinstance(artist, Polygon | Rectangle), (fault, label)
            assert handle is not None


def test_the_silent_plot_shows_the_silence_against_the_learned_threshold(
        evaluated: Evaluated) -> None:
    for fault in ("silent", "charger_silent"):
        ax, trace, d = draw(evaluated, fault)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "time since the last report" in labels
        assert "silence threshold (learned from the gaps)" in labels
        since = line(ax, "time since the last report")
        threshold = line(ax, "silence threshold (learned from the gaps)")
        assert max(finite(since.get_ydata())) > 0
        # Zoomed on the onset, the silence and its threshold both inside the y axis.
        low, high = ax.get_ylim()
        assert low == 0
        assert max(finite(threshold.get_ydata())) < high
        if d["first_alert_ts"] is None:
            continue
        # The detector alerted once the silence passed the threshold it held it against.
        alert = (d["first_alert_ts"] - evaluated.report["start_ms"]) / DAY_MS
        ramp_x, ramp_y = (list(map(float, a)) for a in since.get_data())
        held = threshold.get_ydata()[-1]
        after_last = ramp_x[-2]  # the last report before the silence
        assert after_last < alert
        assert ramp_y[-2] == 0.0
        assert (alert - after_last) * 24 > float(held)


def test_lines_of_samples_break_at_a_gap_in_the_data() -> None:
    t0 = 1_767_571_200_000
    before = [(t0 + i * 12 * HOUR_MS, 12.6 - 0.01 * i) for i in range(10)]
    parked = before[-1][0] + 6 * DAY_MS  # the car stood six days
    after = [(parked + i * 12 * HOUR_MS, 12.4 - 0.01 * i) for i in range(10)]
    trace = Trace("weak_12v", "weak_12v_battery", "battery12v", "resting voltage (V)",
                  lines=[Line("V25", before + after)])
    d = {"fault": "weak_12v", "asset_kind": "vehicle", "asset_id": "CAR", "alert_type":
         "weak_12v_battery", "onset_ts": t0, "failure_ts": None, "first_alert_ts": None,
         "lead_time_h": None}
    ax = figure(d, trace, t0, t0 + 20 * DAY_MS).axes[0]
    ys = list(line(ax, "V25").get_ydata())
    xs = list(line(ax, "V25").get_xdata())
    gaps = [i for i, y in enumerate(ys) if math.isnan(y)]
    assert gaps == [10]  # exactly one break, between the last sample before and the first after
    assert xs[9] < xs[10] < xs[11]
    assert (xs[11] - xs[9]) == pytest.approx(6.0)
    assert finite(ys) == [v for _, v in before + after]


@given(st.lists(st.integers(0, 60 * DAY_MS), min_size=0, max_size=40, unique=True))
def test_break_gaps_keeps_every_point_and_joins_no_long_gap(stamps: list[int]) -> None:
    points = [(t, float(i)) for i, t in enumerate(sorted(stamps))]
    times, values = break_gaps(points)
    kept = [(t, v) for t, v in zip(times, values, strict=True) if not math.isnan(v)]
    assert kept == [(float(t), v) for t, v in points]
    if len(points) >= 3:
        intervals = sorted(b[0] - a[0] for a, b in zip(points, points[1:], strict=False))
        median = (intervals[(len(intervals) - 1) // 2] + intervals[len(intervals) // 2]) / 2
        limit = max(DAY_MS, 3 * median)
        joined = zip(zip(times, values, strict=True), zip(times[1:], values[1:], strict=True),
                     strict=False)
        for (t1, v1), (t2, v2) in joined:
            if not math.isnan(v1) and not math.isnan(v2):
                assert t2 - t1 <= limit


def test_the_thermal_plot_shows_the_detectors_rise_per_kw(evaluated: Evaluated) -> None:
    ax, trace, d = draw(evaluated, "coolant_pump")
    assert ax.get_ylabel() == "coolant rise above the pack per kW of road load (°C/kW)"
    samples = line(ax, trace.lines[0].label)
    plotted = finite(samples.get_ydata())
    state = evaluated.diagnostics.vehicle_states[d["asset_id"]]["det"]["thermal"]
    detector = evaluated.diagnostics.vehicles.detectors["thermal"]
    kept = [float(h[1]) for h in state["hist"]]  # the detector's window samples, b in °C/kW
    assert len(kept) >= 5
    assert plotted[-len(kept):] == kept
    assert [line(ax, level.label).get_ydata()[0] for level in trace.levels] == [
        detector.b_limit]
    # Where the detector's alert quoted its latest sample, the plot has that value (unless
    # a lower drive of the same window replaced it later).
    for upsert in trace.upserts:
        ev = upsert["evidence"]
        if ev.get("last_sample_ts") is not None and ev["last_sample_ts"] >= state["hist"][0][0]:
            x = (ev["last_sample_ts"] - evaluated.report["start_ms"]) / DAY_MS
            at = [y for xx, y in zip(samples.get_xdata(), samples.get_ydata(), strict=True)
                  if xx == pytest.approx(x)]
            assert at == [ev["latest_c_per_kw"]] or not at


def test_the_derating_plot_has_every_ratio_the_detector_judged(evaluated: Evaluated) -> None:
    ax, trace, d = draw(evaluated, "charger_derating")
    points = trace.lines[0].points
    state = evaluated.diagnostics.charger_states[d["asset_id"]]["det"]["charger_derating"]
    assert state["history"], "the derating charger had derated sessions"
    for ts, ratio in state["history"]:  # the detector's own [ts, ratio] of derated sessions
        assert any(t == ts and round(r, 4) == ratio for t, r in points)
    assert all(0 < r <= 1.5 for _, r in points)


def test_trouble_codes_are_events_on_a_row_of_their_own(evaluated: Evaluated) -> None:
    ax, trace, d = draw(evaluated, "dtc")
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks
    assert ticks == trace.categories
    assert all(re.fullmatch(r"[PCBU][0-9A-F]{4}(-[0-9A-F]{2})? \((info|warning|critical)\)",
                            t) for t in ticks)
    low, high = ax.get_ylim()
    assert (low, high) == (-0.7, len(ticks) - 0.3)
    assert trace.marks
    assert all(m.text.split()[0] in " ".join(ticks) for m in trace.marks)
    state = evaluated.diagnostics.vehicle_states[d["asset_id"]]["det"]["dtc"]
    assert set(state["active"]) <= {t.split()[0] for t in ticks}


def test_a_figure_without_recorded_data_still_says_what_it_is() -> None:
    d = {"fault": "silent", "asset_kind": "vehicle", "asset_id": "CAR",
         "alert_type": "vehicle_silent", "onset_ts": 10 * DAY_MS, "failure_ts": 10 * DAY_MS,
         "first_alert_ts": None, "lead_time_h": None}
    fig = figure(d, Trace("silent", "vehicle_silent"), 0, 20 * DAY_MS)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert UNIT.search(ax.get_ylabel())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["onset = failure (truth), day 10.0"]
