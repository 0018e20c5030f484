"""Server-drawn SVG charts: well-formed, inside their frame, and escaped, whatever the data."""

from __future__ import annotations

import math
import unicodedata
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from api.console.charts import Level, Marker, Point, line_chart, sparkline
from api.console.evidence import indicator_of
from api.console.render import countdown, span

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_767_225_600_000
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def parsed(markup: str) -> ET.Element:
    # ElementTree wants the namespace declared; browsers infer it for inline SVG.
    return ET.fromstring(markup.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def coordinates(root: ET.Element) -> list[float]:
    out: list[float] = []
    for element in root.iter():
        for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy"):
            if name in element.attrib:
                out.append(float(element.attrib[name]))
        for pair in element.attrib.get("points", "").split():
            out += [float(v) for v in pair.split(",")]
    return out


@given(points=st.lists(st.tuples(st.integers(0, 400), values, values), max_size=60),
       levels=st.lists(values, max_size=3),
       marker_days=st.lists(st.integers(-30, 500), max_size=3),
       title=st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_a_line_chart_is_well_formed_and_stays_in_its_box(
        points: list[tuple[int, float, float]], levels: list[float], marker_days: list[int],
        title: str) -> None:
    series = [Point(T0 + d * 86_400_000, v, min(v, w), max(v, w)) for d, v, w in points]
    series.sort(key=lambda p: p.t_ms)
    chart = line_chart(series, title=title, unit=" V",
                       markers=[Marker(T0 + d * 86_400_000, "m", "onset") for d in marker_days],
                       levels=[Level(v, "limit") for v in levels],
                       t_range=(T0, T0 + 400 * 86_400_000))
    root = parsed(str(chart))
    assert root.tag == f"{SVG}svg"
    assert root.attrib["role"] == "img"
    shown = root.find(f"{SVG}title")
    assert shown is not None
    assert (shown.text or "") == "".join(
        " " if unicodedata.category(c) == "Cc" or c in "\ufffe\uffff" else c for c in title)
    for c in coordinates(root):
        assert math.isfinite(c)
        assert -1 <= c <= 600


@given(st.lists(values, max_size=40))
def test_a_sparkline_is_well_formed(series: list[float]) -> None:
    root = parsed(str(sparkline(series, label="12 V <resting>")))
    assert root.attrib["aria-label"] == "12 V <resting>"
    assert all(0 <= c <= 120 for c in coordinates(root))


def test_an_alert_maps_to_the_indicator_its_detector_watches() -> None:
    def alert(kind: str, **evidence: object) -> dict[str, object]:
        return {"type": kind, "asset_kind": "vehicle", "evidence": evidence}
    assert indicator_of(alert("weak_12v_battery")) == "battery12v_resting_v"
    assert indicator_of(alert("slow_tyre_leak", wheel="rear right")) == \
        "tire_pressure_row2_right_kpa"
    assert indicator_of(alert("slow_tyre_leak")) is None
    assert indicator_of(alert("dtc")) is None
    assert indicator_of({**alert("weak_12v_battery"), "asset_kind": "charger"}) is None


def test_countdowns_read_in_event_time() -> None:
    assert countdown(T0 + 3 * 3_600_000, T0) == "3 h 0 min left"
    assert countdown(T0, T0 + 26 * 3_600_000) == "overdue 1 d 2 h"
    assert countdown(T0, None) == "no telemetry yet"
    assert span(45_000) == "45 s"
