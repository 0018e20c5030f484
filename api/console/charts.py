"""Charts as inline SVG, drawn on the server: no chart library, no script, a few hundred bytes
per chart, readable without JavaScript and printable.

Pure: values in, markup out. Times are event-time epoch ms; the caller picks the range.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape


@dataclass(frozen=True, slots=True)
class Point:
    t_ms: int
    value: float
    low: float | None = None  # the day's min and max, drawn as a band
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at an event time (onset, predicted failure)."""

    t_ms: int
    label: str
    kind: str  # css class: "onset" | "failure" | "now"


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal line at a value (a threshold)."""

    value: float
    label: str


def _text(value: str) -> Markup:
    """Escaped, with control characters as spaces: SVG is XML, which has no place for them."""
    return escape("".join(" " if _unfit(c) else c for c in value))


def _unfit(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs") or c in "\ufffe\uffff"


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%b %d")


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def line_chart(points: Sequence[Point], *, title: str, unit: str = "",
               markers: Sequence[Marker] = (), levels: Sequence[Level] = (),
               t_range: tuple[int, int] | None = None,
               width: int = 560, height: int = 180) -> Markup:
    """A time series with an optional min-max band, vertical markers and threshold lines,
    with a text alternative (``title``/``desc``) for screen readers."""
    pad_l, pad_r, pad_t, pad_b = 48, 12, 12, 22
    ts = [p.t_ms for p in points] + [m.t_ms for m in markers]
    if t_range is None:
        t_range = (min(ts), max(ts)) if ts else (0, 1)
    t0, t1 = t_range
    if t1 <= t0:
        t1 = t0 + 1
    values = _finite([p.value for p in points] + [p.low for p in points]
                     + [p.high for p in points] + [lv.value for lv in levels])
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    margin = (hi - lo) * 0.08
    lo, hi = lo - margin, hi + margin
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(t: int) -> float:
        return pad_l + (min(max(t, t0), t1) - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return pad_t + (hi - v) / (hi - lo) * plot_h

    desc = _describe(points, unit, markers, levels)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{_text(title)}"><title>{_text(title)}</title>'
           f"<desc>{_text(desc)}</desc>"]
    out.append(f'<rect class="frame" x="{pad_l}" y="{pad_t}" width="{plot_w}" '
               f'height="{plot_h}"/>')
    for v in (lo + margin, hi - margin):
        out.append(f'<text class="axis" x="{pad_l - 4}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{escape(_fmt(v))}</text>')
    out.append(f'<text class="axis" x="{pad_l}" y="{height - 6}">{_day(t0)}</text>')
    out.append(f'<text class="axis" x="{width - pad_r}" y="{height - 6}" '
               f'text-anchor="end">{_day(t1)}</text>')
    band = [p for p in points if p.low is not None and p.high is not None]
    if len(band) > 1:
        upper = " ".join(f"{x(p.t_ms):.1f},{y(p.high):.1f}" for p in band)  # type: ignore[arg-type]
        lower = " ".join(f"{x(p.t_ms):.1f},{y(p.low):.1f}"  # type: ignore[arg-type]
                         for p in reversed(band))
        out.append(f'<polygon class="band" points="{upper} {lower}"/>')
    if points:
        line = " ".join(f"{x(p.t_ms):.1f},{y(p.value):.1f}" for p in points)
        out.append(f'<polyline class="series" points="{line}"/>')
        last = points[-1]
        out.append(f'<circle class="dot" cx="{x(last.t_ms):.1f}" cy="{y(last.value):.1f}" '
                   'r="3"/>')
    for level in levels:
        out.append(f'<line class="level" x1="{pad_l}" x2="{pad_l + plot_w}" '
                   f'y1="{y(level.value):.1f}" y2="{y(level.value):.1f}"/>'
                   f'<text class="label level-label" x="{pad_l + plot_w - 4}" '
                   f'y="{y(level.value) - 4:.1f}" text-anchor="end">'
                   f"{_text(level.label)} {escape(_fmt(level.value))}{_text(unit)}</text>")
    for i, marker in enumerate(markers):
        mx = x(marker.t_ms)
        anchor = "end" if mx > pad_l + plot_w * 0.7 else "start"
        dx = -3 if anchor == "end" else 3
        out.append(f'<line class="marker {escape(marker.kind)}" x1="{mx:.1f}" x2="{mx:.1f}" '
                   f'y1="{pad_t}" y2="{pad_t + plot_h}"/>'
                   f'<text class="label" x="{mx + dx:.1f}" y="{pad_t + 12 + 12 * i}" '
                   f'text-anchor="{anchor}">{_text(marker.label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _describe(points: Sequence[Point], unit: str, markers: Sequence[Marker],
              levels: Sequence[Level]) -> str:
    if not points:
        return "no data"
    parts = [f"{len(points)} points from {_day(points[0].t_ms)} to {_day(points[-1].t_ms)}, "
             f"first {_fmt(points[0].value)}{unit}, last {_fmt(points[-1].value)}{unit}"]
    parts += [f"{m.label} {_day(m.t_ms)}" for m in markers]
    parts += [f"{lv.label} {_fmt(lv.value)}{unit}" for lv in levels]
    return "; ".join(parts)


def sparkline(values: Sequence[float], *, label: str, width: int = 120,
              height: int = 28) -> Markup:
    """A small trend line without axes (the health card's daily trends)."""
    finite = _finite(list(values))
    out = [f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{_text(label)}"><title>{_text(label)}</title>']
    if len(finite) >= 2:
        lo, hi = min(finite), max(finite)
        span = hi - lo or 1.0
        step = (width - 4) / (len(finite) - 1)
        line = " ".join(f"{2 + i * step:.1f},{2 + (hi - v) / span * (height - 4):.1f}"
                        for i, v in enumerate(finite))
        out.append(f'<polyline class="series" points="{line}"/>')
    elif finite:
        out.append(f'<circle class="dot" cx="{width / 2}" cy="{height / 2}" r="2"/>')
    out.append("</svg>")
    return Markup("".join(out))
