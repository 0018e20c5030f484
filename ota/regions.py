"""Named regions for OTA targeting: areas on the map, and which cars are in them.

A car maker releases by market (type approval, radio bands, languages, a regulator's recall
order are per country) and stages rollouts by geography (one country first, away from a
holiday, where the service network is ready). Ownercare has no market attribute in its
telemetry, but it has every car's position, so the operator defines the markets as areas:

* a **region** has a name (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, e.g. ``norway`` or
  ``eu-north``), an optional description, and one or more areas in WGS84 degrees:
  **boxes** ``{min_lat, min_lon, max_lat, max_lon}`` (a box with ``min_lon > max_lon``
  crosses the antimeridian, as a GeoJSON bbox does) and **polygons**, rings of
  ``[lat, lon]`` points (at least three distinct points, closed or not, not crossing
  themselves, no edge spanning more than 180 degrees of longitude - split such an area in two);
* a car is **in** a region when its last known position (``Vehicle.CurrentLocation.Latitude``
  / ``Longitude`` in the latest values) lies in any of the region's areas, the boundary
  included;
* a car whose position is unknown (never reported, not numbers, or off the globe) is in no
  region: a campaign that names regions does **not** target it and says so (reason
  ``location_unknown``), instead of guessing its market. A position is used however old it
  is, because a parked car reports no position, and its time goes into the report.

Everything here is pure data and geometry; ``ota.store`` reads positions and stores regions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_AREAS: Final = 200
MAX_POLYGON_POINTS: Final = 1000
LOCATION_UNKNOWN: Final = "location_unknown"
OUTSIDE_REGIONS: Final = "outside_regions"

Point = tuple[float, float]  # (lat, lon), WGS84 degrees


def _coordinate(value: object, what: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not -limit <= number <= limit:  # also refuses NaN
        raise ValueError(f"{what} {number} is outside [-{limit:g}, {limit:g}]")
    return number


def latitude(value: object, what: str = "latitude") -> float:
    return _coordinate(value, what, 90.0)


def longitude(value: object, what: str = "longitude") -> float:
    return _coordinate(value, what, 180.0)


@dataclass(frozen=True, slots=True)
class Box:
    """A latitude/longitude box; ``min_lon > max_lon`` wraps across the antimeridian."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float

    def __post_init__(self) -> None:
        for name in ("min_lat", "max_lat"):
            latitude(getattr(self, name), name)
        for name in ("min_lon", "max_lon"):
            longitude(getattr(self, name), name)
        if self.min_lat >= self.max_lat:
            raise ValueError(f"box min_lat {self.min_lat} must be below max_lat "
                             f"{self.max_lat}")
        if self.min_lon == self.max_lon:
            raise ValueError(f"box min_lon and max_lon are both {self.min_lon}: no area")

    def contains(self, lat: float, lon: float) -> bool:
        if not self.min_lat <= lat <= self.max_lat:
            return False
        if self.min_lon <= self.max_lon:
            return self.min_lon <= lon <= self.max_lon
        return lon >= self.min_lon or lon <= self.max_lon  # across the antimeridian


def _orientation(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return (abs(_orientation(a, b, p)) <= 1e-12
            and min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= p[1] <= max(a[1], b[1]))


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0) != (o2 > 0) and o1 != 0 and o2 != 0
            and (o3 > 0) != (o4 > 0) and o3 != 0 and o4 != 0):
        return True
    return (_on_segment(c, a, b) or _on_segment(d, a, b) or _on_segment(a, c, d)
            or _on_segment(b, c, d))


@dataclass(frozen=True, slots=True)
class Polygon:
    """A simple polygon of (lat, lon) points; the ring closes itself."""

    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        points = self.points
        if len(points) > 1 and points[0] == points[-1]:
            points = points[:-1]  # a closed ring (GeoJSON style): drop the repeated point
            object.__setattr__(self, "points", points)
        if len(set(points)) < 3 or len(set(points)) != len(points):
            raise ValueError("a polygon needs at least three distinct points and no point "
                             "twice")
        if len(points) > MAX_POLYGON_POINTS:
            raise ValueError(f"a polygon may have at most {MAX_POLYGON_POINTS} points")
        for i, (lat, lon) in enumerate(points):
            latitude(lat, f"point {i} latitude")
            longitude(lon, f"point {i} longitude")
        edges = self._edges()
        for i, (a, b) in enumerate(edges):
            if abs(a[1] - b[1]) > 180:
                raise ValueError(f"edge {i} spans more than 180 degrees of longitude; "
                                 "split an area across the antimeridian in two")
        n = len(edges)
        for i in range(n):
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue  # neighbours around the closing point
                if _segments_cross(*edges[i], *edges[j]):
                    raise ValueError(f"the polygon crosses itself (edges {i} and {j})")
        if abs(sum(_orientation((0.0, 0.0), a, b) for a, b in edges)) <= 1e-12:
            raise ValueError("the polygon encloses no area")

    def _edges(self) -> list[tuple[Point, Point]]:
        p = self.points
        return [(p[i], p[(i + 1) % len(p)]) for i in range(len(p))]

    def contains(self, lat: float, lon: float) -> bool:
        """Even-odd ray casting along the latitude; a point on an edge is inside."""
        inside = False
        for a, b in self._edges():
            if _on_segment((lat, lon), a, b):
                return True
            if (a[0] > lat) != (b[0] > lat):
                crossing = a[1] + (lat - a[0]) * (b[1] - a[1]) / (b[0] - a[0])
                if lon < crossing:
                    inside = not inside
        return inside


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    boxes: tuple[Box, ...] = ()
    polygons: tuple[Polygon, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"region name {self.name!r} must be 1-64 letters, digits, _ . - "
                             "(starting with a letter or digit)")
        if not self.boxes and not self.polygons:
            raise ValueError(f"region {self.name!r} needs at least one box or polygon")
        if len(self.boxes) + len(self.polygons) > MAX_AREAS:
            raise ValueError(f"a region may have at most {MAX_AREAS} areas")

    def contains(self, lat: float, lon: float) -> bool:
        return (any(b.contains(lat, lon) for b in self.boxes)
                or any(p.contains(lat, lon) for p in self.polygons))

    def areas(self) -> dict[str, Any]:
        """The stored (and API) JSON form of the areas."""
        return {"boxes": [{"min_lat": b.min_lat, "min_lon": b.min_lon, "max_lat": b.max_lat,
                           "max_lon": b.max_lon} for b in self.boxes],
                "polygons": [[list(p) for p in poly.points] for poly in self.polygons]}


def region_of(name: str, areas: Mapping[str, Any], description: str = "") -> Region:
    """A validated region from its JSON form; ``ValueError`` names what is wrong."""
    boxes = []
    for i, box in enumerate(areas.get("boxes") or []):
        try:
            boxes.append(Box(**box))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"boxes[{i}]: {exc}") from None
    polygons = []
    for i, ring in enumerate(areas.get("polygons") or []):
        try:
            points = tuple((latitude(p[0]), longitude(p[1])) if len(p) == 2 else _bad_point(p)
                           for p in ring)
            polygons.append(Polygon(points))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"polygons[{i}]: {exc}") from None
    return Region(name, tuple(boxes), tuple(polygons), description)


def _bad_point(point: object) -> Point:
    raise ValueError(f"a point is [lat, lon], got {point!r}")


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    ts: int  # event time of the newer of the two readings


def position_of(lat: object, lon: object, ts: int) -> Position | None:
    """A usable position from the latest values, or None (unknown)."""
    try:
        return Position(latitude(lat), longitude(lon), ts)
    except ValueError:
        return None


def in_regions(vins: list[str], positions: Mapping[str, Position],
               regions: list[Region]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Split ``vins`` into those inside any of ``regions`` and the others, each with why:
    ``{"reason": "location_unknown"}`` or ``{"reason": "outside_regions", "lat", "lon",
    "located_at"}``."""
    inside: list[str] = []
    excluded: dict[str, dict[str, Any]] = {}
    for vin in vins:
        where = positions.get(vin)
        if where is None:
            excluded[vin] = {"reason": LOCATION_UNKNOWN}
        elif any(r.contains(where.lat, where.lon) for r in regions):
            inside.append(vin)
        else:
            excluded[vin] = {"reason": OUTSIDE_REGIONS, "lat": where.lat, "lon": where.lon,
                             "located_at": where.ts}
    return inside, excluded
