"""``ownercare eval --plot DIR``: what a detection looked like, one PNG per sampled asset.

For up to ``DETECTED_PER_FAULT`` detected and ``MISSED_PER_FAULT`` missed assets of each fault
type: the quantity the fault's detector decided on, in its units, with its thresholds
(:mod:`.plotdata` records them from the detector's own state), and along the time axis the
onset (ground truth), the first alert, the failure the alert predicted (its first
prediction) and the true failure. Titled with the asset, the fault, the detector and its rule.

Lines of samples break where the data has a gap (a parked car, a silent asset): more than
``GAP_FACTOR`` times the series' median interval between two samples, so no line claims
values the detector never saw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ownercare.evaluation.plotdata import Line, Point, SeriesRecorder, Trace
from vocab.eventtime import DAY_MS, HOUR_MS

__all__ = ["SeriesRecorder", "break_gaps", "figure", "plot_detections"]

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DETECTED_PER_FAULT = 3
MISSED_PER_FAULT = 1
GAP_FACTOR = 3.0
MIN_GAP_MS = DAY_MS  # a night without charging sessions is not a gap in the data
OVERHANG = 0.5  # how far past the end of the run the time axis may reach (share of the run)
ZOOM_DAYS = (2.0, 1.0)  # the time axis of a silence: days before its onset, after its alert
ALERT, FAILURE, PREDICTED = "tab:red", "black", "tab:purple"


def break_gaps(points: Sequence[Point], factor: float = GAP_FACTOR,
               min_gap_ms: float = MIN_GAP_MS) -> tuple[list[float], list[float]]:
    """(times, values) of ``points`` with a NaN value between two points more than ``factor``
    times the median interval (and ``min_gap_ms``) apart: a line is not drawn across a gap
    in the data."""
    times, values = [float(t) for t, _ in points], [v for _, v in points]
    if len(points) < 3:
        return times, values
    limit = max(min_gap_ms, factor * statistics.median(
        b - a for a, b in zip(times, times[1:], strict=False)))
    out_t, out_v = times[:1], values[:1]
    for prev, t, v in zip(times, times[1:], values[1:], strict=False):
        if t - prev > limit:
            out_t.append((prev + t) / 2)
            out_v.append(math.nan)
        out_t.append(t)
        out_v.append(v)
    return out_t, out_v


def _extended(line: Line, end_ms: int) -> list[Point]:
    points = list(line.points)
    if not points or points[-1][0] >= end_ms or math.isnan(points[-1][1]):
        return points
    last_ts, last = points[-1]
    if line.to_end == "hold":
        points.append((end_ms, last))
    elif line.to_end == "ramp":
        points.append((end_ms, last + (end_ms - last_ts) / HOUR_MS))
    return points


def _draw_lines(ax: Axes, trace: Trace, days: Callable[[float], float], end_ms: int) -> None:
    for line in trace.lines:
        points = _extended(line, end_ms)
        if not points:
            continue  # nothing to draw: no legend entry either
        label = line.label or "_nolegend_"
        if line.style == "samples":
            times, values = break_gaps(points)
            ax.plot([days(t) for t in times], values, "-o", markersize=3.5, linewidth=1,
                    label=label)
            continue
        xs, ys = [days(t) for t, _ in points], [v for _, v in points]
        if line.style == "steps":
            ax.step(xs, ys, where="post", linewidth=2.5, alpha=0.8, label=label)
        elif line.style == "limit":
            ax.step(xs, ys, where="post", linewidth=1.2, label=label,
                    color=FAILURE if line.failure else ALERT,
                    linestyle=":" if line.failure else "--")
        else:
            ax.plot(xs, ys, linewidth=1, label=label)
    for level in trace.levels:
        ax.axhline(level.value, color=FAILURE if level.failure else ALERT, linewidth=1.2,
                   linestyle=":" if level.failure else "--", label=level.label)
    bad_label, good_label = trace.mark_labels
    for bad, label in ((True, bad_label), (False, good_label)):
        marks = [m for m in trace.marks if m.bad is bad]
        if not marks:
            continue
        ax.scatter([days(m.ts) for m in marks], [m.y for m in marks], zorder=3,
                   label=label or "_nolegend_", s=40 if bad else 22,
                   marker="X" if bad else "o", color=ALERT if bad else "none",
                   edgecolors=ALERT if bad else "grey")
        for m in marks:
            if m.text:
                ax.annotate(m.text, (days(m.ts), m.y), xytext=(4, 4),
                            textcoords="offset points", fontsize=7)
    if trace.categories:
        ax.set_yticks(range(len(trace.categories)), trace.categories)
        ax.set_ylim(-0.7, len(trace.categories) - 0.3)


def _times(d: Mapping[str, Any], trace: Trace) -> list[tuple[int, str, str, str]]:
    """(time, label, colour, line style) of what happened to the asset."""
    onset, failure, alert = d["onset_ts"], d["failure_ts"], d["first_alert_ts"]
    times: list[tuple[int, str, str, str]] = []
    if onset is not None:
        same = failure == onset
        times.append((onset, "onset = failure (truth)" if same else "onset (truth)",
                      "green", "--"))
    if alert is not None:
        times.append((alert, "first alert", ALERT, "-"))
    predicted = trace.predicted_failure(alert)
    if predicted is not None:
        times.append((predicted, "predicted failure (the alert's first estimate)",
                      PREDICTED, "-."))
    if failure is not None and failure != onset:
        times.append((failure, "failure (truth)", FAILURE, ":"))
    return times


def _x_range(d: Mapping[str, Any], trace: Trace, days: Callable[[float], float],
             end: float, times: list[tuple[int, str, str, str]]) -> tuple[float, float]:
    if trace.zoom_on_onset and d["onset_ts"] is not None:
        onset = days(d["onset_ts"])
        seen = days(d["first_alert_ts"]) if d["first_alert_ts"] is not None else end
        return max(0.0, onset - ZOOM_DAYS[0]), min(end, max(onset, seen) + ZOOM_DAYS[1])
    latest = max([end, *(days(t) for t, *_ in times)])
    # A little room past the last line, so it does not hide in the frame.
    return 0.0, min(latest + 0.02 * end, end * (1 + OVERHANG))


def _zoom_y(ax: Axes, trace: Trace, days: Callable[[float], float], end_ms: int,
            left: float, right: float) -> None:
    """Fit the y axis to what is inside the zoomed time axis (autoscaling sees all data)."""
    seen = [v for line in trace.lines for t, v in _extended(line, end_ms)
            if left <= days(t) <= right and math.isfinite(v)]
    seen += [level.value for level in trace.levels]
    for line in trace.lines:  # a silence still growing at the right edge
        if line.to_end == "ramp" and line.points and days(line.points[-1][0]) < right:
            last_ts, last = line.points[-1]
            seen.append(last + (right - days(last_ts)) * 24)
    if seen:
        ax.set_ylim(0, 1.15 * max(seen))


def _draw_times(ax: Axes, times: list[tuple[int, str, str, str]],
                days: Callable[[float], float], left: float, right: float, end: float) -> None:
    beyond = []
    for ts, label, colour, style in times:
        x = days(ts)
        if left <= x <= right:
            # Dashed lines over solid ones: an onset at the time of the alert still shows.
            ax.axvline(x, color=colour, linestyle=style, linewidth=1.5,
                       zorder=2.5 if style != "-" else 2, label=f"{label}, day {x:.1f}")
        else:
            beyond.append(f"{label}: day {x:.1f}")
    for i, text in enumerate(beyond):  # off the time axis: said in words, not in the legend
        ax.annotate(text + " →", (0.99, 0.97 - 0.07 * i), xycoords="axes fraction",
                    ha="right", va="top", fontsize=8)
    if any(days(ts) > end for ts, *_ in times) and right > end:
        ax.axvspan(end, right, color="0.92", zorder=0, label="after the end of the run")
    ax.set_xlim(left, right)


def _draw_trend(ax: Axes, trend: Line | None, days: Callable[[float], float],
                right: float) -> None:
    if trend is None:
        return
    (t0, y0), (t1, y1) = trend.points
    x0, x1 = days(t0), days(t1)
    if x1 > right > x0:  # cut at the edge of the time axis, so it cannot stretch the y axis
        y1 = y0 + (y1 - y0) * (right - x0) / (x1 - x0)
        x1 = right
    ax.plot([x0, x1], [y0, y1], color=PREDICTED, linestyle="--", linewidth=1.2,
            label=trend.label)


def _fit_y(ax: Axes, trace: Trace, days: Callable[[float], float], end_ms: int,
           left: float, right: float) -> None:
    if trace.zoom_on_onset:
        _zoom_y(ax, trace, days, end_ms, left, right)
    elif trace.levels and not trace.categories:  # every threshold inside, with a margin
        low, high = ax.get_ylim()
        values = [level.value for level in trace.levels]
        margin = 0.05 * (max(high, *values) - min(low, *values))
        ax.set_ylim(min(low, min(values) - margin), max(high, max(values) + margin))


def figure(d: Mapping[str, Any], trace: Trace, start_ms: int, end_ms: int) -> Figure:
    """The plot of one detection row of the report (``d``) from its asset's trace."""
    from matplotlib.figure import Figure

    def days(ts: float) -> float:
        return (ts - start_ms) / DAY_MS

    # A few rows of trouble codes need less height than a curve.
    fig = Figure(figsize=(11, min(4.6, 3.0 + 0.5 * len(trace.categories))
                          if trace.categories else 4.6))
    ax = fig.add_subplot()
    end = days(end_ms)
    times = _times(d, trace)
    left, right = _x_range(d, trace, days, end, times)
    _draw_lines(ax, trace, days, end_ms)
    _draw_trend(ax, trace.trend(d["first_alert_ts"]), days, right)
    _draw_times(ax, times, days, left, right, end)
    _fit_y(ax, trace, days, end_ms, left, right)
    ax.set_xlabel("days since the start of the scenario (d)")
    ax.set_ylabel(trace.quantity or "(no detector data recorded)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{d['fault']} on {d['asset_kind']} {d['asset_id']}: {_outcome(d)}\n"
                 f"detector {trace.detector or '-'} (alert {d['alert_type']}); {trace.rule}",
                 loc="left", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)
    return fig


def _outcome(d: Mapping[str, Any]) -> str:
    if d["first_alert_ts"] is None:
        return "missed (no alert" + (" before the failure)" if d["failure_ts"] else ")")
    if d.get("delay_h") is not None:
        return f"alerted {d['delay_h']:.1f} h after the onset"
    if d["lead_time_h"] is not None:
        return f"alerted {d['lead_time_h']:.1f} h before the failure"
    return "alerted"


def _sample(detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    for fault in sorted({d["fault"] for d in detections}):
        rows = [d for d in detections if d["fault"] == fault]
        chosen += [d for d in rows if d["first_alert_ts"] is not None][:DETECTED_PER_FAULT]
        chosen += [d for d in rows if d["first_alert_ts"] is None][:MISSED_PER_FAULT]
    return chosen


def plot_detections(report: Mapping[str, Any], recorder: SeriesRecorder,
                    out_dir: Path) -> list[Path]:
    """Write the sampled assets' PNGs into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for d in _sample(report["detections"]):
        trace = (recorder.trace((d["asset_kind"], d["asset_id"]))
                 or Trace(d["fault"], d["alert_type"]))
        fig = figure(d, trace, report["start_ms"], report["end_ms"])
        path = out_dir / f"{d['fault']}-{d['asset_id']}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        written.append(path)
    return written
