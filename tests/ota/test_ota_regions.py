"""Regions for OTA targeting: the geometry, its validation, and how campaign targets resolve
against the cars' last known positions (on a real SQLite file)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ota.model import Targets
from ota.regions import (
    LOCATION_UNKNOWN,
    OUTSIDE_REGIONS,
    Box,
    Polygon,
    Position,
    Region,
    in_regions,
    position_of,
    region_of,
)
from storage import ota as ota_store
from storage.store import Store

T0 = 1_767_225_600_000
OSLO = (59.91, 10.75)
BERGEN = (60.39, 5.32)
STOCKHOLM = (59.33, 18.07)
NORWAY_BOX = {"min_lat": 57.9, "min_lon": 4.5, "max_lat": 71.2, "max_lon": 12.5}


# ---------------------------------------------------------------------------- geometry


def test_a_box_contains_its_inside_and_boundary_only() -> None:
    box = Box(**NORWAY_BOX)
    assert box.contains(*OSLO)
    assert box.contains(*BERGEN)
    assert not box.contains(*STOCKHOLM)
    assert box.contains(57.9, 4.5)
    assert box.contains(71.2, 12.5)
    assert not box.contains(57.89, 5.0)


def test_a_box_with_min_lon_above_max_lon_wraps_the_antimeridian() -> None:
    fiji = Box(min_lat=-21.0, min_lon=176.0, max_lat=-12.0, max_lon=-178.0)
    assert fiji.contains(-17.8, 178.4)
    assert fiji.contains(-16.0, -179.9)
    assert not fiji.contains(-17.8, 0.0)
    assert not fiji.contains(-17.8, 170.0)


@pytest.mark.parametrize(("box", "message"), [
    ({**NORWAY_BOX, "min_lat": 72.0}, "must be below max_lat"),
    ({**NORWAY_BOX, "max_lat": 91.0}, "outside [-90, 90]"),
    ({**NORWAY_BOX, "min_lon": -181.0}, "outside [-180, 180]"),
    ({**NORWAY_BOX, "max_lon": 4.5}, "no area"),
    ({**NORWAY_BOX, "min_lat": float("nan")}, "outside"),
    ({**NORWAY_BOX, "min_lat": "58"}, "must be a number"),
    ({**NORWAY_BOX, "min_lat": True}, "must be a number"),
])
def test_malformed_boxes_are_refused_with_what_is_wrong(box: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        region_of("norway", {"boxes": [box]})


def test_a_concave_polygon_is_tested_by_its_outline_not_its_bounding_box() -> None:
    # An L: the notch at the top right is inside the bounding box but not the polygon.
    ell = Polygon(((0.0, 0.0), (0.0, 2.0), (1.0, 2.0), (1.0, 1.0), (2.0, 1.0), (2.0, 0.0)))
    assert ell.contains(0.5, 0.5)
    assert ell.contains(0.5, 1.5)
    assert ell.contains(1.5, 0.5)
    assert not ell.contains(1.5, 1.5)
    assert ell.contains(1.0, 1.5)
    assert ell.contains(0.0, 0.0)
    assert not ell.contains(-0.1, 0.5)
    assert not ell.contains(0.5, 2.1)


def test_a_closed_ring_is_the_same_polygon_as_an_open_one() -> None:
    square = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]
    assert Polygon((*square, square[0])) == Polygon(tuple(square))


@pytest.mark.parametrize(("points", "message"), [
    ([(0.0, 0.0), (1.0, 1.0)], "at least three distinct"),
    ([(0.0, 0.0), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0)], "no point twice"),
    ([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)], "encloses no area"),
    ([(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)], "crosses itself"),  # a bow tie
    ([(0.0, 170.0), (1.0, -170.0), (1.0, 170.0)], "antimeridian"),
    ([(0.0, 0.0), (95.0, 1.0), (1.0, 1.0)], "latitude 95.0 is outside"),
])
def test_malformed_polygons_are_refused_with_what_is_wrong(
        points: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        region_of("r", {"polygons": [points]})


def test_a_region_needs_a_name_and_an_area() -> None:
    with pytest.raises(ValueError, match="at least one box or polygon"):
        region_of("empty", {})
    with pytest.raises(ValueError, match="region name"):
        region_of("no spaces", {"boxes": [NORWAY_BOX]})
    with pytest.raises(ValueError, match=r"polygons\[0\]: a point is \[lat, lon\]"):
        region_of("r", {"polygons": [[(0, 0, 0), (1, 1), (1, 0)]]})


lat = st.floats(-89.0, 89.0, allow_nan=False)
lon = st.floats(-179.0, 179.0, allow_nan=False)


@given(lat, lat, lon, lon, lat, lon)
def test_a_box_and_its_four_corner_polygon_agree_everywhere(
        a: float, b: float, c: float, d: float, p_lat: float, p_lon: float) -> None:
    if abs(a - b) < 1e-6 or abs(c - d) < 1e-6:
        return
    lo_lat, hi_lat, lo_lon, hi_lon = min(a, b), max(a, b), min(c, d), max(c, d)
    if hi_lon - lo_lon > 180:
        return  # a polygon edge may not span that much (by design); the box may
    box = Box(lo_lat, lo_lon, hi_lat, hi_lon)
    square = Polygon(((lo_lat, lo_lon), (lo_lat, hi_lon), (hi_lat, hi_lon), (hi_lat, lo_lon)))
    assert box.contains(p_lat, p_lon) == square.contains(p_lat, p_lon)


@given(st.lists(st.tuples(lat, lon, lat, lon), min_size=1, max_size=4))
def test_a_region_survives_its_stored_form(corners: list[tuple[float, float, float, float]]
                                           ) -> None:
    boxes = [{"min_lat": min(a, c), "min_lon": b, "max_lat": max(a, c), "max_lon": d}
             for a, b, c, d in corners if abs(a - c) > 1e-9 and b != d]
    if not boxes:
        return
    region = region_of("r", {"boxes": boxes})
    assert region_of("r", region.areas()) == region


def test_cars_of_unknown_position_are_left_out_and_say_why() -> None:
    norway = Region("norway", (Box(**NORWAY_BOX),))
    positions = {"OSLO": Position(*OSLO, T0), "STOCKHOLM": Position(*STOCKHOLM, T0 - 5)}
    inside, excluded = in_regions(["OSLO", "STOCKHOLM", "NOWHERE"], positions, [norway])
    assert inside == ["OSLO"]
    assert excluded == {
        "NOWHERE": {"reason": LOCATION_UNKNOWN},
        "STOCKHOLM": {"reason": OUTSIDE_REGIONS, "lat": STOCKHOLM[0], "lon": STOCKHOLM[1],
                      "located_at": T0 - 5}}
    assert position_of("59.9", 10.7, T0) is None  # not a number: unknown, not guessed
    assert position_of(None, 10.7, T0) is None
    assert position_of(91.0, 0.0, T0) is None


# ---------------------------------------------------------------------------- targeting

V_OSLO, V_BERGEN, V_STOCKHOLM, V_PARKED, V_TAYCAN = (f"WCRAAAAAAAAAA000{i}" for i in range(5))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'regions.sqlite'}")
    rows: list[tuple[str, str, str, Any, int]] = []
    for vin, model, where in ((V_OSLO, "Volt", OSLO), (V_BERGEN, "Volt", BERGEN),
                              (V_STOCKHOLM, "Volt", STOCKHOLM), (V_PARKED, "Volt", None),
                              (V_TAYCAN, "Taycan", OSLO)):
        rows.append(("vehicle", vin, "Vehicle.VehicleIdentification.Model", model, T0))
        if where is not None:
            rows += [("vehicle", vin, ota_store.LATITUDE, where[0], T0 - 1000),
                     ("vehicle", vin, ota_store.LONGITUDE, where[1], T0)]
    store.upsert_signals(rows)
    ota_store.create_region(store, region_of("norway", {"boxes": [NORWAY_BOX]}),
                            created_by="t", now_ms=T0)
    ota_store.create_region(store, region_of("sweden", {"polygons": [[
        (55.3, 11.0), (55.3, 24.2), (69.1, 24.2), (69.1, 11.0)]]}), created_by="t",
        now_ms=T0)
    return store


def test_regions_narrow_the_models_and_report_who_is_left_out(store: Store) -> None:
    targeting = ota_store.resolve_targets(
        store, Targets(models=frozenset({"Volt"}), regions=frozenset({"norway"})), "bms")
    assert targeting.vins == [V_OSLO, V_BERGEN]
    assert targeting.excluded[V_PARKED] == {"reason": LOCATION_UNKNOWN}
    assert targeting.excluded[V_STOCKHOLM]["reason"] == OUTSIDE_REGIONS
    assert targeting.excluded[V_STOCKHOLM]["located_at"] == T0  # the newer of lat and lon
    assert V_TAYCAN not in targeting.excluded  # another model: never considered
    assert targeting.summary() == {
        "vehicles": 2, "not_targeted": {LOCATION_UNKNOWN: 1, OUTSIDE_REGIONS: 1},
        "location_unknown": [V_PARKED]}


def test_regions_alone_target_every_car_in_them(store: Store) -> None:
    both = ota_store.resolve_targets(store, Targets(regions=frozenset({"norway", "sweden"})),
                                     "bms")
    assert both.vins == [V_OSLO, V_BERGEN, V_STOCKHOLM, V_TAYCAN]
    assert both.excluded == {V_PARKED: {"reason": LOCATION_UNKNOWN}}


def test_explicit_vins_are_filtered_by_regions_too(store: Store) -> None:
    never_reported = "WCRAAAAAAAAAA0099"
    targeting = ota_store.resolve_targets(store, Targets(
        vins=frozenset({V_OSLO, V_STOCKHOLM, never_reported}),
        regions=frozenset({"sweden"})), "bms")
    assert targeting.vins == [V_STOCKHOLM]
    assert targeting.excluded[never_reported] == {"reason": LOCATION_UNKNOWN}
    assert targeting.excluded[V_OSLO]["reason"] == OUTSIDE_REGIONS


def test_without_regions_targeting_is_unchanged_and_a_missing_region_is_named(
        store: Store) -> None:
    plain = ota_store.resolve_targets(store, Targets(models=frozenset({"Volt"})), "bms")
    assert plain.vins == [V_OSLO, V_BERGEN, V_STOCKHOLM, V_PARKED]
    assert plain.excluded == {}
    with pytest.raises(KeyError, match="atlantis"):
        ota_store.resolve_targets(store, Targets(regions=frozenset({"norway", "atlantis"})),
                                  "bms")
    # Versions: no car has a known installed version, so every one is left out, with why.
    versioned = ota_store.resolve_targets(store, Targets(
        models=frozenset({"Volt"}), regions=frozenset({"norway"}),
        from_versions=frozenset({"1.0.0"})), "bms")
    assert versioned.vins == []
    assert versioned.excluded[V_OSLO] == {"reason": ota_store.OTHER_VERSION,
                                          "installed": None}


@given(st.lists(st.tuples(st.floats(0.0, 6.28), st.floats(0.1, 5.0)), min_size=3,
                max_size=60, unique_by=lambda p: round(p[0], 3)),
       st.floats(-60.0, 60.0), st.floats(-150.0, 150.0))
def test_a_star_shaped_outline_is_a_valid_polygon_around_its_centre(
        spokes: list[tuple[float, float]], c_lat: float, c_lon: float) -> None:
    """Points at increasing angles around a centre never cross: always accepted, and the
    centre is inside (when no gap between spokes reaches half a turn)."""
    ordered = sorted(spokes)
    if max(b[0] - a[0] for a, b in zip(ordered, [*ordered[1:], (ordered[0][0] + 2 * math.pi,
                                                                0.0)], strict=True)) >= 3.1:
        return  # a gap of half a turn: the centre may lie outside (or on) the outline
    points = tuple((round(c_lat + r * math.sin(a), 9), round(c_lon + r * math.cos(a), 9))
                   for a, r in ordered)
    if len(set(points)) != len(points):
        return
    polygon = Polygon(points)
    assert polygon.contains(c_lat, c_lon)
    assert not polygon.contains(c_lat + 5.5, c_lon)
    assert not polygon.contains(c_lat, c_lon - 6)


def test_a_region_with_too_many_points_is_refused_before_validating_them() -> None:
    ring = [[50 + i * 1e-4, 10.0] for i in range(2600)]
    with pytest.raises(ValueError, match="at most 5000 points"):
        region_of("coast", {"polygons": [ring, ring]})
